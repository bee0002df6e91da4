"""The simulator's commands of the ``anna-mpc`` CLI: ``protocols`` and ``simulate``."""
from __future__ import annotations

import argparse
import math
import os
import re
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .config import MAX_WORDS, MPCConfig, check_integer, check_number
from .errors import MPCError
from .protocols import CATALOG, make_protocol, protocol_class
from .render import DEFAULT_MAX_ROWS, compact_table, format_bytes
from .backends import DaskOptions, backend_names
from .simulator import MODES, Simulator
from .trace import RoundStats

__all__ = ["register", "cmd_protocols", "cmd_simulate", "parse_params", "UsageError", "int_arg", "float_arg",
           "check_writable_file", "check_writable_dir", "estimate_bytes", "check_run_size", "protocol_from_args",
           "DEFAULT_MAX_MEMORY", "parse_size", "cmd_explore", "parse_watch"]

DEFAULT_MAX_MEMORY = 8 * 2**30        # bytes a run may plan for before it is refused (--max-memory raises it)


class UsageError(ValueError):
    """A bad command line: the CLI prints its message as one line on stderr and exits 2 (the
    message names the flag and the values it allows)."""


def int_arg(low: int | None = None, high: int | None = MAX_WORDS):
    """An argparse ``type``: an integer within ``[low, high]`` (argparse names the flag).

    Examples
    --------
    >>> int_arg(low=1)("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be an integer >= 1 and <= 9223372036854775807, got 0
    """
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        try:
            return check_integer("", value, low=low, high=high, error=argparse.ArgumentTypeError)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(str(exc).lstrip()) from None
    parse.__name__ = "integer"
    return parse


def float_arg(low: float | None = None, high: float | None = None, *, low_open: bool = False,
              high_open: bool = False, name: str = "x"):
    """An argparse ``type``: a finite number within its bounds (open or closed)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        return check_number(name, value, low=low, high=high, low_open=low_open, high_open=high_open,
                            error=argparse.ArgumentTypeError)
    parse.__name__ = "number"
    return parse


def parse_size(text: str) -> int:
    """An argparse ``type`` for byte sizes: ``8G``, ``512M``, ``100k`` or plain bytes (> 0).

    Examples
    --------
    >>> parse_size("8G"), parse_size("512M"), parse_size("1000")
    (8589934592, 536870912, 1000)
    """
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}
    body = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = body[-1] if body and body[-1] in units else ""
    try:
        value = float(body[:len(body) - len(unit)]) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a size like 8G, 512M or 1000000 (bytes), got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a size > 0, got {text!r}")
    return int(value)


def estimate_bytes(n: int, machines: int = 0) -> int:
    """A lower bound on a run's memory: the input, and a state and an inbox of the same size
    (8-byte words), plus the ``machines + 1`` offsets of both ragged arrays.

    Examples
    --------
    >>> estimate_bytes(10**6, 1000)
    24016016
    """
    return 8 * (3 * n + 2 * (machines + 1))


def check_run_size(n: int, machines: int, max_memory: int, flag: str = "--max-memory") -> None:
    """:class:`UsageError` with the estimate when a run would need more than ``max_memory`` bytes:
    checked before any work (a plan search, an input), so a run too large is refused at once."""
    need = estimate_bytes(n, machines)
    if need > max_memory:
        where = f" on {machines} machines" if machines else ""
        raise UsageError(f"--n {n}{where} needs at least {format_bytes(need)} (input, state and inbox of 8-byte words), "
                         f"above the limit of {format_bytes(max_memory)}; raise it with {flag} if the machine has the memory")


def check_writable_file(flag: str, path: Path | None) -> None:
    """:class:`UsageError` naming ``flag`` unless ``path`` can be written (checked before a run,
    so a long run never fails at its end for want of a place to write)."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag}: {path} is a directory, expected a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{flag}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"{flag}: {path} is not writable")


def check_writable_dir(flag: str, path: Path | None) -> None:
    """:class:`UsageError` naming ``flag`` unless ``path`` is a writable directory or can be created."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag}: {path} exists and is not a directory")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UsageError(f"{flag}: {path} cannot be written ({existing} is not a writable directory)")

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
            raise UsageError(f"--param takes KEY=VALUE, got {pair!r}")
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
    p.add_argument("--eps", type=float_arg(0.0, 1.0, low_open=True, high_open=True, name="eps"), default=0.5,
                   help="eps at which bounds are evaluated (default 0.5)")
    p.set_defaults(func=cmd_protocols)

    p = sub.add_parser("simulate", help="run a library protocol on a generated input and verify it")
    p.add_argument("protocol", choices=sorted(CATALOG), help="protocol name")
    p.add_argument("--n", type=int_arg(low=1), required=True, help="input size in words")
    p.add_argument("--eps", type=float_arg(0.0, 1.0, low_open=True, high_open=True, name="eps"), required=True,
                   help="memory exponent: s = ceil(a * n**eps)")
    p.add_argument("--gamma", type=float_arg(0.0, name="gamma"), default=0.0, help="extra-machines exponent (default 0)")
    p.add_argument("--memory-factor", type=float_arg(0.0, low_open=True, name="a"), default=None,
                   help="the constant a in s = a * n**eps")
    p.add_argument("--machines-factor", type=float_arg(0.0, low_open=True, name="b"), default=None,
                   help="the constant b in machines = b * n**(1+gamma-eps)")
    p.add_argument("--seed", type=int_arg(low=0, high=2**64 - 1), default=0,
                   help="seed of the input and of the protocol's randomness")
    p.add_argument("--trace-json", type=Path, default=None, help="write the trace as JSON here")
    p.add_argument("--mode", choices=MODES, default="auto", help="protocol style to run (default: batch when available)")
    p.add_argument("--non-strict", action="store_true", help="record limit violations instead of stopping")
    p.add_argument("--k", type=int_arg(low=0), default=None, help="hop count (khop)")
    p.add_argument("--op", choices=("sum", "min", "max"), default=None, help="aggregation operator (aggregate)")
    p.add_argument("--modulus", type=int_arg(low=1), default=None, help="modulus M (match2)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="any other protocol parameter")
    p.add_argument("--no-table", action="store_true", help="print only the summary line")
    p.add_argument("--all", action="store_true", help="show every round (long runs show the first and last 10)")
    p.add_argument("--backend", choices=backend_names(), default="local", help="where to run the rounds (default local)")
    p.add_argument("--workers", type=int_arg(low=1, high=4096), default=None,
                   help="dask: workers of the local cluster started (default 2)")
    p.add_argument("--blocks", type=int_arg(low=1, high=2**20), default=None,
                   help="dask: blocks the machines are cut into (default 2 per worker)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="dask: run on the cluster of this scheduler")
    p.add_argument("--connect-timeout", type=float_arg(0.0, low_open=True, name="seconds"), default=10.0, metavar="SECONDS",
                   help="dask: give up on an unreachable scheduler after this long (default 10)")
    p.add_argument("--worker-timeout", type=float_arg(0.0, low_open=True, name="seconds"), default=60.0, metavar="SECONDS",
                   help="dask: give up once the cluster has had no worker for this long (default 60)")
    p.add_argument("--round-timeout", type=float_arg(0.0, low_open=True, name="seconds"), default=None, metavar="SECONDS",
                   help="dask: give up on a round that takes longer than this (default: no limit)")
    p.add_argument("--checkpoint", type=Path, default=None, metavar="DIR", help="dask: checkpoint every round to DIR")
    p.add_argument("--resume", type=Path, default=None, metavar="DIR", help="dask: resume the run checkpointed in DIR")
    p.add_argument("--max-memory", type=parse_size, default=DEFAULT_MAX_MEMORY, metavar="SIZE",
                   help="refuse runs estimated to need more memory than this (default 8G; e.g. 64G)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("explore", help="run a library protocol and write an HTML page to explore the run")
    p.add_argument("protocol", choices=sorted(CATALOG), help="protocol name")
    p.add_argument("--n", type=int_arg(low=1), required=True, help="input size in words")
    p.add_argument("--eps", type=float_arg(0.0, 1.0, low_open=True, high_open=True, name="eps"), default=0.5,
                   help="memory exponent (default 0.5)")
    p.add_argument("--seed", type=int_arg(low=0, high=2**64 - 1), default=0,
                   help="seed of the input and of the protocol's randomness")
    p.add_argument("--round", type=int, default=1, help="round the page opens at (default 1)")
    p.add_argument("--out", type=Path, default=None, metavar="PATH", help="the page (default PROTOCOL.html)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a protocol parameter")
    p.add_argument("--watch", default=None, metavar="IDS",
                   help="machines whose memory and inbox the page records, e.g. 0-7,42 (default: the first 8)")
    p.add_argument("--serve", action="store_true",
                   help="also serve the page on 127.0.0.1 (a free port) until Ctrl-C; unwatched machines are "
                        "then recorded on demand")
    p.set_defaults(func=cmd_explore)


def cmd_protocols(args: argparse.Namespace, console: Console) -> int:
    headers = ["name", "what it computes"] + [f"n=2^{n.bit_length() - 1}" for n in _LISTING_SIZES] + ["on dask"]
    rows, notes = [], []
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
                notes.append(f"{name} at n = {n}: {exc}")
                bounds.append(f"n/a ({len(notes)})")
        rows.append([name, doc, *bounds, "block batch" if cls.block_batch else "per machine"])
    console.print(compact_table(f"Protocol library (round bounds at eps = {args.eps:g}, default constants)", headers,
                                rows, numeric=[False, False] + [True] * len(_LISTING_SIZES) + [False]))
    for i, note in enumerate(notes, 1):
        console.print(f"[dim]({i}) {note}[/]")
    for name in sorted(CATALOG):
        formula = getattr(protocol_class(name), "round_formula", "")
        if formula:
            console.print(f"rounds of {name}: {escape(formula)}")
    return 0


def protocol_from_args(args: argparse.Namespace):
    """The protocol named on the command line with its parameters (``--k``, ``--op``,
    ``--modulus``, ``--param KEY=VALUE``); :class:`UsageError` naming the flags if it refuses them."""
    params = parse_params(args.param)
    flags = {key: f"--param {key}" for key in params}
    for key in ("k", "op", "modulus"):
        if getattr(args, key, None) is not None:
            params[key] = getattr(args, key)
            flags[key] = f"--{key}"
    try:
        return make_protocol(args.protocol, **params)
    except (MPCError, ValueError, TypeError) as exc:
        named = [flag for key, flag in flags.items() if re.search(rf"\b{re.escape(key)}\b", str(exc))] or \
            list(flags.values())
        what = f"{args.protocol} does not take this parameter ({exc})" if isinstance(exc, TypeError) else str(exc)
        raise UsageError(f"{', '.join(named)}: {what}") from exc


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
    """The Simulator's backend arguments; UsageError for dask options without ``--backend dask``."""
    if args.backend != "dask":
        given = [flag for flag, value in (("--workers", args.workers), ("--blocks", args.blocks),
                                          ("--scheduler", args.scheduler), ("--checkpoint", args.checkpoint),
                                          ("--resume", args.resume),
                                          ("--round-timeout", args.round_timeout)) if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} need --backend dask")
        return {"backend": args.backend}
    if args.scheduler is not None and args.workers is not None:
        raise UsageError("--workers sizes a local cluster: it cannot be combined with --scheduler")
    if args.resume is not None and not (Path(args.resume) / "checkpoint.json").is_file():
        raise UsageError(f"--resume: {args.resume} holds no checkpoint (no checkpoint.json)")
    check_writable_dir("--checkpoint", args.checkpoint)
    options = DaskOptions(workers=2 if args.workers is None else args.workers, blocks=args.blocks,
                          connect_timeout=args.connect_timeout, worker_timeout=args.worker_timeout,
                          round_timeout=args.round_timeout, client=args.scheduler, checkpoint=args.checkpoint,
                          resume=args.resume)
    return {"backend": "dask", "dask": options}


def cmd_simulate(args: argparse.Namespace, console: Console) -> int:
    check_run_size(args.n, 0, args.max_memory)          # before the protocol plans anything for n
    protocol = protocol_from_args(args)
    check_writable_file("--trace-json", args.trace_json)
    try:
        config = _config_from(args, protocol)
    except MPCError as exc:
        raise UsageError(f"--n/--eps/--gamma/--memory-factor/--machines-factor: {exc}") from exc
    check_run_size(config.n, config.machines, args.max_memory)
    backend = _backend_options(args)
    try:
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
        console.print(trace.table(max_rows=None if args.all else DEFAULT_MAX_ROWS))
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


def parse_watch(text: str | None) -> list[int] | None:
    """``"0-7,42"`` -> ``[0, ..., 7, 42]`` (None stays None); ``ValueError`` naming a bad item."""
    if text is None:
        return None
    ids: list[int] = []
    for item in text.split(","):
        first, _, last = item.strip().partition("-")
        try:
            ids.extend(range(int(first), int(last or first) + 1))
        except ValueError:
            raise ValueError(f"--watch takes machine ids and ranges such as 0-7,42, got {item!r}") from None
    return ids


def cmd_explore(args: argparse.Namespace, console: Console, extend=None, check=None) -> int:
    """``extend(page, protocol, config, data)`` adds sections to the page; ``check(protocol,
    config)`` refuses bad options before any work (both used by ``reductions.explore``)."""
    from .explore import record_contents, serve_html, write_explorer
    out = args.out if args.out is not None else Path(f"{args.protocol}.html")
    args.k = args.op = args.modulus = None          # explore takes protocol parameters by --param only
    protocol = protocol_from_args(args)
    try:
        config = protocol.default_config(args.n, args.eps)
        if check is not None:
            check(protocol, config)
        data = protocol.generate_input(config, seed=args.seed)
        add = None if extend is None else (lambda page: extend(page, protocol, config, data))
        page = write_explorer(out, protocol, config, data, seed=args.seed, start_round=args.round,
                              watch=parse_watch(args.watch), extend=add)
    except (MPCError, ValueError, TypeError) as exc:
        console.print(f"[bold red]{type(exc).__name__}:[/] {exc}")
        return 2
    console.print(f"{page['summary']}\nwrote {out} ({out.stat().st_size} bytes; open it in a browser, "
                  f"no network needed)")
    if args.serve:
        server, url = serve_html(out.read_text(),
                                 contents=lambda machine: record_contents(protocol, config, data, machine, args.seed))
        console.print(f"serving {url} (Ctrl-C stops)", soft_wrap=True, highlight=False)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
    return 0
