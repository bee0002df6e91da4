"""Asserting a run's resources in one line: :func:`assert_within`.

A failure names the budget, every round over it (a few, then a count), and in the first such
round the machines over it with their amounts, read off the per-round peaks the trace keeps
(:class:`~mpc_sim.trace.RoundPeaks`: the largest few per round, so "and possibly more" is said
when all of them are over)::

    from mpc_sim import simulate, make_protocol
    from mpc_sim.testing import assert_within

    def test_sort_stays_in_its_budgets():
        protocol = make_protocol("sort")
        config = protocol.default_config(4096, 0.5)
        trace = simulate(protocol, protocol.generate_input(config), config).trace
        assert_within(trace, rounds=protocol.rounds_bound(config), memory=config.s)

With the pytest plugin (installed with the package), ``@pytest.mark.mpc_budget(...)`` applies
the same budgets to every run made through the ``mpc_run`` fixture (see
:mod:`reductions.pytest_plugin`).
"""
from __future__ import annotations

from .trace import PEAK_MACHINES, RoundPeaks, Trace

__all__ = ["assert_within", "budget_problems", "BudgetExceeded", "QUANTITIES"]

QUANTITIES = ("memory", "sent", "received")
"""Per-machine quantities a budget can bound (besides ``rounds``)."""

_ROUND_FIELD = {"memory": "max_memory", "sent": "max_sent", "received": "max_received"}
_SHOWN_ROUNDS = 5


class BudgetExceeded(AssertionError):
    """A run over one of the budgets given to :func:`assert_within` (one line per budget)."""


def _check_budget(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"the {name} budget must be an int >= 0 (or None), got {value!r}")


def _round_maxima(trace: Trace, quantity: str) -> list[tuple[int, int]]:
    """(round, largest per-machine amount) of every round, the final computation as round R + 1."""
    field = _ROUND_FIELD[quantity]
    maxima = [(r.round, getattr(r, field)) for r in trace.rounds]
    if quantity == "memory" and trace.output is not None:
        maxima.append((trace.num_rounds + 1, max(trace.output.max_memory, trace.output.max_output_memory)))
    return maxima


def _machines_over(peaks: RoundPeaks | None, quantity: str, budget: int, largest: int) -> str:
    if peaks is None:
        return f"largest {largest} (machines not recorded in this trace)"
    over = [(m, a) for m, a in getattr(peaks, quantity) if a > budget]
    listed = ", ".join(f"{m} ({a})" for m, a in over)
    word = "machine" if len(over) == 1 else "machines"
    more = f" and possibly more (the trace keeps the {PEAK_MACHINES} largest)" if len(over) == PEAK_MACHINES else ""
    return f"{word} {listed}{more}"


def _round_name(trace: Trace, round: int) -> str:
    return f"round {round}" + (" (the final local computation)" if round == trace.num_rounds + 1 else "")


def budget_problems(trace: Trace, *, rounds: int | None = None, memory: int | None = None, sent: int | None = None,
                    received: int | None = None) -> list[str]:
    """One line per budget the run exceeds (empty when within all); see :func:`assert_within`."""
    budgets = {"rounds": rounds, "memory": memory, "sent": sent, "received": received}
    for name, value in budgets.items():
        _check_budget(name, value)
    problems = []
    if rounds is not None and trace.num_rounds > rounds:
        declared = "" if trace.rounds_bound is None else f", declared bound {trace.rounds_bound}"
        problems.append(f"rounds: {trace.protocol} ran {trace.num_rounds} communication rounds, "
                        f"budget {rounds}{declared}")
    peaks = {p.round: p for p in trace.peaks}
    for quantity in QUANTITIES:
        budget = budgets[quantity]
        if budget is None:
            continue
        bad = [(r, amount) for r, amount in _round_maxima(trace, quantity) if amount > budget]
        if not bad:
            continue
        first, amount = bad[0]
        others = ", ".join(f"round {r} ({a})" for r, a in bad[1:1 + _SHOWN_ROUNDS])
        if len(bad) > 1 + _SHOWN_ROUNDS:
            others += f" and {len(bad) - 1 - _SHOWN_ROUNDS} more rounds"
        problems.append(
            f"{quantity}: budget {budget} words exceeded in {len(bad)} round{'s' if len(bad) > 1 else ''}; first in "
            f"{_round_name(trace, first)}: {_machines_over(peaks.get(first), quantity, budget, amount)}"
            + (f"; also {others}" if others else ""))
    return problems


def assert_within(trace: object, *, rounds: int | None = None, memory: int | None = None, sent: int | None = None,
                  received: int | None = None) -> None:
    """Assert a run stayed within the given budgets; raise :class:`BudgetExceeded` otherwise.

    Parameters
    ----------
    trace : Trace or RunResult
        The run.
    rounds : int, optional
        Most communication rounds allowed.
    memory, sent, received : int, optional
        Most words a machine may hold (kept memory plus inbox, at the start of a round and in the
        final local computation), send in a round, receive in a round. ``None`` checks nothing.

    Examples
    --------
    >>> from mpc_sim import MPCConfig, RoundPeaks, RoundStats, Trace
    >>> trace = Trace("demo", MPCConfig(n=16, eps=0.5), (RoundStats(1, 4, 2.0, 4, 6, 12, 5, 4),),
    ...               peaks=(RoundPeaks(1, received=((3, 6), (1, 5), (0, 1))),))
    >>> assert_within(trace, rounds=1, memory=4)
    >>> assert_within(trace, received=4)
    Traceback (most recent call last):
    ...
    mpc_sim.testing.BudgetExceeded: demo (n = 16, s = 4): received: budget 4 words exceeded in 1 round; first in round 1: machines 3 (6), 1 (5)
    """
    trace = getattr(trace, "trace", trace)
    if not isinstance(trace, Trace):
        raise TypeError(f"assert_within takes a Trace or a RunResult, got {type(trace).__name__}")
    problems = budget_problems(trace, rounds=rounds, memory=memory, sent=sent, received=received)
    if problems:
        head = f"{trace.protocol} (n = {trace.config.n}, s = {trace.config.s}): "
        raise BudgetExceeded(head + (problems[0] if len(problems) == 1 else "\n  " + "\n  ".join(problems)))
