"""``anna-mpc decompile``: run a transformer as an MPC protocol beside its own forward pass.

``anna-mpc decompile MODEL.npz --n N`` loads a saved (trained-mode) model; ``--example NAME`` takes
a named example model instead (:mod:`reductions.decompile.examples`). The protocol follows the
model's heads: anna/ema heads run as :func:`~reductions.decompile.compile_anna` (Theorem 4.2),
softmax heads as the predecessor's baseline, lowrank heads as the low-rank protocol. Prints the
plan, the trace summary and the agreement with the model's forward pass; exit code 0 when the
output agrees within the tolerance.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from anna.errors import LoadError
from anna.transformer import Transformer, load_transformer
from mpc_sim import MPCConfig, MPCError
from mpc_sim.cli import UsageError, float_arg, int_arg

from .base import ModelProtocol, fitted_config, run_model_protocol
from .errors import DecompileError
from .examples import EXAMPLES, example_model

__all__ = ["register", "cmd_decompile", "protocol_for", "DEFAULT_MAX_MACHINES"]

DEFAULT_MAX_MACHINES = 2_000_000        # about a minute of per-machine steps (90,300 took 3 s)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decompile", help="run a transformer as an MPC protocol (Theorem 4.2) and compare outputs")
    p.add_argument("model", nargs="?", type=Path, default=None, help="a model saved by Transformer.save (.npz)")
    p.add_argument("--example", choices=sorted(EXAMPLES), default=None, help="a named example model instead")
    p.add_argument("--n", type=int_arg(low=1, high=2**31), required=True, help="number of tokens (one input word each)")
    p.add_argument("--eps", type=float_arg(0.0, 1.0, low_open=True, high_open=True, name="eps"), default=0.5,
                   help="memory exponent eps' of the cluster (default 0.5)")
    p.add_argument("--memory-factor", type=float_arg(0.0, low_open=True, name="a"), default=None,
                   help="s = ceil(a n^eps'); default: the smallest a whose plan fits")
    p.add_argument("--seed", type=int_arg(low=0, high=2**64 - 1), default=0, help="seed of the input and of the run")
    p.add_argument("--max-machines", type=int_arg(low=1), default=DEFAULT_MAX_MACHINES, metavar="COUNT",
                   help=f"refuse plans with more machines than this (default {DEFAULT_MAX_MACHINES:,}): each is "
                        f"simulated in Python")
    p.add_argument("--trace", action="store_true", help="print the per-round trace table")
    p.set_defaults(func=cmd_decompile)


def protocol_for(model: Transformer) -> ModelProtocol:
    """The protocol running ``model``: by its heads' kinds (one kind for the whole model)."""
    from . import AnnaProtocol
    from .lowrank_protocol import LowRankProtocol
    from .softmax_protocol import SoftmaxProtocol

    kinds = {head.kind for layer in model.layers for head in layer.heads}
    if kinds <= {"anna", "ema"}:
        return AnnaProtocol(model)
    if kinds == {"softmax"}:
        return SoftmaxProtocol(model)
    if kinds == {"lowrank"}:
        return LowRankProtocol(model)
    raise DecompileError(f"no protocol runs a model mixing head kinds {sorted(kinds)}")


def _plan_table(protocol: ModelProtocol, config: MPCConfig) -> Table:
    plan = protocol.plan(config)
    table = Table(title=f"{protocol.name}: plan for n = {config.n}, s = {config.s}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    details = plan.to_dict() if hasattr(plan, "to_dict") else {
        k: v for k, v in vars(plan).items() if not k.startswith("_")}
    for key, value in details.items():
        if key == "layers" and isinstance(value, list):
            for index, layer in enumerate(value):
                table.add_row(f"layer {index}", ", ".join(f"{k} {v}" for k, v in layer.items()))
        else:
            table.add_row(key.replace("_", " "), f"{value:.3g}" if isinstance(value, float) else str(value))
    table.add_row("machines (config)", str(config.machines))
    table.add_row("rounds (formula)", str(protocol.rounds_bound(config)))
    return table


def cmd_decompile(args: argparse.Namespace, console: Console) -> int:
    if (args.model is None) == (args.example is None):
        raise UsageError("give a model file or --example NAME (exactly one)")
    try:
        model = example_model(args.example, args.n, args.seed) if args.example else load_transformer(args.model)
    except LoadError as exc:
        raise UsageError(f"MODEL: {exc}") from exc
    try:
        protocol = protocol_for(model)
        config = protocol.default_config(args.n, args.eps) if args.memory_factor is None else \
            fitted_config(protocol, args.n, args.eps, args.memory_factor)
        if config.machines > args.max_machines:
            raise UsageError(f"--n {args.n}: the plan needs {config.machines:,} machines (s = {config.s}), above "
                             f"--max-machines {args.max_machines:,}; raise --max-machines or --eps, or lower --n")
        data = protocol.generate_input(config, seed=args.seed)
        if args.example == "match2":
            from anna.tasks import generate_match2
            from .examples import MATCH2_MODULUS
            data = generate_match2(args.n, MATCH2_MODULUS, seed=args.seed)[0].astype(np.float64)
        console.print(_plan_table(protocol, config))
        run = run_model_protocol(protocol, data, config, seed=args.seed)
    except UsageError:
        raise
    except (MPCError, DecompileError, ValueError, OSError) as exc:
        console.print(f"[bold red]{type(exc).__name__}:[/] {exc}")
        return 2
    if args.trace:
        console.print(run.trace.table())
    console.print(run.trace.summary())
    console.print(run.table())
    return 0 if run.agrees else 1
