"""Pass 3 of the compiler: the token-wise maps and heads of every layer.

Every map here acts row by row (a Python loop over tokens, or numpy operations on single
columns), so the compiled model is token-wise by construction: token ``i`` only ever computes on
its own row, exactly as machine ``i`` only computes on its own memory and inbox. These maps are
the plain reference (the dense engine); the lean engine (:mod:`.execute`) computes the same
layers vectorised over tokens. The heads of a sub-layer are the same in every round and are
shared between layers; ``anna`` heads all hash ids with one set of tables (:class:`IdLSH`).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from anna.transformer import Head, Layer, Placement
from mpc_sim import ClusterState, Delivery, Inbox, MessageBatch, Protocol, RoundContext
from mpc_sim.backends.base import machine_by_machine

from .errors import CompileError, RoundBudgetExceeded
from .layouts import LIMBS, DecodeError, Layout, Message, limbs_to_words
from .plan import CompilePlan
from .stream import StreamLayout, TokenState

__all__ = ["build_embedding", "build_layer", "build_layers", "build_readout", "IdEmbedding", "IdLSH", "id_lsh",
           "far_bound", "check_id_separation", "ID_NEAR", "ID_FAR", "SOFTMAX_TEMPERATURE"]

ID_NEAR = 0.1
"""The LSH's near radius r for id vectors: equal ids are at distance 0."""
ID_FAR = 0.8
"""Distinct ids are at least this far apart (checked at compile time): the LSH's c * r."""
SOFTMAX_TEMPERATURE = 400.0
"""beta of the dense softmax heads: a match scores beta, the null key 0.84 beta, other keys at most
0.68 beta, so every weight off the matches is below exp(-64): nothing float64 can see."""
NULL_SCORE = 0.84


class IdEmbedding:
    """Machine ids as query/key vectors.

    ``ema`` heads use the id itself (a 1-vector: exact match is equality). ``anna`` heads use
    ``signs`` pseudo-random signs per id scaled to unit norm, so equal ids are at distance 0 and
    distinct ids at distance about ``sqrt(2)``; the LSH's (r, c) must separate the two.
    ``softmax`` heads (dense, the quadratic baseline) use the same unit vectors plus one coordinate:
    1 in queries, 0 in keys, and a null token whose key is ``NULL_SCORE`` on that coordinate only,
    so that a receiver nobody addressed attends to the null token (value 0) instead of a stranger.
    """

    def __init__(self, attention: str, signs: int = 64, seed: int = 0):
        self.attention, self.signs, self.seed = attention, int(signs), int(seed)
        self.dim = {"ema": 1, "anna": self.signs, "softmax": self.signs + 1}[attention]

    def unit(self, ids: np.ndarray) -> np.ndarray:
        """The ``signs`` pseudo-random signs of every id, scaled to unit norm (rows of ``(len(ids), signs)``)."""
        from mpc_sim import hash64

        bits = hash64(self.seed, ids[:, None], np.arange(self.signs)[None, :]) >> np.uint64(63)
        return (bits.astype(np.float64) * 2.0 - 1.0) / np.sqrt(self.signs)

    def __call__(self, ids: np.ndarray, *, query: bool = False) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if self.attention == "ema":
            return ids.astype(np.float64)[:, None]
        if self.attention == "anna":
            return self.unit(ids)
        return np.concatenate([self.unit(ids), np.full((ids.shape[0], 1), 1.0 if query else 0.0)], axis=1)

    def null_key(self) -> np.ndarray:
        key = np.zeros(self.dim)
        key[-1] = NULL_SCORE
        return key


@dataclass(frozen=True)
class IdLSH:
    """The hash tables every ``anna`` head of a compiled model uses on id vectors, and why.

    ``mode``: ``"exact-ids"`` (the default: equal ids are at distance 0 and collide in every
    table whatever the functions, so one table suffices; ``z`` makes far pairs collide with
    probability at most ``far_bound <= min(1/N, 1e-6)`` over all pairs of ids), ``"theorem-3.4"`` (``z``, ``ell``
    from Theorem 3.4 for ``r = ID_NEAR``, ``c = ID_FAR / ID_NEAR``) or ``"given"``.
    ``far_bound``: the stated probability that some pair of distinct ids (queries ``0..N-1``
    against keys ``-N..N-1``) collides in some table: ``2 N**2 * ell * p2**z`` with ``p2`` the
    family's collision probability at distance ``ID_FAR``.
    """

    lsh: object
    mode: str
    far_bound: float
    p2: float


ID_FAIL = 10**6
"""``exact-ids`` sizes ``z`` so that distinct ids collide with probability at most ``min(1/N, 1/ID_FAIL)``."""


def id_lsh(machines: int, ids: IdEmbedding | None = None, *, mode: str = "exact-ids") -> IdLSH:
    """Random hyperplanes for the id vectors of ``machines`` tokens (see :class:`IdLSH`).

    Examples
    --------
    >>> choice = id_lsh(1000)
    >>> choice.lsh.ell, choice.lsh.z, choice.far_bound <= 1e-6
    (1, 94, True)
    """
    from anna.lsh import Hyperplane, LSHConfig, theory_parameters

    family = Hyperplane()
    n = max(2, int(machines))
    p2 = family.collision_probability(ID_FAR)
    if mode == "exact-ids":
        # far pairs collide with probability at most min(1/N, 1e-6) over all pairs: tiny models too
        z = max(1, math.ceil(math.log(2.0 * n ** 2 * max(n, ID_FAIL)) / math.log(1.0 / p2)))
        lsh = LSHConfig(family, z=z, ell=1)
    elif mode == "theorem-3.4":
        lsh = theory_parameters(n, ID_NEAR, ID_FAR / ID_NEAR, family).config(family)
    else:
        raise ValueError(f"mode must be 'exact-ids' or 'theorem-3.4', got {mode!r}")
    return IdLSH(lsh, mode, far_bound(n, lsh), p2)


def far_bound(machines: int, lsh) -> float:
    """``2 N**2 * ell * p2**z``: a union bound on some pair of distinct ids colliding in a table."""
    p2 = lsh.family.collision_probability(ID_FAR)
    return float(min(1.0, 2.0 * machines ** 2 * lsh.ell * p2 ** lsh.z))


def check_id_separation(ids: IdEmbedding, machines: int, limit: int = 4096) -> float:
    """The smallest distance between the vectors of distinct ids a query may meet (the ids
    ``0..machines-1`` and the sentinels ``-1..-machines``); CompileError below ``ID_FAR``.
    Skipped (returns nan) above ``limit`` ids, where the check would cost more than the model."""
    if 2 * machines > limit:
        return float("nan")
    vectors = ids.unit(np.arange(-machines, machines))
    gram = vectors @ vectors.T
    norms = np.diag(gram)
    dist2 = norms[:, None] + norms[None, :] - 2.0 * gram
    np.fill_diagonal(dist2, np.inf)
    smallest = float(np.sqrt(max(0.0, dist2.min())))
    if smallest < ID_FAR:
        raise CompileError(f"id vectors of dimension {ids.dim} are only {smallest:.3f} apart (< {ID_FAR}); "
                           f"raise the id dimension or change the seed")
    return smallest


def _named(name: str, function: Callable) -> Callable:
    """``function`` under a readable name (model listings show it instead of ``<locals>``)."""
    function.__name__ = function.__qualname__ = name
    return function


def _inbox(messages: list[tuple[int, int, np.ndarray]]) -> Inbox:
    """The simulator's inbox order: by source, then by the message's index in the source's outbox."""
    ordered = sorted(messages, key=lambda m: (m[0], m[1]))
    lengths = [len(w) for _, _, w in ordered]
    offsets = np.zeros(len(ordered) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    words = np.concatenate([w for _, _, w in ordered]) if ordered else np.zeros(0, dtype=np.int64)
    return Inbox(np.array([m[0] for m in ordered], dtype=np.int64), offsets, words)


def _local_step(protocol: Protocol, plan: CompilePlan, round: int, state: TokenState, inbox: Inbox) -> TokenState:
    """Machine ``state.machine``'s local computation of ``round``, run and read by the simulator's own
    per-machine engine (:func:`~mpc_sim.backends.base.machine_by_machine` on a block of one machine,
    as a distributed backend runs a block): a malformed return raises the simulator's typed error
    (ProtocolError, StepError for an exception of the step itself), never a silent cast."""
    ctx = RoundContext(round, plan.config, plan.seed, first_machine=state.machine)
    memory = np.ascontiguousarray(state.memory)
    held = ClusterState(memory, np.array([0, memory.shape[0]], dtype=np.int64))
    received = MessageBatch(inbox.sources, np.full(len(inbox), state.machine, dtype=np.int64), inbox.offsets,
                            inbox.words)
    kept, sent = machine_by_machine(protocol, ctx, held, Delivery(received, np.array([0, len(inbox)], dtype=np.int64)))
    state.memory = kept.words.view(np.int64)
    state.outbox = []
    for j in range(sent.num_messages):
        dst = int(sent.dst[j])
        if not 0 <= dst < plan.config.machines:
            raise CompileError(f"round {round}: message from machine {state.machine} to machine {dst}: no such "
                               f"machine (the cluster has {plan.config.machines})")
        state.outbox.append((dst, sent.payload(j).view(np.int64)))
    if len(state.outbox) > plan.fanout:
        raise CompileError(f"round {round}, machine {state.machine}: {len(state.outbox)} messages, more than the "
                           f"fan-out bound {plan.fanout} the model was compiled for")
    state.inbox = []
    return state


def _as_protocol_words(protocol: Protocol, words: np.ndarray) -> np.ndarray:
    return words if protocol.word_dtype == np.int64 else words.view(np.float64)


def build_embedding(protocol: Protocol, plan: CompilePlan, stream: StreamLayout) -> Callable[[np.ndarray], np.ndarray]:
    """Token ``i``'s input is machine ``i``'s initial memory (length, limbs); the embedding runs the
    first local computation on it."""

    def embed(inputs: np.ndarray) -> np.ndarray:
        rows = np.zeros((inputs.shape[0], stream.dim), dtype=np.float64)
        for machine in range(plan.config.machines, inputs.shape[0]):   # the null token of softmax models
            rows[machine] = stream.encode(TokenState(-1, halted=True))
        for machine in range(min(inputs.shape[0], plan.config.machines)):
            length = int(inputs[machine, 0])
            memory = limbs_to_words(inputs[machine, 1:1 + LIMBS * length].reshape(length, LIMBS))
            state = TokenState(machine, memory=_as_protocol_words(protocol, memory))
            state = _local_step(protocol, plan, 1, state, _inbox([]))
            rows[machine] = stream.encode(state)
        return rows

    return _named("embed: initial memory, then round 1's local step", embed)


def _message_columns(stream: StreamLayout, index: int) -> tuple[int, int]:
    o = stream.outbox_at
    return o, o + 1 + 2 * index


def build_layers(protocol: Protocol, plan: CompilePlan, layout: Layout, stream: StreamLayout,
                 ids: IdEmbedding, lsh: object | None = None, head_seed: int | None = None) -> tuple[Layer, ...]:
    """Every layer of the model. The heads of sub-layer ``sub`` are the same in every round (head
    ``a`` carries message ``sub * alpha + a``), so they are built once and shared; ``anna`` heads
    all hash with ``head_seed`` (one set of tables for the whole model, see :class:`IdLSH`)."""
    heads = {sub: _heads(plan, layout, stream, ids, sub, lsh, head_seed) for sub in range(plan.layers_per_round)}
    layers = []
    for layer in range(plan.depth):
        round_, sub = plan.round_of_layer(layer)
        last = sub == plan.layers_per_round - 1
        layers.append(Layer(heads[sub], mlp=_mlp(protocol, plan, layout, stream, round_, sub, last)))
    return tuple(layers)


def build_layer(protocol: Protocol, plan: CompilePlan, layout: Layout, stream: StreamLayout,
                ids: IdEmbedding, layer: int, lsh: object | None = None, head_seed: int | None = None) -> Layer:
    """Layer ``layer`` (0-based): ``alpha`` routing heads and the global head, then the MLP."""
    round_, sub = plan.round_of_layer(layer)
    last = sub == plan.layers_per_round - 1
    return Layer(_heads(plan, layout, stream, ids, sub, lsh, head_seed),
                 mlp=_mlp(protocol, plan, layout, stream, round_, sub, last))


def _heads(plan: CompilePlan, layout: Layout, stream: StreamLayout, ids: IdEmbedding, sub: int,
           lsh: object | None, head_seed: int | None) -> tuple[Head, ...]:
    heads = [_routing_head(stream, layout, ids, sub * plan.alpha + a, a, lsh, plan, head_seed)
             for a in range(plan.alpha)]
    heads.append(_global_head(stream, ids, lsh, plan, head_seed))
    return tuple(heads)


def _head(plan: CompilePlan, ids: IdEmbedding, lsh: object | None, head_seed: int | None, **maps) -> Head:
    kind = plan.attention
    if kind == "softmax":
        return Head(kind, dim=ids.dim, temperature=SOFTMAX_TEMPERATURE, **maps)
    if kind == "anna":
        return Head(kind, dim=ids.dim, lsh=lsh, seed=head_seed, **maps)
    return Head(kind, dim=ids.dim, **maps)


def _routing_head(stream: StreamLayout, layout: Layout, ids: IdEmbedding, index: int, slot: int,
                  lsh: object | None, plan: CompilePlan, head_seed: int | None) -> Head:
    count_col, dst_col = _message_columns(stream, index)

    def query(x, positions):
        return ids(x[:, 0], query=True)

    def key(x, positions):
        has = x[:, count_col] > index
        # machines without an index-th message key a negative id no query asks for
        keys = ids(np.where(has, x[:, dst_col], -1.0 - x[:, 0]).astype(np.int64))
        keys[x[:, 0] < 0] = ids.null_key()
        return keys

    def value(x, positions):
        out = np.zeros((x.shape[0], layout.width))
        for token in np.flatnonzero(x[:, count_col] > index):
            state = stream.decode(x[token])
            dst, words = state.outbox[index]
            out[token] = layout.encode(Message(state.machine, dst, words))
        return out

    columns = stream.head_slice(slot)
    output = Placement(columns.start, layout.width, stream.dim)
    return _head(plan, ids, lsh, head_seed, query=_named("own id", query),
                 key=_named(f"dst of outbox[{index}]", key), value=_named(f"packet of outbox[{index}]", value),
                 output=output, value_dim=layout.width)


def _global_head(stream: StreamLayout, ids: IdEmbedding, lsh: object | None, plan: CompilePlan,
                 head_seed: int | None) -> Head:
    """Every token attends to every token: the average of 'has messages' is > 0 iff anybody sends."""
    count_col = stream.outbox_at

    def constant(x, positions):
        return np.zeros((x.shape[0], ids.dim))

    def value(x, positions):
        return (x[:, count_col] > 0).astype(np.float64)[:, None]

    output = Placement(stream.global_at, 1, stream.dim)
    constant = _named("constant", constant)
    return _head(plan, ids, lsh, head_seed, query=constant, key=constant, value=_named("has messages", value),
                 output=output, value_dim=1)


def _mlp(protocol: Protocol, plan: CompilePlan, layout: Layout, stream: StreamLayout, round_: int, sub: int,
         last: bool) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Decode what the heads delivered into the inbox; after the round's last sub-layer, run the next
    local computation (or halt if nobody sent). Returns ``target - x`` (residual form)."""

    def mlp(x, positions):
        delta = np.zeros_like(x)
        for token in range(x.shape[0]):
            row = x[token]
            state = stream.decode(row)
            if not state.halted:
                state.sent = state.sent or row[stream.global_at] > 0
                for a in range(plan.alpha):
                    try:
                        received = layout.decode(row[stream.head_slice(a)])
                    except DecodeError as exc:
                        raise DecodeError(f"round {round_}, machine {state.machine}, head {a}: {exc}") from exc
                    for message in received:
                        if message.dst != state.machine:
                            raise DecodeError(f"round {round_}, machine {state.machine}, head {a}: received a "
                                              f"message addressed to machine {message.dst}")
                        state.inbox.append((message.src, sub * plan.alpha + a, message.words))
                if last:
                    if not state.sent:
                        state.halted = True
                    else:
                        state.sent = False
                        inbox = _inbox([(src, i, _as_protocol_words(protocol, w)) for src, i, w in state.inbox])
                        state.memory = _as_protocol_words(protocol, state.memory)
                        state = _local_step(protocol, plan, round_ + 1, state, inbox)
            try:
                target = stream.encode(state)
            except ValueError as exc:
                raise CompileError(f"round {round_}, machine {state.machine}: {exc}") from exc
            delta[token] = target - row
        return delta

    step = f", then round {round_ + 1}'s local step" if last else ""
    return _named(f"decode inbox of round {round_}{step}", mlp)


def build_readout(stream: StreamLayout) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """ψ: the memory region of every token; a token still holding messages means the round budget
    was too small for this input."""

    def readout(x, positions):
        pending = np.flatnonzero(x[:, stream.outbox_at] > 0)
        if pending.size:
            raise RoundBudgetExceeded(f"machine {int(pending[0])} still has messages to send after the last layer: "
                                      f"the protocol needs more rounds than the model's budget")
        return x[:, stream.memory_at:stream.outbox_at].copy()

    return _named("memory columns", readout)
