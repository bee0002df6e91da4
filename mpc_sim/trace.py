"""Per-round accounting: :class:`RoundStats`, :class:`Violation` and the run's :class:`Trace`."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
from rich.markup import escape
from rich.table import Table

from .config import MPCConfig
from .errors import LoadError, NotRecorded
from .render import compact_table, format_seconds, html_table

__all__ = ["RoundStats", "OutputStats", "Violation", "Retry", "RoundPeaks", "RoundMessages", "Trace", "TRACE_FORMAT",
           "PEAK_MACHINES", "top_machines", "merge_top"]

TRACE_FORMAT = "anna-mpc/trace/1"
_VIOLATION_KINDS = ("memory", "send", "receive")
_RETRY_SOURCES = ("dask", "checkpoint", "input")


@dataclass(frozen=True)
class RoundStats:
    """Accounting of one communication round.

    ``max_memory`` and ``mean_memory`` are the words a machine holds when the round starts (its
    kept memory plus the inbox delivered by the previous round), over all machines of the
    cluster; ``max_sent`` and ``max_received`` the largest per-machine traffic of the round;
    ``total_words`` the words moved; ``active_machines`` the machines that held or sent anything.
    """

    round: int
    max_memory: int
    mean_memory: float
    max_sent: int
    max_received: int
    total_words: int
    messages: int
    active_machines: int
    wall_time: float = field(default=0.0, compare=False)

    def __post_init__(self) -> None:
        if self.round < 1:
            raise ValueError(f"round numbers start at 1, got {self.round}")
        for name in ("max_memory", "max_sent", "max_received", "total_words", "messages", "active_machines"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_sent > self.total_words or self.max_received > self.total_words:
            raise ValueError("per-machine traffic cannot exceed the round's total words")

    def counts(self) -> tuple:
        """Everything but the wall time: what must be identical across runs and backends."""
        return tuple(getattr(self, f.name) for f in fields(self) if f.name != "wall_time")


@dataclass(frozen=True)
class OutputStats:
    """The final local computation (no messages): memory at its start and the output's size."""

    max_memory: int
    mean_memory: float
    max_output_memory: int
    wall_time: float = field(default=0.0, compare=False)

    def counts(self) -> tuple:
        return (self.max_memory, self.mean_memory, self.max_output_memory)


@dataclass(frozen=True)
class Violation:
    """A limit exceeded in non-strict mode: which kind, where, how much."""

    kind: str
    round: int
    machine: int
    observed: int
    limit: int

    def __post_init__(self) -> None:
        if self.kind not in _VIOLATION_KINDS:
            raise ValueError(f"violation kind must be one of {_VIOLATION_KINDS}, got {self.kind!r}")
        if self.observed <= self.limit:
            raise ValueError(f"not a violation: observed {self.observed} <= limit {self.limit}")

    def __str__(self) -> str:
        return f"round {self.round}, machine {self.machine}: {self.kind} {self.observed} > s = {self.limit}"


@dataclass(frozen=True)
class Retry:
    """A round a distributed backend ran again after losing a worker (not part of the counts).

    ``source`` is where the round's inputs came from the second time: ``dask`` (Dask recomputed
    the lost results from their lineage, the run never stopped), ``checkpoint`` (the state after
    round ``restarted_from`` was reloaded from the checkpoint directory) or ``input`` (the run
    restarted from its input; the rounds before ``round`` were recomputed and checked to give
    the counts already recorded). ``error`` says what was lost.
    """

    round: int
    restarted_from: int
    source: str
    error: str

    def __post_init__(self) -> None:
        if self.source not in _RETRY_SOURCES:
            raise ValueError(f"retry source must be one of {_RETRY_SOURCES}, got {self.source!r}")
        if not (0 <= self.restarted_from < self.round):
            raise ValueError(f"a retry of round {self.round} restarts from an earlier round, got {self.restarted_from}")


PEAK_MACHINES = 8
"""Machines kept per round and quantity in :class:`RoundPeaks` (the largest amounts)."""


def top_machines(amounts: np.ndarray, k: int = PEAK_MACHINES, *, first: int = 0) -> tuple[tuple[int, int], ...]:
    """The ``k`` machines with the largest positive amounts, as ``(machine, amount)`` pairs sorted
    by amount (largest first), ties by machine id; machine ``i`` of ``amounts`` is ``first + i``
    (a block of the cluster starting at machine ``first``).

    Examples
    --------
    >>> top_machines(np.array([3, 0, 7, 3, 1]), k=3)
    ((2, 7), (0, 3), (3, 3))
    >>> top_machines(np.array([3, 0, 7]), k=2, first=10)
    ((12, 7), (10, 3))
    """
    amounts = np.asarray(amounts)
    positive = int(np.count_nonzero(amounts > 0))
    k = min(k, positive)
    if k == 0:
        return ()
    threshold = np.partition(amounts, amounts.shape[0] - k)[amounts.shape[0] - k]
    above = np.flatnonzero(amounts > threshold)
    above = above[np.lexsort((above, -amounts[above]))]
    tied = np.flatnonzero(amounts == threshold)[:k - above.shape[0]]
    return tuple((int(m) + first, int(amounts[m])) for m in np.concatenate([above, tied]))


def merge_top(parts, k: int = PEAK_MACHINES) -> tuple[tuple[int, int], ...]:
    """The ``k`` largest of the :func:`top_machines` of disjoint sets of machines (blocks of a
    cluster): exactly :func:`top_machines` of the whole cluster, since each of the cluster's ``k``
    largest is among the ``k`` largest of its own block. What a distributed backend gathers is
    ``k`` pairs per block, never per-machine arrays.

    Examples
    --------
    >>> amounts = np.array([3, 0, 7, 3, 1, 7, 2])
    >>> blocks = [top_machines(amounts[lo:hi], 3, first=lo) for lo, hi in [(0, 2), (2, 5), (5, 7)]]
    >>> merge_top(blocks, 3) == top_machines(amounts, 3)
    True
    """
    pairs = sorted((pair for part in parts for pair in part), key=lambda pair: (-pair[1], pair[0]))
    return tuple(pairs[:k])


def _mean(value: float) -> str:
    """A mean memory: one decimal below 1000 words, whole words above (the table stays narrow)."""
    return f"{value:.1f}" if value < 1000 else f"{value:.0f}"


@dataclass(frozen=True)
class RoundPeaks:
    """Which machines held, sent and received the most in one round: the :data:`PEAK_MACHINES`
    largest amounts of each, as ``(machine, amount)`` pairs (largest first, ties by id).

    ``memory`` is what a machine holds when the round starts (kept memory plus inbox). The final,
    message-free local computation has ``round = R + 1``, its ``memory`` the larger of what each
    machine holds at its start and what it keeps, and no traffic. This is what lets
    :func:`mpc_sim.testing.assert_within` name the machines over a budget: the trace keeps
    ``3 * PEAK_MACHINES`` pairs per round, not per-machine arrays.
    """

    round: int
    memory: tuple[tuple[int, int], ...] = ()
    sent: tuple[tuple[int, int], ...] = ()
    received: tuple[tuple[int, int], ...] = ()

    @classmethod
    def measure(cls, round: int, memory: np.ndarray, sent: np.ndarray | None = None,
                received: np.ndarray | None = None) -> "RoundPeaks":
        return cls(round, top_machines(memory), () if sent is None else top_machines(sent),
                   () if received is None else top_machines(received))

    def to_dict(self) -> dict:
        return {"round": self.round, "memory": [list(p) for p in self.memory], "sent": [list(p) for p in self.sent],
                "received": [list(p) for p in self.received]}

    @classmethod
    def from_dict(cls, data: dict) -> "RoundPeaks":
        return cls(int(data["round"]), *(tuple((int(m), int(a)) for m, a in data.get(name, ()))
                                         for name in ("memory", "sent", "received")))


@dataclass(frozen=True, eq=False)
class RoundMessages:
    """Every message of one round, recorded by ``Simulator.run(..., record_messages=True)``:
    message ``j`` went from ``src[j]`` to ``dst[j]`` carrying ``words[j]`` words. Listed in
    delivery order: by destination, each destination's messages in the order of its inbox."""

    round: int
    src: np.ndarray
    dst: np.ndarray
    words: np.ndarray

    @property
    def num_messages(self) -> int:
        return int(self.src.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.src.nbytes + self.dst.nbytes + self.words.nbytes)

    def sent(self, machines: int) -> np.ndarray:
        """Words sent by each machine."""
        return np.bincount(self.src, weights=self.words, minlength=machines).astype(np.int64)

    def received(self, machines: int) -> np.ndarray:
        """Words received by each machine."""
        return np.bincount(self.dst, weights=self.words, minlength=machines).astype(np.int64)


@dataclass(frozen=True)
class Trace:
    """Everything measured in one run of a protocol.

    ``rounds`` holds one :class:`RoundStats` per communication round; ``output`` the final,
    message-free local computation. ``num_rounds`` is the protocol's round count R. ``retries``
    records rounds a distributed backend had to run again; like wall times, they are left out of
    :meth:`counts`.

    ``peaks`` names the machines with the largest memory and traffic in every round (see
    :class:`RoundPeaks`; the ``local`` and ``dask`` backends record the same ones, empty when a
    backend does not record them). ``mode`` is the style of
    the protocol that ran (``"batch"`` or ``"machine"``: under ``mode="auto"`` a protocol's
    per-machine ``step`` is not called when it has a batch step). ``messages`` holds every
    round's messages when the run was asked to record them (not saved in JSON).

    Examples
    --------
    >>> cfg = MPCConfig(n=16, eps=0.5)
    >>> t = Trace("demo", cfg, (RoundStats(1, 4, 4.0, 4, 4, 16, 4, 4),), rounds_bound=1)
    >>> t.num_rounds, t.check()
    (1, [])
    >>> Trace.from_json(t.to_json()) == t
    True
    """

    protocol: str
    config: MPCConfig
    rounds: tuple[RoundStats, ...]
    rounds_bound: int | None = None
    output: OutputStats | None = None
    violations: tuple[Violation, ...] = ()
    seed: int = 0
    params: dict = field(default_factory=dict, compare=True)
    verified: bool | None = None
    strict: bool = True
    retries: tuple[Retry, ...] = ()
    peaks: tuple[RoundPeaks, ...] = field(default=(), compare=False)
    mode: str | None = field(default=None, compare=False)
    messages: tuple[RoundMessages, ...] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for i, stats in enumerate(self.rounds):
            if stats.round != i + 1:
                raise ValueError(f"round {i + 1} of the trace is numbered {stats.round}")
        if self.rounds_bound is not None and self.rounds_bound < 0:
            raise ValueError(f"rounds_bound must be >= 0, got {self.rounds_bound}")

    @property
    def num_rounds(self) -> int:
        return len(self.rounds)

    @property
    def max_memory(self) -> int:
        values = [r.max_memory for r in self.rounds] + ([self.output.max_memory, self.output.max_output_memory]
                                                         if self.output else [])
        return max(values, default=0)

    @property
    def max_sent(self) -> int:
        return max((r.max_sent for r in self.rounds), default=0)

    @property
    def max_received(self) -> int:
        return max((r.max_received for r in self.rounds), default=0)

    @property
    def total_words(self) -> int:
        return sum(r.total_words for r in self.rounds)

    @property
    def wall_time(self) -> float:
        return sum(r.wall_time for r in self.rounds) + (self.output.wall_time if self.output else 0.0)

    def counts(self) -> tuple:
        """All counts (no wall times): equal for runs that did the same work."""
        return (self.protocol, self.config, tuple(r.counts() for r in self.rounds),
                self.output.counts() if self.output else None, self.violations)

    def check(self) -> list[str]:
        """Problems of this trace against its own config: limits exceeded, bound missed.

        Returns an empty list for a run within every limit of the MPC model and its round bound.
        """
        s = self.config.s
        problems = [str(v) for v in self.violations]
        for r in self.rounds:
            for name in ("max_memory", "max_sent", "max_received"):
                if getattr(r, name) > s:
                    problems.append(f"round {r.round}: {name} = {getattr(r, name)} > s = {s}")
        if self.output is not None:
            for name in ("max_memory", "max_output_memory"):
                if getattr(self.output, name) > s:
                    problems.append(f"output step: {name} = {getattr(self.output, name)} > s = {s}")
        if self.rounds_bound is not None and self.num_rounds > self.rounds_bound:
            problems.append(f"{self.num_rounds} rounds > declared bound {self.rounds_bound}")
        return list(dict.fromkeys(problems))

    def with_verified(self, verified: bool) -> "Trace":
        """A copy recording the verdict of checking the output against a reference solver."""
        return Trace(**{**{f.name: getattr(self, f.name) for f in fields(self)}, "verified": bool(verified)})

    # --- JSON -----------------------------------------------------------------------------
    def to_dict(self, *, timings: bool = True) -> dict:
        """The JSON form. ``timings=False`` leaves out what differs between runs doing the same
        work (wall times, a distributed backend's retries): the canonical form of the counts."""
        data = {
            "format": TRACE_FORMAT,
            "protocol": self.protocol,
            "config": self.config.to_dict(),
            "params": self.params,
            "seed": self.seed,
            "strict": self.strict,
            "rounds_bound": self.rounds_bound,
            "num_rounds": self.num_rounds,
            "verified": self.verified,
            "rounds": [asdict(r) for r in self.rounds],
            "output": asdict(self.output) if self.output else None,
            "violations": [asdict(v) for v in self.violations],
            "retries": [asdict(r) for r in self.retries],
            "mode": self.mode,
            "peaks": [p.to_dict() for p in self.peaks],
        }
        if not timings:     # what differs between backends doing the same work: times, retries, style, peaks
            for record in data["rounds"] + ([data["output"]] if data["output"] else []):
                del record["wall_time"]
            for key in ("retries", "mode", "peaks"):
                del data[key]
        return data

    def to_json(self, path: str | Path | None = None, *, timings: bool = True) -> str:
        """Serialise (losslessly) and optionally write to ``path``.

        ``timings=False`` gives the canonical form: no wall times, no retries, no protocol style
        or per-machine peaks (a backend records them or not), sorted keys, so the same protocol,
        config and seed give byte-identical text on every backend.

        Examples
        --------
        >>> cfg = MPCConfig(n=16, eps=0.5)
        >>> a = Trace("demo", cfg, (RoundStats(1, 4, 4.0, 4, 4, 16, 4, 4, wall_time=0.1),))
        >>> b = Trace("demo", cfg, (RoundStats(1, 4, 4.0, 4, 4, 16, 4, 4, wall_time=0.2),))
        >>> a.to_json() == b.to_json(), a.to_json(timings=False) == b.to_json(timings=False)
        (False, True)
        """
        data = self.to_dict(timings=timings)
        text = json.dumps(data, indent=1) if timings else json.dumps(data, indent=1, sort_keys=True) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "trace") -> "Trace":
        """Inverse of :meth:`to_dict`, every field checked: its type, its range, finiteness, and
        consistency (round numbering, ``num_rounds``, per-machine maxima within totals).

        Raises
        ------
        LoadError
            Naming ``source`` (the file) and the field.
        """
        return _trace_from_dict(cls, data, source)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "Trace":
        """Inverse of :meth:`to_json`: accepts the JSON text or a path to it.

        Raises
        ------
        LoadError
            For an unreadable, truncated or mis-shaped file, naming the file and the field.

        Examples
        --------
        >>> Trace.from_json('{"format": "anna-mpc/trace/1", "protocol": "x"')
        Traceback (most recent call last):
        ...
        mpc_sim.errors.LoadError: trace JSON: not valid JSON (truncated?): ...: line 1 column 47 (char 46)
        """
        text = str(text_or_path)
        source = "trace JSON"
        if isinstance(text_or_path, Path) or not text.lstrip().startswith(("{", "[")):
            source = str(text_or_path)
            try:
                text = Path(text_or_path).read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise LoadError(f"{source}: cannot read the trace file ({type(exc).__name__}: {exc})") from exc
        try:
            data = json.loads(text)         # NaN and Infinity are read, then refused by the field's check
        except ValueError as exc:
            raise LoadError(f"{source}: not valid JSON (truncated?): {exc}") from exc
        return cls.from_dict(data, source=source)

    # --- messages ---------------------------------------------------------------------------
    def round_messages(self, round: int) -> RoundMessages:
        """The messages of communication round ``round`` (1 .. R); needs ``record_messages=True``."""
        if self.messages is None:
            raise NotRecorded(f"this run of {self.protocol} did not record its messages: run it with "
                              f"Simulator(...).run(..., record_messages=True)")
        if not 1 <= round <= len(self.messages):
            raise NotRecorded(f"round {round} does not exist: {self.protocol} ran {len(self.messages)} "
                              f"communication rounds (1..{len(self.messages)})")
        return self.messages[round - 1]

    def to_networkx(self, round: int):
        """Who sent to whom in ``round``: a ``networkx.DiGraph`` with every machine as a node
        (attributes ``sent`` and ``received``, in words) and an edge ``u -> v`` for each pair that
        exchanged messages (attributes ``words`` and ``messages``). Needs the recording.

        Examples
        --------
        >>> from mpc_sim import Simulator, make_protocol
        >>> protocol = make_protocol("broadcast")
        >>> config = protocol.default_config(16, 0.5)
        >>> data = protocol.generate_input(config, seed=0)
        >>> trace = Simulator(config).run(protocol, data, record_messages=True).trace
        >>> graph = trace.to_networkx(1)
        >>> words = sum(w for _, _, w in graph.edges(data="words"))
        >>> graph.number_of_nodes() == config.machines, words == trace.rounds[0].total_words
        (True, True)
        """
        import networkx as nx

        recorded = self.round_messages(round)
        machines = self.config.machines
        graph = nx.DiGraph(round=round, protocol=self.protocol)
        sent, received = recorded.sent(machines), recorded.received(machines)
        graph.add_nodes_from((m, {"sent": int(sent[m]), "received": int(received[m])}) for m in range(machines))
        if recorded.num_messages:
            pairs = recorded.src.astype(np.int64) * machines + recorded.dst
            keys, inverse, counts = np.unique(pairs, return_inverse=True, return_counts=True)
            words = np.bincount(inverse, weights=recorded.words, minlength=keys.shape[0]).astype(np.int64)
            graph.add_edges_from((int(k // machines), int(k % machines), {"words": int(w), "messages": int(c)})
                                 for k, w, c in zip(keys, words, counts))
        return graph

    # --- rendering --------------------------------------------------------------------------
    _COLUMNS = ("round", "max mem", "mean mem", "max sent", "max recv", "words", "msgs", "active", "time")

    def _rows(self) -> tuple[list[list[object]], set[tuple[int, int]]]:
        """Every row of the table as plain values, and the (row, column) cells over ``s``."""
        s = self.config.s
        rows, over = [], set()
        for r in self.rounds:
            rows.append([r.round, r.max_memory, _mean(r.mean_memory), r.max_sent, r.max_received, r.total_words,
                         r.messages, r.active_machines, format_seconds(r.wall_time)])
        if self.output is not None:
            rows.append(["output", self.output.max_memory, _mean(self.output.mean_memory), "-", "-", "-", "-", "-",
                         format_seconds(self.output.wall_time)])
        for i, row in enumerate(rows):
            over.update((i, j) for j in (1, 3, 4) if isinstance(row[j], int) and row[j] > s)
        return rows, over

    def _title(self) -> str:
        cfg = self.config
        mode = f", {self.mode} style" if self.mode else ""
        return (f"{self.protocol}: n = {cfg.n}, eps = {cfg.eps:g}, s = {cfg.s}, machines = {cfg.machines}, "
                f"rounds = {self.num_rounds}" + (f" (bound {self.rounds_bound})" if self.rounds_bound is not None else "")
                + mode)

    def table(self, max_rows: int | None = None) -> Table:
        """The per-round table, amounts over ``s`` in red. Numbers are never cut (it fits 80
        columns for runs up to about 10^9 words); with ``max_rows`` the middle rounds of a longer
        run are left out (one row of ``⋮``, and a caption saying how many)."""
        rows, over = self._rows()
        cells = [[(f"[bold red]{value}[/]" if (i, j) in over else str(value)) for j, value in enumerate(row)]
                 for i, row in enumerate(rows)]
        final = cells[self.num_rounds:]           # the output row is never elided
        return compact_table(escape(self._title()), self._COLUMNS, cells[:self.num_rounds], max_rows=max_rows,
                             what="rounds", always=final)

    def __rich__(self) -> Table:
        return self.table()

    def _repr_html_(self, max_rows: int | None = 40) -> str:
        import html
        rows, over = self._rows()
        return (f"<div><b>{html.escape(self._title())}</b><br><span>{html.escape(self.summary())}</span>"
                + html_table(self._COLUMNS, rows, max_rows=max_rows, what="rounds", highlight=over,
                                   always=len(rows) - self.num_rounds) + "</div>")

    def summary(self) -> str:
        """One line: rounds vs bound, peak memory/sent/received as fractions of s, verdict."""
        s = self.config.s
        bound = "?" if self.rounds_bound is None else str(self.rounds_bound)
        verdict = {None: "not verified", True: "verified", False: "WRONG OUTPUT"}[self.verified]
        return (f"{self.protocol}: rounds {self.num_rounds} (bound {bound}), max memory/s {self.max_memory / s:.2f}, "
                f"max sent/s {self.max_sent / s:.2f}, max received/s {self.max_received / s:.2f}, "
                f"{len(self.violations)} violations, {verdict}")


# --- loading, every field checked ---------------------------------------------------------------
def _load_error(source: str, field_name: str, why: str) -> LoadError:
    return LoadError(f"{source}: field {field_name!r} {why}")


def _get(record: dict, key: str, source: str, where: str):
    if key not in record:
        raise _load_error(source, f"{where}{key}", "is missing")
    return record[key]


def _int_field(value, source: str, name: str, *, low: int = 0, optional: bool = False):
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _load_error(source, name, f"must be an integer, got {value!r}")
    if value < low:
        raise _load_error(source, name, f"must be >= {low}, got {value}")
    return value


def _float_field(value, source: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _load_error(source, name, f"must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise _load_error(source, name, f"must be a finite number >= 0, got {value!r}")
    return float(value)


def _record(cls, record, source: str, where: str, ints: tuple, floats: tuple, strings: tuple = (),
            optional: tuple = ()):
    """A dataclass ``cls`` from a JSON object whose keys are exactly its fields (some optional)."""
    if not isinstance(record, dict):
        raise _load_error(source, where.rstrip("."), f"must be a JSON object, got {type(record).__name__}")
    unknown = sorted(set(record) - set(ints) - set(floats) - set(strings))
    if unknown:
        raise _load_error(source, f"{where}{unknown[0]}", "is not a field of this record")
    values = {}
    for key in ints + floats + strings:
        if key in optional and key not in record:
            continue
        value = _get(record, key, source, where)
        if key in ints:
            values[key] = _int_field(value, source, f"{where}{key}", low=-(2**63) if key == "machine" else 0)
        elif key in floats:
            values[key] = _float_field(value, source, f"{where}{key}")
        elif not isinstance(value, str):
            raise _load_error(source, f"{where}{key}", f"must be a string, got {value!r}")
        else:
            values[key] = value
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise _load_error(source, where.rstrip("."), f"is inconsistent: {exc}") from exc


_ROUND_INTS = ("round", "max_memory", "max_sent", "max_received", "total_words", "messages", "active_machines")


def _trace_from_dict(cls, data, source: str) -> "Trace":
    if not isinstance(data, dict):
        raise LoadError(f"{source}: a trace is a JSON object, got {type(data).__name__}")
    if data.get("format") != TRACE_FORMAT:
        raise _load_error(source, "format", f"is {data.get('format')!r}, expected {TRACE_FORMAT!r} "
                                            f"(not an anna-mpc trace)")
    protocol = _get(data, "protocol", source, "")
    if not isinstance(protocol, str):
        raise _load_error(source, "protocol", f"must be a string, got {protocol!r}")
    config_data = _get(data, "config", source, "")
    if not isinstance(config_data, dict):
        raise _load_error(source, "config", f"must be a JSON object, got {type(config_data).__name__}")
    for key in ("n", "eps", "gamma", "memory_factor", "machines_factor", "s", "machines"):
        if key in config_data and (isinstance(config_data[key], bool) or not isinstance(config_data[key], (int, float))
                                   or not math.isfinite(config_data[key])):
            raise _load_error(source, f"config.{key}", f"must be a finite number, got {config_data[key]!r}")
    if "n" in config_data and not isinstance(config_data["n"], int):
        raise _load_error(source, "config.n", f"must be an integer, got {config_data['n']!r}")
    for key in ("n", "eps"):
        if key not in config_data:
            raise _load_error(source, f"config.{key}", "is missing")
    try:
        config = MPCConfig.from_dict(config_data)
    except KeyError as exc:
        raise _load_error(source, f"config.{exc.args[0]}", "is missing") from exc
    except (TypeError, ValueError) as exc:
        raise _load_error(source, "config", f"is invalid: {exc}") from exc
    rounds_data = _get(data, "rounds", source, "")
    if not isinstance(rounds_data, list):
        raise _load_error(source, "rounds", f"must be a list, got {type(rounds_data).__name__}")
    rounds = []
    for i, record in enumerate(rounds_data):
        stats = _record(RoundStats, record, source, f"rounds[{i}].", _ROUND_INTS, ("mean_memory", "wall_time"),
                        optional=("wall_time",))
        if stats.round != i + 1:
            raise _load_error(source, f"rounds[{i}].round", f"is {stats.round}, expected {i + 1}")
        rounds.append(stats)
    num_rounds = data.get("num_rounds", len(rounds))
    _int_field(num_rounds, source, "num_rounds")
    if num_rounds != len(rounds):
        raise _load_error(source, "num_rounds", f"is {num_rounds}, but the trace holds {len(rounds)} rounds")
    output = data.get("output")
    if output is not None:
        output = _record(OutputStats, output, source, "output.", ("max_memory", "max_output_memory"),
                         ("mean_memory", "wall_time"), optional=("wall_time",))
    violations = data.get("violations", [])
    if not isinstance(violations, list):
        raise _load_error(source, "violations", "must be a list")
    violations = tuple(_record(Violation, v, source, f"violations[{i}].", ("round", "machine", "observed", "limit"),
                               (), ("kind",)) for i, v in enumerate(violations))
    retries = data.get("retries", [])
    if not isinstance(retries, list):
        raise _load_error(source, "retries", "must be a list")
    retries = tuple(_record(Retry, r, source, f"retries[{i}].", ("round", "restarted_from"), (), ("source", "error"))
                    for i, r in enumerate(retries))
    seed = _int_field(data.get("seed", 0), source, "seed")
    rounds_bound = _int_field(data.get("rounds_bound"), source, "rounds_bound", optional=True)
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise _load_error(source, "params", f"must be a JSON object, got {type(params).__name__}")
    verified, strict = data.get("verified"), data.get("strict", True)
    if verified is not None and not isinstance(verified, bool):
        raise _load_error(source, "verified", f"must be true, false or null, got {verified!r}")
    if not isinstance(strict, bool):
        raise _load_error(source, "strict", f"must be true or false, got {strict!r}")
    mode = data.get("mode")
    if mode is not None and not isinstance(mode, str):
        raise _load_error(source, "mode", f"must be a string or null, got {mode!r}")
    peaks = data.get("peaks", [])
    if not isinstance(peaks, list):
        raise _load_error(source, "peaks", "must be a list")
    return cls(protocol=protocol, config=config, rounds=tuple(rounds), rounds_bound=rounds_bound, output=output,
               violations=violations, seed=seed, params=params, verified=verified, strict=strict, retries=retries,
               peaks=tuple(_peaks(p, source, f"peaks[{i}]") for i, p in enumerate(peaks)), mode=mode)


def _peaks(record, source: str, where: str) -> "RoundPeaks":
    if not isinstance(record, dict):
        raise _load_error(source, where, f"must be a JSON object, got {type(record).__name__}")
    _int_field(_get(record, "round", source, f"{where}."), source, f"{where}.round", low=1)
    for name in ("memory", "sent", "received"):
        pairs = record.get(name, [])
        if not isinstance(pairs, list) or not all(
                isinstance(pair, list) and len(pair) == 2 and
                all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in pair) for pair in pairs):
            raise _load_error(source, f"{where}.{name}", "must be a list of [machine, amount] pairs of integers >= 0")
    return RoundPeaks.from_dict(record)
