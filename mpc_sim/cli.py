"""The simulator's commands of the ``anna-mpc`` CLI: ``protocols`` and ``simulate``."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .config import MPCConfig
from .errors import MPCError
from .protocols import CATALOG, make_protocol, protocol_class
from .simulator import BACKENDS, MODES, Simulator
from .trace import RoundStats

__all__ = ["register", "cmd_protocols", "cmd_simulate", "parse_params"]

_LISTING_SIZES = (2**10, 2**16, 2**20)


def parse_params(pairs: list[str]) -> dict:
    """``["k=4", "op=min"]`` -> ``{"k": 4, "op": "min"}`` (ints, then floats, else strings).

    Examples
    --------
    >>> parse_params(["k=4", "ratio=0.5", "op=min"])
    {'k': 4, 'ratio': 0.5, 'op': 'min'}
    """
    params: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param takes KEY=VALUE, got {pair!r}")
        for convert in (int, float):
            try:
                params[key] = convert(value)
                break
            except ValueError:
                continue
        else:
            params[key] = value
    return params


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``protocols`` and ``simulate`` to the CLI's subcommands."""
    p = sub.add_parser("protocols", help="list the protocol library with each round bound")
    p.add_argument("--eps", type=float, default=0.5, help="eps at which bounds are evaluated (default 0.5)")
    p.set_defaults(func=cmd_protocols)

    p = sub.add_parser("simulate", help="run a library protocol on a generated input and verify it")
    p.add_argument("protocol", choices=sorted(CATALOG), help="protocol name")
    p.add_argument("--n", type=int, required=True, help="input size in words")
    p.add_argument("--eps", type=float, required=True, help="memory exponent: s = ceil(a * n**eps)")
    p.add_argument("--gamma", type=float, default=0.0, help="extra-machines exponent (default 0)")
    p.add_argument("--memory-factor", type=float, default=None, help="the constant a in s = a * n**eps")
    p.add_argument("--machines-factor", type=float, default=None, help="the constant b in machines = b * n**(1+gamma-eps)")
    p.add_argument("--seed", type=int, default=0, help="seed of the input and of the protocol's randomness")
    p.add_argument("--trace-json", type=Path, default=None, help="write the trace as JSON here")
    p.add_argument("--mode", choices=MODES, default="auto", help="protocol style to run (default: batch when available)")
    p.add_argument("--non-strict", action="store_true", help="record limit violations instead of stopping")
    p.add_argument("--k", type=int, default=None, help="hop count (khop)")
    p.add_argument("--op", default=None, help="aggregation operator: sum, min or max (aggregate)")
    p.add_argument("--modulus", type=int, default=None, help="modulus M (match2)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="any other protocol parameter")
    p.add_argument("--no-table", action="store_true", help="print only the summary line")
    p.add_argument("--backend", choices=BACKENDS, default="local", help="where to run the rounds (default local)")
    p.add_argument("--workers", type=int, default=None, help="dask: workers of the local cluster started (default 2)")
    p.add_argument("--blocks", type=int, default=None, help="dask: blocks the machines are cut into (default 2 per worker)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="dask: run on the cluster of this scheduler")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="dask: give up on an unreachable scheduler after this long (default 10)")
    p.add_argument("--worker-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="dask: give up once the cluster has had no worker for this long (default 60)")
    p.add_argument("--round-timeout", type=float, default=None, metavar="SECONDS",
                   help="dask: give up on a round that takes longer than this (default: no limit)")
    p.add_argument("--checkpoint", type=Path, default=None, metavar="DIR", help="dask: checkpoint every round to DIR")
    p.add_argument("--resume", type=Path, default=None, metavar="DIR", help="dask: resume the run checkpointed in DIR")
    p.set_defaults(func=cmd_simulate)


def cmd_protocols(args: argparse.Namespace, console: Console) -> int:
    table = Table(title=f"Protocol library (round bounds at eps = {args.eps:g}, default constants)")
    table.add_column("name", no_wrap=True)
    table.add_column("what it computes")
    for n in _LISTING_SIZES:
        table.add_column(f"bound n=2^{n.bit_length() - 1}", justify="right")
    table.add_column("on dask", no_wrap=True)
    table.add_column("round formula")
    for name in sorted(CATALOG):
        cls = protocol_class(name)
        protocol = cls()
        doc = cls.summary or ((cls.__doc__ or "").strip().splitlines() or [""])[0]
        bounds = []
        for n in _LISTING_SIZES:
            try:
                config = protocol.default_config(n, args.eps)
                protocol.check_config(config)
                bounds.append(str(protocol.rounds_bound(config)))
            except MPCError as exc:
                bounds.append(f"[dim]n/a ({exc})[/]")
        table.add_row(name, doc, *bounds, "block batch" if cls.block_batch else "per machine",
                      escape(getattr(cls, "round_formula", "")) or "[dim]see rounds_bound[/]")
    console.print(table)
    return 0


def _config_from(args: argparse.Namespace, protocol) -> MPCConfig:
    base = protocol.default_config(args.n, args.eps)
    memory_factor = args.memory_factor if args.memory_factor is not None else base.memory_factor
    machines_factor = args.machines_factor if args.machines_factor is not None else base.machines_factor
    return MPCConfig(n=args.n, eps=args.eps, gamma=args.gamma, memory_factor=memory_factor, machines_factor=machines_factor)


class _LazyProgress:
    """A progress bar over rounds that appears only once a run has taken more than a second."""

    def __init__(self, console: Console, total: int, label: str):
        self.console, self.total, self.label = console, total, label
        self.start = time.perf_counter()
        self.progress: Progress | None = None
        self.task = None
        self.done = 0

    def __call__(self, stats: RoundStats) -> None:
        self.done = stats.round
        if self.progress is None and time.perf_counter() - self.start > 1.0:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=self.console, transient=True)
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=max(self.total, self.done))
        if self.progress is not None:
            self.progress.update(self.task, completed=self.done, total=max(self.total, self.done))

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _backend_options(args: argparse.Namespace) -> dict:
    """The Simulator's backend arguments; ValueError for dask options without ``--backend dask``."""
    if args.backend == "local":
        given = [flag for flag, value in (("--workers", args.workers), ("--blocks", args.blocks),
                                          ("--scheduler", args.scheduler), ("--checkpoint", args.checkpoint),
                                          ("--resume", args.resume),
                                          ("--round-timeout", args.round_timeout)) if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)} need --backend dask")
        return {}
    from .backends.dask import DaskOptions
    if args.scheduler is not None and args.workers is not None:
        raise ValueError("--workers sizes a local cluster: it cannot be combined with --scheduler")
    options = DaskOptions(workers=args.workers or 2, blocks=args.blocks, connect_timeout=args.connect_timeout,
                          worker_timeout=args.worker_timeout, round_timeout=args.round_timeout)
    return {"backend": "dask", "client": args.scheduler, "dask": options, "checkpoint": args.checkpoint,
            "resume": args.resume}


def cmd_simulate(args: argparse.Namespace, console: Console) -> int:
    params = parse_params(args.param)
    for key in ("k", "op", "modulus"):
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    try:
        protocol = make_protocol(args.protocol, **params)
    except TypeError as exc:
        console.print(f"[red]error:[/] {args.protocol} does not take these parameters: {exc}")
        return 2
    try:
        config = _config_from(args, protocol)
        backend = _backend_options(args)
        data = protocol.generate_input(config, seed=args.seed)
        progress = _LazyProgress(console, protocol.rounds_bound(config), f"{args.protocol} rounds")
        simulator = Simulator(config, strict=not args.non_strict, mode=args.mode, on_round=progress, **backend)
        try:
            result = simulator.run(protocol, data, seed=args.seed)
        finally:
            progress.close()
    except (MPCError, ValueError) as exc:
        console.print(f"[bold red]{type(exc).__name__}:[/] {exc}")
        return 2
    trace = result.trace.with_verified(protocol.verify(protocol.validate_input(config, data), result.output))
    if not args.no_table:
        console.print(trace.table())
        for violation in trace.violations[:20]:
            console.print(f"[red]violation:[/] {violation}")
    if args.trace_json is not None:
        trace.to_json(args.trace_json)
    for retry in trace.retries:
        console.print(f"[yellow]retry:[/] round {retry.round} rerun from round {retry.restarted_from} "
                      f"({retry.source}): {retry.error}")
    ok = trace.verified and not trace.violations and (trace.rounds_bound is None or trace.num_rounds <= trace.rounds_bound)
    console.print(("[green]" if ok else "[red]") + trace.summary() + "[/]")
    return 0 if ok else 1
