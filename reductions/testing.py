"""Asserting a compilation in one line: exact outputs, depth and width within budgets.

:func:`assert_compiles_exactly` compiles a protocol (Theorem 4.1), runs the model and the
simulator on the same input and fails, naming the first differing output word and the first
layer and machine where the model's memories leave the simulator's, unless both agree bit for
bit; it then checks the model's depth and width against the budgets given.
:func:`assert_model_within` checks the budgets of a model already compiled.
"""
from __future__ import annotations

import numpy as np

from mpc_sim import MPCConfig, Protocol, Simulator

from .compile import CompiledModel, compile_mpc

__all__ = ["assert_compiles_exactly", "assert_model_within", "CompilationMismatch", "ModelBudgetExceeded"]

_REPORT_BUDGETS = ("depth", "width", "heads_per_layer", "m", "model_dim")


class CompilationMismatch(AssertionError):
    """The compiled model's output differs from the simulator's."""


class ModelBudgetExceeded(AssertionError):
    """A compiled model deeper or wider than its budget."""


def assert_model_within(model: CompiledModel, *, depth: int | None = None, width: int | None = None,
                        heads_per_layer: int | None = None, m: int | None = None, model_dim: int | None = None) -> None:
    """Assert the model's :class:`~reductions.compile.CompileReport` quantities are within the
    budgets given (``None`` checks nothing); :class:`ModelBudgetExceeded` lists every one over.

    Examples
    --------
    >>> from mpc_sim.protocols.aggregate import Aggregate
    >>> model = compile_mpc(Aggregate(op="sum"), MPCConfig(n=64, eps=0.5))
    >>> assert_model_within(model, depth=model.report.rounds)
    >>> assert_model_within(model, depth=0)
    Traceback (most recent call last):
    ...
    reductions.testing.ModelBudgetExceeded: compiled aggregate: depth 1 > budget 0 (rounds 1, layers per round 1)
    """
    budgets = {"depth": depth, "width": width, "heads_per_layer": heads_per_layer, "m": m, "model_dim": model_dim}
    report = model.report
    over = []
    for name in _REPORT_BUDGETS:
        budget = budgets[name]
        if budget is None:
            continue
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
            raise ValueError(f"the {name} budget must be an int >= 0 (or None), got {budget!r}")
        value = getattr(report, name)
        if value > budget:
            detail = (f" (rounds {report.rounds}, layers per round {report.layers_per_round})" if name == "depth"
                      else f" (m {report.m} x heads {report.heads_per_layer})" if name == "width" else "")
            over.append(f"{name} {value} > budget {budget}{detail}")
    if over:
        raise ModelBudgetExceeded(f"compiled {report.protocol}: " + "; ".join(over))


def assert_compiles_exactly(protocol: Protocol, config: MPCConfig, data: object = None, *, seed: int = 0,
                            depth: int | None = None, width: int | None = None, **compile_options) -> CompiledModel:
    """Compile ``protocol`` under ``config``, run model and simulator on ``data`` (default: the
    protocol's generated input for ``seed``) and assert identical outputs and the budgets.

    Returns the compiled model. ``compile_options`` go to :func:`~reductions.compile.compile_mpc`
    (``layout``, ``attention``, ``alpha``, ``rounds``, ...).

    Examples
    --------
    >>> from mpc_sim.protocols.aggregate import Aggregate
    >>> model = assert_compiles_exactly(Aggregate(op="max"), MPCConfig(n=64, eps=0.5), depth=1)
    >>> model.report.depth
    1
    """
    if data is None:
        data = protocol.generate_input(config, seed=seed)
    simulated = Simulator(config, mode="machine").run(protocol, data, seed=seed)
    model = compile_mpc(protocol, config, seed=seed, **compile_options)
    run = model.run(data)
    expected = np.asarray(simulated.output)
    got = np.asarray(run.output)
    if expected.shape != got.shape or not np.array_equal(expected.view(np.int64), got.view(np.int64)):
        if expected.shape != got.shape:
            where = f"output has shape {got.shape}, the simulator's {expected.shape}"
        else:
            i = int(np.flatnonzero(expected.view(np.int64) != got.view(np.int64))[0])
            where = f"output word {i} is {got[i].item()!r}, the simulator's {expected[i].item()!r}"
        alignment = model.align(data, run)
        diverging = next(((layer, machine) for layer, _, _, machine in alignment.rows if machine is not None), None)
        first = ("" if diverging is None else
                 f"; memories first differ after layer {diverging[0]} on machine {diverging[1]}")
        raise CompilationMismatch(f"compiled {protocol.name} (n = {config.n}, s = {config.s}): {where}{first}")
    assert_model_within(model, depth=depth, width=width)
    return model
