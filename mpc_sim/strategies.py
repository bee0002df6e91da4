"""Hypothesis strategies for testing MPC protocols and the simulator (public; needs ``hypothesis``).

Use them in your own tests: :func:`configs` and :func:`small_configs` (cluster configs),
:func:`library_inputs` (a library protocol, a config it runs in and a generated input),
:func:`schedules` (random protocols: what every machine keeps and sends in every round, within
the limits or not), :func:`message_batches`, :func:`traces`.

Examples
--------
>>> from hypothesis import given
>>> from mpc_sim import simulate
>>> @given(library_inputs(names=["prefix-sum"]))
... def test_prefix_sum_is_correct(case):
...     protocol, config, data = case
...     assert protocol.verify(data, simulate(protocol, data, config).output)
>>> test_prefix_sum_is_correct()

The central object is a :class:`Schedule`: for every round, the kept memory every machine returns
and the messages sent, in send order; its last round sends nothing (the final local computation).
:class:`ScriptedProtocol` replays a schedule, in the per-machine style, in the batch style, or both,
and logs every inbox it is handed. :func:`expected_run` is the plain reference: what every inbox
must contain, every round's counts and every limit violation, computed with Python loops from the
schedule alone. Schedules are drawn within the limits (optionally filling them exactly) or loosely
(ignoring them), and :func:`inject_violation` pushes one amount exactly one word over ``s``.

Word contents come from a numpy generator seeded by hypothesis (fast, and still shrinkable in
the structural parameters); float words are arbitrary 64-bit patterns (every NaN payload,
-0.0, subnormals, infinities, the largest finite values) so delivery is checked bit for bit.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from mpc_sim.config import MPCConfig
from mpc_sim.errors import ConfigError
from mpc_sim.protocol import Protocol, spread_input
from mpc_sim.state import ClusterState, MessageBatch
from mpc_sim.trace import OutputStats, RoundStats, Trace, Violation

__all__ = [
    "Schedule", "ScriptedProtocol", "MachineOnly", "BatchOnly", "ExpectedRun", "expected_run", "make_schedule",
    "inject_violation",
    "random_words", "configs", "small_configs", "schedules", "round_stats", "traces", "message_batches",
    "reference_route", "SPECIAL_FLOATS", "library_inputs",
]

SPECIAL_FLOATS = np.array([-0.0, 0.0, np.inf, -np.inf, np.nan, 1.7976931348623157e308, -1.7976931348623157e308,
                           5e-324, -5e-324, 2.0 ** 62, -(2.0 ** 63), 1e300], dtype=np.float64)
_INT64 = np.iinfo(np.int64)


def random_words(rng: np.random.Generator, size: int, dtype: np.dtype | type, finite: bool = False) -> np.ndarray:
    """``size`` words: full-range int64, or float64 from arbitrary bit patterns plus special values
    (with ``finite``, NaN and inf replaced by -0.0: what an input may hold)."""
    bits = rng.integers(_INT64.min, _INT64.max, size=size, dtype=np.int64, endpoint=True)
    if np.dtype(dtype) == np.int64:
        return bits
    words = bits.view(np.float64)
    special = rng.random(size) < 0.3
    words[special] = rng.choice(SPECIAL_FLOATS, size=int(special.sum()))
    if finite:
        words[~np.isfinite(words)] = -0.0
    return words


# --------------------------------------------------------------------------------------------------
# Schedules and the scripted protocol
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Schedule:
    """What every machine does in every round.

    ``memories[r][i]`` is the kept memory machine ``i`` returns in round ``r + 1``;
    ``messages[r]`` the messages ``(src, dst, payload)`` of round ``r + 1`` in send order.
    The last round has no messages, so the protocol runs ``rounds = len(memories) - 1`` rounds.
    """

    config: MPCConfig
    dtype: np.dtype
    initial: tuple[np.ndarray, ...]
    memories: tuple[tuple[np.ndarray, ...], ...]
    messages: tuple[tuple[tuple[int, int, np.ndarray], ...], ...]

    def __post_init__(self) -> None:
        assert len(self.memories) == len(self.messages) >= 1
        assert not self.messages[-1], "the last round of a schedule sends nothing"
        assert all(self.messages[:-1]), "every round but the last sends something"

    @property
    def rounds(self) -> int:
        return len(self.memories) - 1

    def __repr__(self) -> str:       # sizes only: hypothesis prints this on failure
        rounds = "; ".join(
            f"round {r + 1}: kept {[len(m) for m in mem]}, messages {[(s, d, len(p)) for s, d, p in msgs]}"
            for r, (mem, msgs) in enumerate(zip(self.memories, self.messages)))
        return (f"Schedule({self.config!r}, {self.dtype}, s={self.config.s}, machines={self.config.machines}, "
                f"initial {[len(m) for m in self.initial]}; {rounds})")

    def input_data(self) -> np.ndarray:
        return np.concatenate(self.initial)

    def replace_round(self, r: int, *, memories=None, messages=None) -> "Schedule":
        """A copy with round ``r`` (1-based) replaced."""
        mem, msg = list(self.memories), list(self.messages)
        if memories is not None:
            mem[r - 1] = tuple(memories)
        if messages is not None:
            msg[r - 1] = tuple(messages)
        return dataclasses.replace(self, memories=tuple(mem), messages=tuple(msg))


class ScriptedProtocol(Protocol):
    """Replays a :class:`Schedule`, ignoring what it holds, and logs every inbox it is handed.

    ``styles`` says which of ``step`` / ``batch_step`` the instance offers (the simulator's
    ``mode`` picks among them). ``batch_order`` is the order of the batch style's messages:
    ``"script"`` (as scheduled, interleaving sources) or ``"by_source"`` (grouped by sending
    machine, which is the order the per-machine style produces).
    """

    name = "scripted"

    def __init__(self, schedule: Schedule, batch_order: str = "by_source"):
        assert batch_order in ("script", "by_source")
        self.schedule = schedule
        self.word_dtype = np.dtype(schedule.dtype)
        self.batch_order = batch_order
        self.log: dict[tuple[int, int], tuple[list[int], np.ndarray]] = {}

    def rounds_bound(self, config: MPCConfig) -> int:
        return self.schedule.rounds

    def initial_state(self, config: MPCConfig, data: np.ndarray) -> ClusterState:
        return ClusterState.from_list(self.schedule.initial, self.word_dtype)

    def _record(self, r: int, machine: int, inbox) -> None:
        self.log[(r, machine)] = ([int(x) for x in inbox.sources], inbox.words.copy())

    def step(self, ctx, machine, memory, inbox):
        self._record(ctx.round, machine, inbox)
        r = ctx.round - 1
        outgoing = [(dst, payload) for src, dst, payload in self.schedule.messages[r] if src == machine]
        return self.schedule.memories[r][machine], outgoing

    def batch_step(self, ctx, state, delivery):
        for machine in range(delivery.machines):
            self._record(ctx.round, machine, delivery.inbox(machine))
        r = ctx.round - 1
        messages = list(self.schedule.messages[r])
        if self.batch_order == "by_source":
            messages.sort(key=lambda m: m[0])       # stable: keeps each source's own order
        return (ClusterState.from_list(self.schedule.memories[r], self.word_dtype),
                MessageBatch.from_list(messages, self.word_dtype))


class MachineOnly(ScriptedProtocol):
    """The scripted protocol with only the per-machine style."""

    batch_step = Protocol.batch_step


class BatchOnly(ScriptedProtocol):
    """The scripted protocol with only the batch style."""

    step = Protocol.step


# --------------------------------------------------------------------------------------------------
# The reference: expected inboxes, counts and violations, by plain loops
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExpectedRun:
    inboxes: dict            # (round, machine) -> (sources, words) handed to the machine in that round
    round_counts: tuple      # RoundStats.counts() of every communication round
    output_counts: tuple     # OutputStats.counts()
    violations: tuple        # Violation records in the engine's order
    output: np.ndarray


def _by_source(messages):
    return sorted(messages, key=lambda m: m[0])


def expected_run(schedule: Schedule, order: str = "by_source") -> ExpectedRun:
    """What a correct engine must produce for ``schedule``, messages taken in ``order``."""
    cfg = schedule.config
    q, s = cfg.machines, cfg.s
    kept = [len(m) for m in schedule.initial]
    inbox_lists: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(q)]
    inboxes, rounds, violations = {}, [], []

    def over(kind, r, amounts):
        violations.extend(Violation(kind, r, i, a, s) for i, a in enumerate(amounts) if a > s)

    for r in range(1, schedule.rounds + 2):
        holding = [kept[i] + sum(len(p) for _, p in inbox_lists[i]) for i in range(q)]
        for i in range(q):
            words = (np.concatenate([p for _, p in inbox_lists[i]]) if inbox_lists[i]
                     else np.zeros(0, dtype=schedule.dtype))
            inboxes[(r, i)] = ([src for src, _ in inbox_lists[i]], words)
        over("memory", r, holding)
        kept = [len(m) for m in schedule.memories[r - 1]]
        messages = schedule.messages[r - 1]
        if not messages:
            over("memory", r, kept)
            output_counts = (max(holding), sum(holding) / q, max(kept))
            break
        if order == "by_source":
            messages = _by_source(messages)
        sent, received = [0] * q, [0] * q
        inbox_lists = [[] for _ in range(q)]
        for src, dst, payload in messages:
            sent[src] += len(payload)
            received[dst] += len(payload)
            inbox_lists[dst].append((src, payload))
        over("send", r, sent)
        over("receive", r, received)
        active = sum(1 for i in range(q) if holding[i] > 0 or sent[i] > 0)
        total = sum(len(p) for _, _, p in messages)
        rounds.append((r, max(holding), sum(holding) / q, max(sent), max(received), total, len(messages), active))
    output = np.concatenate([np.asarray(m, dtype=schedule.dtype) for m in schedule.memories[-1]])
    return ExpectedRun(inboxes, tuple(rounds), output_counts, tuple(violations), output)


def reference_route(src, dst, offsets, words, machines):
    """Plain per-message delivery: each machine's list of (source, payload), in sent order."""
    inboxes = [[] for _ in range(machines)]
    for j in range(len(src)):
        inboxes[int(dst[j])].append((int(src[j]), words[offsets[j]:offsets[j + 1]]))
    return inboxes


# --------------------------------------------------------------------------------------------------
# Building schedules
# --------------------------------------------------------------------------------------------------
def make_schedule(config: MPCConfig, rounds: int, seed: int, dtype=np.int64, *, density: float = 1.0,
                  max_length: int | None = None, tight: bool = False, loose: bool = False) -> Schedule:
    """A random schedule of ``rounds`` communication rounds.

    Within the limits unless ``loose`` (lengths then ignore every limit). ``tight`` fills send and
    receive budgets up to exactly ``s`` where it can. ``density`` scales the number of messages.
    """
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    q, s = config.machines, config.s
    max_length = s if max_length is None else max(1, min(max_length, s))
    initial = tuple(m.copy() for m in spread_input(random_words(rng, config.n, dtype, finite=True), config).to_list())
    memories, messages = [], []
    for r in range(rounds + 1):
        final = r == rounds
        if loose:
            kept_sizes = rng.integers(0, s + 2, q)
        elif tight:
            kept_sizes = np.where(rng.random(q) < 0.5, s, rng.integers(0, s + 1, q))
        else:
            kept_sizes = rng.integers(0, s + 1, q)
        msgs: list[tuple[int, int, np.ndarray]] = []
        if not final:
            send_left = np.full(q, s)
            recv_left = s - kept_sizes
            if not loose and recv_left.max() == 0:       # leave room for at least one message
                kept_sizes[int(rng.integers(q))] -= 1
                recv_left = s - kept_sizes
            for _ in range(max(1, int(density * q * rng.random() * 2))):
                a, b = int(rng.integers(q)), int(rng.integers(q))
                length = int(rng.integers(1, max_length + (2 if loose else 1)))
                if not loose:
                    length = min(length, send_left[a], recv_left[b])
                if length >= 1:
                    msgs.append((a, b, random_words(rng, length, dtype)))
                    send_left[a] -= length
                    recv_left[b] -= length
            if tight and not loose:                     # fill whatever budgets remain, exactly
                for a in rng.permutation(q):
                    for b in rng.permutation(q):
                        length = int(min(send_left[a], recv_left[b]))
                        if length >= 1:
                            msgs.append((int(a), int(b), random_words(rng, length, dtype)))
                            send_left[a] -= length
                            recv_left[b] -= length
            if not msgs:
                a = int(rng.integers(q))
                b = int(np.flatnonzero(recv_left > 0)[0]) if (recv_left > 0).any() else a
                msgs.append((a, b, random_words(rng, 1, dtype)))
            order = rng.permutation(len(msgs))          # interleave sources in send order
            msgs = [msgs[j] for j in order]
        memories.append(tuple(random_words(rng, int(k), dtype) for k in kept_sizes))
        messages.append(tuple(msgs))
    return Schedule(config, dtype, initial, tuple(memories), tuple(messages))


def _round_amounts(schedule: Schedule, r: int) -> tuple[np.ndarray, np.ndarray]:
    q = schedule.config.machines
    sent, received = np.zeros(q, dtype=np.int64), np.zeros(q, dtype=np.int64)
    for src, dst, payload in schedule.messages[r - 1]:
        sent[src] += len(payload)
        received[dst] += len(payload)
    return sent, received


def inject_violation(schedule: Schedule, kind: str, r: int, machine: int,
                     seed: int = 0) -> tuple[Schedule, tuple[type, int, int]] | None:
    """Push one amount of a within-limits schedule to exactly ``s + 1``.

    ``kind`` is ``"send"`` or ``"receive"`` (round ``r`` must communicate) or ``"memory"`` (the
    kept memory returned in round ``r`` is grown so the machine holds ``s + 1`` words when the
    next round starts, or at the end of the final round). Returns the new schedule and the
    expected (error kind, round, machine), or None when the injection is impossible (not enough
    spare send capacity to overload a receiver).
    """
    rng = np.random.default_rng(seed)
    cfg = schedule.config
    q, s, dtype = cfg.machines, cfg.s, schedule.dtype
    if kind == "send":
        sent, _ = _round_amounts(schedule, r)
        extra = (machine, int(rng.integers(q)), random_words(rng, int(s - sent[machine] + 1), dtype))
        return schedule.replace_round(r, messages=schedule.messages[r - 1] + (extra,)), ("send", r, machine)
    if kind == "receive":
        sent, received = _round_amounts(schedule, r)
        need = int(s - received[machine] + 1)
        added = []
        for src in rng.permutation(q):
            take = int(min(need, s - sent[src]))
            if take > 0:
                added.append((int(src), machine, random_words(rng, take, dtype)))
                need -= take
            if need == 0:
                break
        if need:
            return None
        return schedule.replace_round(r, messages=schedule.messages[r - 1] + tuple(added)), ("receive", r, machine)
    assert kind == "memory"
    final = r == schedule.rounds + 1
    received = np.zeros(q, dtype=np.int64) if final else _round_amounts(schedule, r)[1]
    memories = list(schedule.memories[r - 1])
    memories[machine] = random_words(rng, int(s + 1 - received[machine]), dtype)
    return schedule.replace_round(r, memories=memories), ("memory", r if final else r + 1, machine)


# --------------------------------------------------------------------------------------------------
# Hypothesis strategies
# --------------------------------------------------------------------------------------------------
def _valid_config(**params) -> MPCConfig | None:
    try:
        return MPCConfig(**params)
    except ConfigError:
        return None


@st.composite
def configs(draw, max_n: int = 10**6, min_eps: float = 0.05, max_eps: float = 0.95) -> MPCConfig:
    """Any valid config (sizes may be large: for arithmetic, not for running)."""
    params = dict(
        n=draw(st.integers(1, max_n)),
        eps=draw(st.floats(min_eps, max_eps)),
        gamma=draw(st.sampled_from([0.0, 0.0, 0.1, 0.25])),
        memory_factor=draw(st.floats(0.5, 4.0)),
        machines_factor=draw(st.floats(0.5, 3.0)),
    )
    cfg = _valid_config(**params)
    if cfg is None:
        cfg = MPCConfig(**{**params, "memory_factor": 1.0, "machines_factor": 1.0})
    return cfg


@st.composite
def small_configs(draw, max_n: int = 120, max_machines: int = 40) -> MPCConfig:
    """Configs small enough to run many rounds quickly: at most ``max_machines`` machines."""
    n = draw(st.integers(1, max_n) | st.integers(max_n // 3, max_n))   # not only tiny clusters
    eps = draw(st.sampled_from([0.34, 0.5, 0.6, 0.75]))
    gamma = draw(st.sampled_from([0.0, 0.0, 0.1]))
    memory_factor = draw(st.sampled_from([1.0, 1.5, 2.0, 3.0]))
    machines_factor = draw(st.sampled_from([1.0, 1.0, 1.5]))
    cfg = _valid_config(n=n, eps=eps, gamma=gamma, memory_factor=memory_factor, machines_factor=machines_factor)
    if cfg is None or cfg.machines > max_machines:
        cfg = MPCConfig(n=n, eps=0.75)
    return cfg


@st.composite
def schedules(draw, dtype=None, max_rounds: int = 3, tight: bool | None = None, loose: bool = False,
              config: MPCConfig | None = None) -> Schedule:
    """A random schedule on a random small config (within limits unless ``loose``)."""
    cfg = config if config is not None else draw(small_configs())
    dtype = draw(st.sampled_from([np.int64, np.float64])) if dtype is None else dtype
    return make_schedule(
        cfg, draw(st.sampled_from(list(range(1, max_rounds + 1)) + [0])), draw(st.integers(0, 2**32 - 1)), dtype,
        density=draw(st.sampled_from([0.2, 1.0, 3.0])),
        max_length=draw(st.sampled_from([1, 3, None])),
        tight=draw(st.booleans()) if tight is None else tight,
        loose=loose,
    )


@st.composite
def message_batches(draw, dtype=None, max_machines: int = 12, max_messages: int = 40):
    """A random message batch with in-range ids, and its number of machines."""
    machines = draw(st.integers(1, max_machines))
    dtype = draw(st.sampled_from([np.int64, np.float64])) if dtype is None else dtype
    m = draw(st.integers(0, max_messages))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lengths = rng.integers(1, draw(st.sampled_from([2, 5, 20])), m)
    skew = draw(st.booleans())          # many messages to the first two machines only
    dst = rng.integers(0, min(2, machines) if skew else machines, m)
    batch = MessageBatch(rng.integers(0, machines, m), dst,
                         np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                         random_words(rng, int(lengths.sum()), dtype))
    return batch, machines


@st.composite
def round_stats(draw, r: int) -> RoundStats:
    total = draw(st.integers(0, 10**9))
    return RoundStats(
        round=r, max_memory=draw(st.integers(0, 10**9)), mean_memory=draw(st.floats(0, 1e9)),
        max_sent=draw(st.integers(0, total)), max_received=draw(st.integers(0, total)), total_words=total,
        messages=draw(st.integers(0, 10**9)), active_machines=draw(st.integers(0, 10**6)),
        wall_time=draw(st.floats(0, 100)),
    )


_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**62, 2**62),
                          st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))


@st.composite
def traces(draw) -> Trace:
    """A random (not necessarily plausible) trace, with JSON-representable params."""
    cfg = draw(configs())
    rounds = tuple(draw(round_stats(r)) for r in range(1, draw(st.integers(0, 6)) + 1))
    output = draw(st.none() | st.builds(OutputStats, st.integers(0, 10**9), st.floats(0, 1e9),
                                        st.integers(0, 10**9), st.floats(0, 100)))
    violations = tuple(
        Violation(draw(st.sampled_from(["memory", "send", "receive"])), draw(st.integers(1, 50)),
                  draw(st.integers(0, cfg.machines - 1)), cfg.s + draw(st.integers(1, 10**6)), cfg.s)
        for _ in range(draw(st.integers(0, 4))))
    params = draw(st.dictionaries(st.text(min_size=1, max_size=6),
                                  _json_scalars | st.lists(_json_scalars, max_size=3), max_size=4))
    return Trace(
        protocol=draw(st.text(min_size=1, max_size=12)), config=cfg, rounds=rounds,
        rounds_bound=draw(st.none() | st.integers(0, 100)), output=output, violations=violations,
        seed=draw(st.integers(0, 2**63 - 1)), params=params, verified=draw(st.sampled_from([None, True, False])),
        strict=draw(st.booleans()),
    )


@st.composite
def library_inputs(draw, names: list[str] | None = None, max_n: int = 256,
                   eps: tuple[float, ...] = (0.5, 0.75)) -> tuple[Protocol, MPCConfig, np.ndarray]:
    """``(protocol, config, data)``: a protocol of the library (one of ``names``, default any)
    with default parameters, its default config for a drawn ``n`` and ``eps``, and an input of
    ``n`` words generated from a drawn seed."""
    from .errors import MPCError
    from .protocols import CATALOG, make_protocol

    name = draw(st.sampled_from(sorted(CATALOG) if names is None else list(names)))
    protocol = make_protocol(name)
    n = draw(st.integers(4, max_n))
    config = protocol.default_config(n, draw(st.sampled_from(list(eps))))
    try:
        protocol.check_config(config)
    except MPCError:
        from hypothesis import assume
        assume(False)
    return protocol, config, protocol.generate_input(config, seed=draw(st.integers(0, 2**31 - 1)))
