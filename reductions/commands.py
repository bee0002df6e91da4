"""The reductions' commands of the ``anna-mpc`` CLI: ``compile`` and ``verify``."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from mpc_sim import MPCError, Simulator
from mpc_sim.cli import parse_params
from mpc_sim.protocols import CATALOG, make_protocol

from .claims import all_claims, results_table
from .compile import ATTENTIONS, LAYOUTS, CompileError, DecodeError, compile_mpc

__all__ = ["register", "cmd_compile", "cmd_verify"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="compile a library protocol into an ANNA-transformer, run it, check it")
    p.add_argument("protocol", choices=sorted(CATALOG))
    p.add_argument("--n", type=int, required=True, help="input size in words")
    p.add_argument("--eps", type=float, required=True, help="memory exponent")
    p.add_argument("--layout", choices=sorted(LAYOUTS), default="hashed", help="packet layout (default hashed)")
    p.add_argument("--attention", choices=ATTENTIONS, default="ema", help="ema (exact) or anna (LSH) heads")
    p.add_argument("--alpha", type=int, default=None, help="routing heads per layer (default: the fan-out bound)")
    p.add_argument("--seed", type=int, default=0, help="seed of the input, the protocol and the LSH tables")
    p.add_argument("--k", type=int, default=None, help="hop count (khop)")
    p.add_argument("--op", default=None, help="operator (aggregate)")
    p.add_argument("--modulus", type=int, default=None, help="modulus (match2)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("verify", help="check the paper's theorems over sweeps and print the claim table")
    p.add_argument("--quick", action="store_true", help="reduced sweeps (under two minutes)")
    p.add_argument("--json", type=Path, default=None, help="write the results as a JSON list here")
    p.add_argument("--plots", type=Path, default=None, metavar="DIR",
                   help="also draw the claims' figures into DIR (PNG; needs matplotlib, the extra 'plot')")
    p.set_defaults(func=cmd_verify)


def _protocol_from(args: argparse.Namespace):
    params = parse_params(args.param)
    for key in ("k", "op", "modulus"):
        if getattr(args, key, None) is not None:
            params[key] = getattr(args, key)
    return make_protocol(args.protocol, **params)


def cmd_compile(args: argparse.Namespace, console: Console) -> int:
    try:
        protocol = _protocol_from(args)
        config = protocol.default_config(args.n, args.eps)
        data = protocol.generate_input(config, seed=args.seed)
        start = time.perf_counter()
        sim = Simulator(config, mode="machine").run(protocol, data, seed=args.seed)
        sim_seconds = time.perf_counter() - start
        model = compile_mpc(protocol, config, seed=args.seed, rounds=sim.trace.num_rounds, alpha=args.alpha,
                            layout=args.layout, attention=args.attention)
        console.print(model.report.table())
        start = time.perf_counter()
        run = model.run(data)
        model_seconds = time.perf_counter() - start
    except (MPCError, CompileError, ValueError, TypeError) as exc:
        console.print(f"[bold red]{type(exc).__name__}:[/] {exc}")
        return 2
    alignment = model.align(data, run)
    console.print(alignment.table())
    exact = np.array_equal(np.asarray(run.output).view(np.int64), np.asarray(sim.output).view(np.int64))
    colour = "green" if exact else "red"
    console.print(f"[{colour}]{protocol.name}: {sim.trace.num_rounds} rounds -> {model.report.depth} layers, "
                  f"width {model.report.width}; output {'identical to' if exact else 'DIFFERS from'} the simulator's "
                  f"(simulator {sim_seconds:.2f} s, model {model_seconds:.2f} s)[/]")
    return 0 if exact else 1


def cmd_verify(args: argparse.Namespace, console: Console) -> int:
    from .plots import PlotError, require_matplotlib, result_figures, write_figures
    if args.plots is not None:
        try:
            require_matplotlib()
        except PlotError as exc:
            console.print(f"[bold red]PlotError:[/] {exc}")
            return 2
    results, figures = [], []
    start = time.perf_counter()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        task = progress.add_task("claims", total=None)
        for claim in all_claims():
            try:
                sweep = claim.sweep(quick=args.quick, progress=lambda text: progress.update(task, description=text))
                checked = claim.check(sweep)
                results.extend(checked)
                if args.plots is not None:
                    figures.extend(result_figures(checked))
                    if hasattr(claim, "figures"):
                        figures.extend(claim.figures(sweep))
            except (MPCError, CompileError, DecodeError, ValueError) as exc:
                from .claims import ClaimResult
                results.append(ClaimResult(claim.name, f"sweep ran: {type(exc).__name__}: {exc}", "exact", 0.0, 1.0,
                                           0.0, False))
    console.print(results_table(results))
    if args.plots is not None:
        for path in write_figures(figures, args.plots):
            console.print(f"figure: {path}")
    if args.json is not None:
        args.json.write_text(json.dumps([r.to_dict() for r in results], indent=1))
    failed = [r for r in results if not r.holds]
    seconds = time.perf_counter() - start
    console.print(("[green]all claims hold[/]" if not failed else f"[bold red]{len(failed)} claim(s) fail[/]")
                  + f" ({len(results)} checks, {seconds:.0f} s)")
    return 0 if not failed else 1
