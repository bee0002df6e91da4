"""mpc_sim.testing.assert_within: failures name the round, the machines over the budget and the amounts."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mpc_sim import MPCConfig, Simulator, make_protocol
from mpc_sim.strategies import ScriptedProtocol, make_schedule, schedules
from mpc_sim.testing import BudgetExceeded, assert_within, budget_problems
from mpc_sim.trace import PEAK_MACHINES
from tests.strategies.engine import reference_rounds

pytest_plugins = ["pytester"]


def per_machine_amounts(schedule, quantity):
    """(round, amounts per machine) of every round, the final computation's memory included."""
    rounds = reference_rounds(schedule)
    index = {"memory": 1, "sent": 2, "received": 3}[quantity]
    out = [(r, amounts[index]) for r, amounts in enumerate(rounds, 1)]
    if quantity == "memory":
        q = schedule.config.machines
        inbox = rounds[-1][3] if rounds else [0] * q
        kept_before = [len(m) for m in (schedule.memories[-2] if len(schedule.memories) > 1 else schedule.initial)]
        kept_after = [len(m) for m in schedule.memories[-1]]
        out.append((schedule.rounds + 1, [max(kept_before[i] + inbox[i], kept_after[i]) for i in range(q)]))
    return out


@given(schedules(), st.sampled_from(["memory", "sent", "received"]), st.data())
def test_failure_names_the_first_round_and_every_machine_over_the_budget(schedule, quantity, data):
    trace = Simulator(schedule.config).run(ScriptedProtocol(schedule), schedule.input_data()).trace
    amounts = per_machine_amounts(schedule, quantity)
    largest = max((max(a, default=0) for _, a in amounts), default=0)
    assume(largest > 0)
    budget = data.draw(st.integers(0, largest - 1))
    first, row = next((r, a) for r, a in amounts if max(a) > budget)
    over = sorted(((a, m) for m, a in enumerate(row) if a > budget), key=lambda p: (-p[0], p[1]))
    listed = ", ".join(f"{m} ({a})" for a, m in over[:PEAK_MACHINES])
    with pytest.raises(BudgetExceeded) as error:
        assert_within(trace, **{quantity: budget})
    message = str(error.value)
    assert f"{quantity}: budget {budget} words exceeded in" in message
    final = " (the final local computation)" if first == schedule.rounds + 1 else ""
    assert f"first in round {first}{final}: {'machine' if len(over) == 1 else 'machines'} {listed}" in message
    assert ("possibly more" in message) == (len(over) >= PEAK_MACHINES)
    assert_within(trace, **{quantity: largest})         # at the largest amount: within


def test_rounds_budget_names_the_count_and_the_declared_bound():
    schedule = make_schedule(MPCConfig(n=40, eps=0.5), rounds=3, seed=1)
    trace = Simulator(schedule.config).run(ScriptedProtocol(schedule), schedule.input_data()).trace
    assert_within(trace, rounds=3)
    with pytest.raises(BudgetExceeded, match="rounds: scripted ran 3 communication rounds, budget 2, declared bound 3"):
        assert_within(trace, rounds=2)


def test_every_budget_exceeded_is_listed_and_run_results_are_accepted():
    protocol = make_protocol("sort")
    config = protocol.default_config(2000, 0.5)
    result = Simulator(config).run(protocol, protocol.generate_input(config, seed=0))
    assert_within(result, rounds=protocol.rounds_bound(config), memory=config.s, sent=config.s, received=config.s)
    problems = budget_problems(result.trace, rounds=0, memory=1, sent=1, received=1)
    assert [p.split(":")[0] for p in problems] == ["rounds", "memory", "sent", "received"]
    with pytest.raises(BudgetExceeded) as error:
        assert_within(result, rounds=0, memory=1)
    assert str(error.value).count("\n") == 2


def test_bad_budgets_are_refused():
    trace = Simulator(MPCConfig(n=16, eps=0.5)).run(make_protocol("broadcast"), np.arange(16)).trace
    with pytest.raises(ValueError, match="memory budget must be an int >= 0"):
        assert_within(trace, memory=-1)
    with pytest.raises(TypeError, match="Trace or a RunResult"):
        assert_within("trace", memory=1)


def test_traces_without_peaks_say_the_machines_are_not_recorded():
    import dataclasses
    schedule = make_schedule(MPCConfig(n=40, eps=0.5), rounds=1, seed=3)
    trace = Simulator(schedule.config).run(ScriptedProtocol(schedule), schedule.input_data()).trace
    with pytest.raises(BudgetExceeded, match=r"first in round 1: largest \d+ \(machines not recorded in this trace\)"):
        assert_within(dataclasses.replace(trace, peaks=()), received=0)


PLUGIN_TESTS = '''
import pytest

@pytest.mark.mpc_budget(rounds=10, memory=lambda config: config.s)
def test_within(mpc_run):
    assert mpc_run("prefix-sum", 300).trace.verified

@pytest.mark.mpc_budget(received=1)
def test_over(mpc_run):
    mpc_run("prefix-sum", 300)

@pytest.mark.mpc_budget(depth=5)
def test_compiled(mpc_compile):
    assert mpc_compile("aggregate", 64).report.depth <= 5

@pytest.mark.mpc_budget(depth=0)
def test_compiled_too_deep(mpc_compile):
    mpc_compile("aggregate", 64)

@pytest.mark.mpc_budget(rounds=8, memory=lambda config: config.s, depth=8)   # the README's example
def test_sort(mpc_run, mpc_compile):
    assert mpc_run("sort", 4096).trace.verified   # runs, checks the output and the budgets
    mpc_compile("aggregate", 64)      # compiles, asserts the model reproduces the simulator exactly
'''


def test_pytest_plugin_fixtures_and_budget_marker(pytester):
    pytester.makepyfile(test_budgets=PLUGIN_TESTS)
    result = pytester.runpytest("-p", "no:anna_mpc", "-p", "reductions.pytest_plugin", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines(["*BudgetExceeded: prefix-sum (n = 300, s = *): received: budget 1 words exceeded*"
                                 "first in round 1: machine*",
                                 "*ModelBudgetExceeded: compiled aggregate: depth 1 > budget 0*"])


def test_pyproject_registers_the_plugin_entry_point():
    import tomllib
    from pathlib import Path
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["pytest11"] == {"anna_mpc": "reductions.pytest_plugin"}
