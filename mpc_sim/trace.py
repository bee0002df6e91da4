"""Per-round accounting: :class:`RoundStats`, :class:`Violation` and the run's :class:`Trace`."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from .config import MPCConfig
from .errors import LoadError

__all__ = ["RoundStats", "OutputStats", "Violation", "Retry", "Trace", "TRACE_FORMAT"]

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


@dataclass(frozen=True)
class Trace:
    """Everything measured in one run of a protocol.

    ``rounds`` holds one :class:`RoundStats` per communication round; ``output`` the final,
    message-free local computation. ``num_rounds`` is the protocol's round count R. ``retries``
    records rounds a distributed backend had to run again; like wall times, they are left out of
    :meth:`counts`.

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
        }
        if not timings:
            for record in data["rounds"] + ([data["output"]] if data["output"] else []):
                del record["wall_time"]
            del data["retries"]
        return data

    def to_json(self, path: str | Path | None = None, *, timings: bool = True) -> str:
        """Serialise (losslessly) and optionally write to ``path``.

        ``timings=False`` gives the canonical form: no wall times, no retries, sorted keys, so
        the same protocol, config and seed give byte-identical text on every backend.

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

    # --- rendering --------------------------------------------------------------------------
    def table(self) -> Table:
        """The per-round table, limits highlighted against ``s``."""
        s = self.config.s
        cfg = self.config
        title = (f"{escape(self.protocol)}: n = {cfg.n}, eps = {cfg.eps:g}, s = {s}, machines = {cfg.machines}, "
                 f"rounds = {self.num_rounds}" + (f" (bound {self.rounds_bound})" if self.rounds_bound is not None else ""))
        table = Table(title=title)
        for col in ("round", "max mem", "mean mem", "max sent", "max recv", "words", "messages", "active", "ms"):
            table.add_column(col, justify="right")

        def fmt(value: int) -> str:
            return f"[bold red]{value}[/]" if value > s else str(value)

        for r in self.rounds:
            table.add_row(str(r.round), fmt(r.max_memory), f"{r.mean_memory:.1f}", fmt(r.max_sent),
                          fmt(r.max_received), str(r.total_words), str(r.messages), str(r.active_machines),
                          f"{1e3 * r.wall_time:.1f}")
        if self.output is not None:
            table.add_row("output", fmt(self.output.max_memory), f"{self.output.mean_memory:.1f}", "-", "-", "-",
                          "-", "-", f"{1e3 * self.output.wall_time:.1f}")
        return table

    def __rich__(self) -> Table:
        return self.table()

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
    return cls(protocol=protocol, config=config, rounds=tuple(rounds), rounds_bound=rounds_bound, output=output,
               violations=violations, seed=seed, params=params, verified=verified, strict=strict, retries=retries)
