"""The pytest plugin of anna-mpc (registered through the ``pytest11`` entry point ``anna_mpc``).

Fixtures
--------
``mpc_run``
    ``mpc_run(protocol, n=None, *, eps=0.5, config=None, data=None, seed=0, **simulator_options)``
    runs a protocol (a :class:`~mpc_sim.Protocol` or a library name) on the simulator and returns
    the :class:`~mpc_sim.RunResult`. The config defaults to the protocol's ``default_config(n,
    eps)``, the input to its generated one. The output is checked against the protocol's
    reference solver when it has one (``trace.verified``; a wrong output fails the test), and
    every run against the test's ``mpc_budget`` marker, if any.
``mpc_compile``
    ``mpc_compile(protocol, n=None, *, eps=0.5, config=None, data=None, seed=0, **compile_options)``
    compiles a protocol, asserts the model reproduces the simulator exactly
    (:func:`reductions.testing.assert_compiles_exactly`) and returns the model; the marker's
    ``depth`` and ``width`` are checked on it.

Marker
------
``@pytest.mark.mpc_budget(rounds=..., memory=..., sent=..., received=..., depth=..., width=...)``:
resource budgets of every run (:func:`mpc_sim.testing.assert_within`) and compiled model
(:func:`reductions.testing.assert_model_within`) the test makes through the fixtures. A budget
may be an int or a callable of the run's :class:`~mpc_sim.MPCConfig` (``memory=lambda c: c.s``).

Example::

    @pytest.mark.mpc_budget(rounds=4, memory=lambda config: config.s)
    def test_sort(mpc_run):
        assert mpc_run("sort", 4096).trace.verified     # checked against the reference solver
"""
from __future__ import annotations

import pytest

__all__ = ["mpc_run", "mpc_compile", "pytest_configure"]

_RUN_BUDGETS = ("rounds", "memory", "sent", "received")
_MODEL_BUDGETS = ("depth", "width")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "mpc_budget(rounds=None, memory=None, sent=None, received=None, depth=None, width=None): "
                   "resource budgets of every run (mpc_run) and compiled model (mpc_compile) of the test")


def _budgets(request: pytest.FixtureRequest) -> dict:
    marker = request.node.get_closest_marker("mpc_budget")
    if marker is None:
        return {}
    if marker.args:
        raise TypeError("mpc_budget takes keyword arguments only: rounds=, memory=, sent=, received=, depth=, width=")
    unknown = set(marker.kwargs) - set(_RUN_BUDGETS) - set(_MODEL_BUDGETS)
    if unknown:
        raise TypeError(f"mpc_budget does not know {sorted(unknown)}; it takes {_RUN_BUDGETS + _MODEL_BUDGETS}")
    return dict(marker.kwargs)


def _resolve(budgets: dict, names: tuple[str, ...], config) -> dict:
    return {name: (budgets[name](config) if callable(budgets[name]) else budgets[name])
            for name in names if name in budgets}


def _setup(protocol, n, eps, config, data, seed):
    from mpc_sim import Protocol, make_protocol

    if isinstance(protocol, str):
        protocol = make_protocol(protocol)
    if not isinstance(protocol, Protocol):
        raise TypeError(f"expected a Protocol or a library protocol's name, got {type(protocol).__name__}")
    if config is None:
        if n is None:
            raise TypeError("give n (the input size) or a config")
        config = protocol.default_config(n, eps)
    if data is None:
        data = protocol.generate_input(config, seed=seed)
    return protocol, config, data


@pytest.fixture
def mpc_run(request: pytest.FixtureRequest):
    """Run a protocol on the simulator, checking the test's ``mpc_budget`` (see the module)."""
    from mpc_sim import RunResult, Simulator
    from mpc_sim.testing import assert_within

    budgets = _budgets(request)

    def run(protocol, n: int | None = None, *, eps: float = 0.5, config=None, data=None, seed: int = 0,
            record_messages: bool = False, **simulator_options):
        protocol, config, data = _setup(protocol, n, eps, config, data, seed)
        result = Simulator(config, **simulator_options).run(protocol, data, seed=seed, record_messages=record_messages)
        try:
            verified = protocol.verify(protocol.validate_input(config, data), result.output)
        except NotImplementedError:         # no reference solver: nothing to compare with
            verified = None
        if verified is False:
            raise AssertionError(f"{protocol.name} (n = {config.n}, seed {seed}): the output differs from the "
                                 f"protocol's reference solver")
        if verified is not None:
            result = RunResult(result.output, result.trace.with_verified(verified), result.state, result.states)
        assert_within(result.trace, **_resolve(budgets, _RUN_BUDGETS, config))
        return result

    return run


@pytest.fixture
def mpc_compile(request: pytest.FixtureRequest):
    """Compile a protocol and assert it reproduces the simulator (see the module)."""
    from .testing import assert_compiles_exactly

    budgets = _budgets(request)

    def compile_(protocol, n: int | None = None, *, eps: float = 0.5, config=None, data=None, seed: int = 0,
                 **compile_options):
        protocol, config, data = _setup(protocol, n, eps, config, data, seed)
        return assert_compiles_exactly(protocol, config, data, seed=seed, **_resolve(budgets, _MODEL_BUDGETS, config),
                                       **compile_options)

    return compile_
