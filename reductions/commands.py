"""The reductions' commands of the ``anna-mpc`` CLI: ``compile`` and ``verify``."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mpc_sim import MPCError, Simulator
from mpc_sim.cli import check_writable_file, float_arg, int_arg, parse_size, protocol_from_args
from mpc_sim.protocols import CATALOG
from mpc_sim.render import DEFAULT_MAX_ROWS, compact_table

from .claims import all_claims, results_table
from .compile import (ATTENTIONS, ENGINES, LAYOUTS, CompileError, DecodeError, check_request,
                      compile_mpc, default_memory_limit)

__all__ = ["register", "cmd_compile", "cmd_verify", "alignment_table", "parse_bytes"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="compile a library protocol into an ANNA-transformer, run it, check it")
    p.add_argument("protocol", choices=sorted(CATALOG))
    p.add_argument("--n", type=int_arg(low=1), required=True, help="input size in words")
    p.add_argument("--eps", type=float_arg(0.0, 1.0, low_open=True, high_open=True, name="eps"), required=True,
                   help="memory exponent")
    p.add_argument("--layout", choices=sorted(LAYOUTS), default="hashed", help="packet layout (default hashed)")
    p.add_argument("--attention", choices=ATTENTIONS, default="ema", help="ema (exact) or anna (LSH) heads")
    p.add_argument("--alpha", type=int_arg(low=1), default=None, help="routing heads per layer (default: the fan-out bound)")
    p.add_argument("--seed", type=int_arg(low=0, high=2**64 - 1), default=0,
                   help="seed of the input, the protocol and the LSH tables")
    p.add_argument("--k", type=int_arg(low=0), default=None, help="hop count (khop)")
    p.add_argument("--op", choices=("sum", "min", "max"), default=None, help="operator (aggregate)")
    p.add_argument("--modulus", type=int_arg(low=1), default=None, help="modulus (match2)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--all", action="store_true", help="show every layer (long models show the first and last 10)")
    p.add_argument("--max-memory", default=None, metavar="BYTES",
                   help="refuse a model whose estimated run exceeds this (bytes, or with K/M/G; "
                        "default: half of physical memory)")
    p.add_argument("--engine", choices=ENGINES, default=None,
                   help="lean (vectorised, compact stream; default) or dense (Transformer.run)")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("verify", help="check the paper's theorems over sweeps and print the claim table")
    p.add_argument("--quick", action="store_true", help="reduced sweeps (under two minutes)")
    p.add_argument("--json", type=Path, default=None, help="write the results as a JSON list here")
    p.add_argument("--plots", type=Path, default=None, metavar="DIR",
                   help="also draw the claims' figures into DIR (PNG; needs matplotlib, the extra 'plot')")
    p.set_defaults(func=cmd_verify)


def _protocol_from(args: argparse.Namespace):
    return protocol_from_args(args)


def parse_bytes(text: str | None) -> int | None:
    """``"4G"``, ``"500M"``, ``"123456"`` -> bytes (:func:`mpc_sim.cli.parse_size`); None stays None."""
    if text is None:
        return None
    try:
        return parse_size(str(text))
    except argparse.ArgumentTypeError as exc:
        raise CompileError(f"--max-memory {exc}") from None


def cmd_compile(args: argparse.Namespace, console: Console) -> int:
    protocol = _protocol_from(args)
    try:
        max_memory = parse_bytes(args.max_memory)
        config = protocol.default_config(args.n, args.eps)
        options = dict(alpha=args.alpha, layout=args.layout, attention=args.attention)
        # refuse before any work: the estimate with the protocol's round bound (the simulator's
        # round count, used below, is never larger)
        check_request(protocol, config, seed=args.seed, max_memory=max_memory, engine=args.engine, **options)
        data = protocol.generate_input(config, seed=args.seed)
        start = time.perf_counter()
        sim = Simulator(config, mode="machine").run(protocol, data, seed=args.seed)
        sim_seconds = time.perf_counter() - start
        model = compile_mpc(protocol, config, seed=args.seed, rounds=sim.trace.num_rounds, max_memory=max_memory,
                            **options)
        console.print(model.report.table())
        engine = args.engine or model.default_engine
        limit = max_memory or default_memory_limit()
        record = model.estimate.bytes(engine, record_rounds=2 * (sim.trace.num_rounds + 1)) <= limit
        start = time.perf_counter()
        run = model.run(data, engine=engine, record=record, max_memory=max_memory)
        model_seconds = time.perf_counter() - start
    except (MPCError, CompileError, ValueError, TypeError) as exc:
        console.print(f"[bold red]{type(exc).__name__}:[/] {exc}")
        return 2
    if record:
        alignment = model.align(data, run)
        console.print(alignment_table(alignment, max_rows=None if args.all else DEFAULT_MAX_ROWS))
    else:
        console.print("[yellow]memories not recorded (the estimate with them exceeds the memory limit): "
                      "no layer-by-layer alignment[/]")
    exact = np.array_equal(np.asarray(run.output).view(np.int64), np.asarray(sim.output).view(np.int64))
    colour = "green" if exact else "red"
    console.print(f"[{colour}]{protocol.name}: {sim.trace.num_rounds} rounds -> {model.report.depth} layers, "
                  f"width {model.report.width}; output {'identical to' if exact else 'DIFFERS from'} the simulator's "
                  f"(simulator {sim_seconds:.2f} s, model {model_seconds:.2f} s on the {run.engine} engine)[/]")
    return 0 if exact else 1


def alignment_table(alignment, max_rows: int | None = None) -> Table:
    """The simulator-vs-layers comparison as a compact table (the middle elided past ``max_rows``)."""
    rows = [[str(layer), str(step), f"{matching}/{alignment.machines}",
             "-" if first is None else f"[red]machine {first}[/]"] for layer, step, matching, first in alignment.rows]
    return compact_table("simulator rounds vs compiled layers (every machine's memory after its local step)",
                         ["layer", "after step", "machines matching", "first divergence"], rows, max_rows=max_rows,
                         what="layers")


def cmd_verify(args: argparse.Namespace, console: Console) -> int:
    from .plots import PlotError, require_matplotlib, result_figures, write_figures
    check_writable_file("--json", args.json)
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
    failed = [r for r in results if r.failed]
    seconds = time.perf_counter() - start
    console.print(("[green]all claims hold[/]" if not failed else f"[bold red]{len(failed)} claim(s) fail[/]")
                  + f" ({len(results)} checks, {seconds:.0f} s)")
    return 0 if not failed else 1
