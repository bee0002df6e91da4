"""Pass 5 of the compiler: the lean engine, which runs a compiled model vectorised over tokens.

The compiled transformer (:mod:`.layers`) is the model; ``Transformer.run`` executes it on a
dense residual stream of ``tokens x d`` float64 numbers, ``d`` about ``alpha * s * 100``. Nearly
all of it is zero: a token's state (memory, outbox, inbox) is a few ragged arrays, and a routing
head's value vector holds one message's few items. The lean engine runs the *same* model on that
compact form and returns the same output and the same memories (tests compare both engines
layer by layer):

- the stream of all tokens is a :class:`~mpc_sim.ClusterState` (memories), the outbox a
  :class:`~mpc_sim.MessageBatch` (message ``a`` of a machine is carried by routing head ``a``), and
  the inbox a :class:`~mpc_sim.Delivery`; their dense rows are :meth:`StreamLayout.encode` of them;
- a layer's routing heads run together: the value vectors of all messages are laid out at once
  (:func:`.sparse.encode_items`), attention adds every sender's items into the cells of the
  receivers its key collides with (:class:`IdCollisions`: equality for exact-match heads, the
  collision counts ``c_ij`` of the model's hash tables for ``anna`` heads, computed once for all
  ids since every head hashes ids with the same tables), divides by the receiver's total weight,
  and every receiver's average is decoded at once (:func:`.sparse.decode_groups`), with the
  same checks as the dense decoder (a foreign or mangled packet is an error, never an output);
- the global head's output is the mean of the "has messages" flags (its queries and keys are
  constant: every pair collides), so it is positive iff anybody sends;
- local computation runs the protocol's batch step on the whole cluster when it has one (the
  per-machine step otherwise, or with ``local="machine"``); protocols' tests check both styles
  agree, so the token-wise map is the per-machine step applied to every token;
- layers after the protocol halted are the identity (nobody sends, every token is halted), so
  they cost nothing.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mpc_sim import ClusterState, Delivery, MessageBatch, Protocol, RoundContext
from mpc_sim.backends.base import check_state, machine_by_machine, step_result

from .errors import CompileError, RoundBudgetExceeded
from .layouts import DecodeError
from .sparse import decode_groups, encode_items, group_sums, layout_cells

__all__ = ["IdCollisions", "LayerMemories", "RunStats", "run_lean", "LOCAL_MODES"]

LOCAL_MODES = ("auto", "batch", "machine")


@dataclass(frozen=True, eq=False)
class IdCollisions:
    """Which queries a key collides with, and how often: ``c(i, x)`` for query id ``i`` in
    ``[0, machines)`` and key id ``x`` in ``[-machines, machines)`` (negative ids are the keys of
    tokens without a message in a head).

    CSR by key id: key ``x`` reaches queries ``receiver[start[x + machines]:start[x + machines + 1]]``
    with weights ``weight[...]`` (``c_ij``: tables in which the codes agree; 1 for exact match).
    ``far`` counts the pairs of distinct ids that collide (0: the heads act exactly as EMA).
    """

    machines: int
    start: np.ndarray
    receiver: np.ndarray
    weight: np.ndarray
    far: int

    @classmethod
    def exact(cls, machines: int) -> IdCollisions:
        """Exact match: key ``x >= 0`` reaches query ``x`` once; negative keys reach nobody."""
        counts = np.concatenate([np.zeros(machines, dtype=np.int64), np.ones(machines, dtype=np.int64)])
        start = np.zeros(2 * machines + 1, dtype=np.int64)
        np.cumsum(counts, out=start[1:])
        return cls(machines, start, np.arange(machines, dtype=np.int64), np.ones(machines, dtype=np.int64), 0)

    @classmethod
    def from_lsh(cls, machines: int, ids, lsh, seed: int) -> IdCollisions:
        """Collision counts of the id vectors under ``lsh`` (the tables every ``anna`` head of the
        model uses: same family, ``z``, ``ell`` and seed)."""
        vectors = ids(np.arange(-machines, machines))
        params = lsh.family.sample(vectors.shape[1], lsh.z, lsh.ell, seed)
        codes = np.asarray(lsh.family.hash(vectors, params))            # (2N, ell): key ids -N..N-1
        key_parts, query_parts = [], []
        for table in range(codes.shape[1]):
            column = codes[:, table]
            query_codes = column[machines:]                               # queries are the ids 0..N-1
            order = np.argsort(query_codes, kind="stable")
            sorted_codes = query_codes[order]
            lo = np.searchsorted(sorted_codes, column, side="left")
            hi = np.searchsorted(sorted_codes, column, side="right")
            sizes = hi - lo
            keys = np.repeat(np.arange(2 * machines, dtype=np.int64), sizes)
            within = np.arange(keys.shape[0]) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            key_parts.append(keys)
            query_parts.append(order[np.repeat(lo, sizes) + within])
        keys = np.concatenate(key_parts)
        queries = np.concatenate(query_parts).astype(np.int64)
        pair = keys * machines + queries
        unique, weight = np.unique(pair, return_counts=True)
        keys, receiver = unique // machines, unique % machines
        start = np.zeros(2 * machines + 1, dtype=np.int64)
        np.cumsum(np.bincount(keys, minlength=2 * machines), out=start[1:])
        far = int(np.count_nonzero(keys - machines != receiver))
        return cls(machines, start, receiver.astype(np.int64), weight.astype(np.int64), far)

    def pairs(self, key_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(key index, receiver, weight)`` of every collision of the given keys."""
        rows = key_ids + self.machines
        lo, hi = self.start[rows], self.start[rows + 1]
        sizes = hi - lo
        index = np.repeat(np.arange(key_ids.shape[0], dtype=np.int64), sizes)
        at = np.repeat(lo, sizes) + (np.arange(index.shape[0]) - np.repeat(np.cumsum(sizes) - sizes, sizes))
        return index, self.receiver[at], self.weight[at]


class LayerMemories(Sequence):
    """The memories of every machine after every layer (``[0]``: after the embedding), as the
    dense engine's ``CompiledRun.memories``; stored once per local computation."""

    def __init__(self, snapshots: list[ClusterState], layers_per_round: int, depth: int):
        self._snapshots, self._per_round, self._depth = snapshots, layers_per_round, depth

    def __len__(self) -> int:
        return self._depth + 1

    def __getitem__(self, layer):
        if isinstance(layer, slice):
            return tuple(self[i] for i in range(*layer.indices(len(self))))
        if layer < 0:
            layer += len(self)
        if not 0 <= layer < len(self):
            raise IndexError(f"layer {layer} out of range 0..{self._depth}")
        snapshot = self._snapshots[min(layer // self._per_round, len(self._snapshots) - 1)]
        return tuple(snapshot.to_list())


@dataclass
class _Outbox:
    batch: MessageBatch
    rank: np.ndarray        # the message's index in its source's outbox: the routing head carrying it


def _local(protocol: Protocol, model, round_: int, state: ClusterState, delivery: Delivery,
           local: str) -> tuple[ClusterState, _Outbox]:
    plan = model.plan
    config = plan.config
    ctx = RoundContext(round_, config, plan.seed)
    if local == "batch":
        state, batch = step_result(protocol.batch_step(ctx, state, delivery), protocol, round=round_)
    else:
        state, batch = machine_by_machine(protocol, ctx, state, delivery)
    check_state(state, config.machines, protocol, round=round_)
    s = config.s
    sizes = state.sizes()
    if sizes.size and sizes.max() > s:
        machine = int(np.argmax(sizes))
        raise CompileError(f"round {round_}, machine {machine}: memory of {int(sizes[machine])} words does not fit "
                           f"in s = {s}")
    src = np.asarray(batch.src, dtype=np.int64)
    dst = np.asarray(batch.dst, dtype=np.int64)
    if src.size and (src.min() < 0 or src.max() >= config.machines or dst.min() < 0 or dst.max() >= config.machines):
        bad = int(np.flatnonzero((src < 0) | (src >= config.machines) | (dst < 0) | (dst >= config.machines))[0])
        raise CompileError(f"round {round_}: message {bad} from machine {int(src[bad])} to machine {int(dst[bad])}: "
                           f"no such machine (the cluster has {config.machines})")
    order = np.argsort(src, kind="stable")
    lengths = np.diff(batch.offsets)[order]
    offsets = np.zeros(order.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if order.shape[0] and not np.array_equal(order, np.arange(order.shape[0])):
        starts = batch.offsets[order]
        take = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        words = batch.words[take]
    else:
        words = batch.words
    src, dst = src[order], dst[order]
    first = np.searchsorted(src, src, side="left")
    rank = np.arange(src.shape[0], dtype=np.int64) - first
    if rank.size and rank.max() >= plan.fanout:
        machine = int(src[int(np.argmax(rank))])
        raise CompileError(f"round {round_}, machine {machine}: {int(np.count_nonzero(src == machine))} messages, more "
                           f"than the fan-out bound {plan.fanout} the model was compiled for")
    sent = np.bincount(src, weights=lengths, minlength=config.machines) if src.size else np.zeros(1)
    if sent.max() > s:
        machine = int(np.argmax(sent))
        raise CompileError(f"round {round_}, machine {machine}: outbox of {int(sent[machine])} words does not fit "
                           f"in s = {s}")
    return state, _Outbox(MessageBatch(src, dst, offsets, np.ascontiguousarray(words)), rank)


@dataclass
class RunStats:
    """What a lean run measured: layers executed (the rest were idle), messages and items routed,
    and the widest value actually used: ``max_sender_cells`` / ``max_receiver_cells`` are the most
    non-zero cells (of ``item_width`` numbers each) in one sender's value vector / one receiver's
    attended average, against the head's full ``layout_cells``."""

    layers_run: int = 0
    messages: int = 0
    items: int = 0
    max_sender_cells: int = 0
    max_receiver_cells: int = 0
    layout_cells: int = 0
    item_width: int = 0

    @property
    def max_value_width_used(self) -> int:
        """Non-zero coordinates of the widest value vector a head carried in this run (at most)."""
        return max(self.max_sender_cells, self.max_receiver_cells) * self.item_width


def _route(model, collisions: IdCollisions, outbox: _Outbox, sub: int, round_: int,
           stats: RunStats | None = None) -> tuple[np.ndarray, ...]:
    """The routing heads of sub-layer ``sub``: messages with ranks ``sub * alpha ..`` are averaged
    into their receivers' rows and decoded. Returns ``(receiver, src, index, lengths, words)``."""
    plan, layout = model.plan, model.layout
    machines, alpha = plan.config.machines, plan.alpha
    batch = outbox.batch
    chosen = np.flatnonzero((outbox.rank >= sub * alpha) & (outbox.rank < (sub + 1) * alpha))
    empty = np.zeros(0, dtype=np.int64)
    if chosen.size == 0:
        return empty, empty, empty, empty, empty
    head = outbox.rank[chosen] - sub * alpha
    src, dst = batch.src[chosen], batch.dst[chosen]
    lengths = np.diff(batch.offsets)[chosen]
    offsets = np.zeros(chosen.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    take = np.repeat(batch.offsets[chosen] - offsets[:-1], lengths) + np.arange(offsets[-1])
    bits = np.ascontiguousarray(batch.words[take]).view(np.int64)
    try:
        items = encode_items(layout, src, dst, offsets, bits)
    except ValueError as exc:
        raise CompileError(f"round {round_}: {exc}") from exc
    # attention: each message's key (its destination id) collides with some receivers' queries
    message, receiver, weight = collisions.pairs(dst)
    group_key = head[message] * machines + receiver
    n_items = np.bincount(items.message, minlength=chosen.shape[0])
    first_item = np.zeros(chosen.shape[0] + 1, dtype=np.int64)
    np.cumsum(n_items, out=first_item[1:])
    per_pair = n_items[message]
    pair_of_item = np.repeat(np.arange(message.shape[0]), per_pair)
    item_of_pair = np.repeat(first_item[message], per_pair) + (
        np.arange(pair_of_item.shape[0]) - np.repeat(np.cumsum(per_pair) - per_pair, per_pair))
    n_cells, _ = layout_cells(layout)
    groups, inverse = np.unique(group_key, return_inverse=True)
    cell_group, cell, sums = group_sums(inverse[pair_of_item], item_of_pair, weight[pair_of_item], items, n_cells)
    total = np.bincount(inverse, weights=weight, minlength=groups.shape[0])
    total += _sentinel_weight(collisions, groups, head, src, machines)
    average = sums / total[cell_group][:, None]

    def describe(g: int) -> str:
        key = int(groups[g])
        return f"round {round_}, machine {key % machines}, head {key // machines}"

    if stats is not None:
        stats.messages += int(chosen.shape[0])
        stats.items += int(items.message.shape[0])
        per_sender = np.bincount(items.message, minlength=chosen.shape[0]) * items.cells.shape[1]
        stats.max_sender_cells = max(stats.max_sender_cells, int(per_sender.max()))
        stats.max_receiver_cells = max(stats.max_receiver_cells, int(np.bincount(cell_group).max()))
    decoded = decode_groups(layout, cell_group, cell, average, groups.shape[0], describe)
    got_receiver = groups[decoded.group] % machines
    wrong = np.flatnonzero(decoded.dst != got_receiver)
    if wrong.size:
        j = int(wrong[0])
        raise DecodeError(f"{describe(int(decoded.group[j]))}: received a message addressed to machine "
                          f"{int(decoded.dst[j])}")
    index = groups[decoded.group] // machines + sub * alpha
    return got_receiver, decoded.src, index, np.diff(decoded.offsets), decoded.words


def _sentinel_weight(collisions: IdCollisions, groups: np.ndarray, head: np.ndarray, src: np.ndarray,
                     machines: int) -> np.ndarray:
    """Weight the keys of tokens *without* a message in a head add to its receivers (``anna``
    heads: their negative ids may collide with a query; their values are zero)."""
    lo, hi = collisions.start[0], collisions.start[machines]
    if hi == lo:
        return np.zeros(groups.shape[0])
    index, receiver, weight = collisions.pairs(-1 - np.arange(machines, dtype=np.int64))   # token j's sentinel
    extra = np.zeros(groups.shape[0])
    heads = groups // machines
    receivers = groups % machines
    senders = set(zip(head.tolist(), src.tolist()))
    for g in range(groups.shape[0]):
        hit = receiver == receivers[g]
        extra[g] = sum(float(w) for j, w in zip(index[hit].tolist(), weight[hit].tolist())
                       if (int(heads[g]), j) not in senders)
    return extra


def _delivery(parts: list[tuple[np.ndarray, ...]], machines: int, s: int, dtype: np.dtype, round_: int) -> Delivery:
    """The inbox of every machine: by source, then by the message's index in the source's outbox."""
    parts = [p for p in parts if p[0].size]
    if not parts:
        return Delivery.empty(machines, dtype)
    receiver, src, index, lengths = (np.concatenate([p[k] for p in parts]) for k in range(4))
    words = np.concatenate([p[4] for p in parts])
    offsets = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    order = np.lexsort((index, src, receiver))
    new_lengths = lengths[order]
    new_offsets = np.zeros(order.shape[0] + 1, dtype=np.int64)
    np.cumsum(new_lengths, out=new_offsets[1:])
    take = np.repeat(offsets[order] - new_offsets[:-1], new_lengths) + np.arange(new_offsets[-1])
    receiver = receiver[order]
    counts = np.bincount(receiver, minlength=machines)
    if counts.max() > s:
        machine = int(np.argmax(counts))
        raise CompileError(f"round {round_}, machine {machine}: machine {machine} received {int(counts[machine])} "
                           f"messages, more than s = {s}")
    received = np.bincount(receiver, weights=new_lengths, minlength=machines)
    if received.max() > s:
        machine = int(np.argmax(received))
        raise CompileError(f"round {round_}, machine {machine}: inbox of {int(received[machine])} words does not fit "
                           f"in s = {s}")
    batch = MessageBatch(src[order], receiver, new_offsets, np.ascontiguousarray(words[take]).view(dtype))
    machine_offsets = np.searchsorted(receiver, np.arange(machines + 1)).astype(np.int64)
    return Delivery(batch, machine_offsets)


def _copy(state: ClusterState) -> ClusterState:
    """A snapshot: a protocol may overwrite its memory in place in the next round."""
    return ClusterState(state.words.copy(), state.offsets.copy())


def run_lean(model, data: object, *, record: bool = False, local: str = "auto",
             collisions: IdCollisions | None = None) -> tuple[np.ndarray, LayerMemories | None, RunStats]:
    """Run ``model`` (a :class:`~reductions.compile.CompiledModel`) on ``data``: the protocol's
    output, with ``record`` the memories after every layer (else None), and the run's stats."""
    protocol, plan = model.protocol, model.plan
    config = plan.config
    if local not in LOCAL_MODES:
        raise ValueError(f"local must be one of {LOCAL_MODES}, got {local!r}")
    if local == "auto":
        local = "batch" if protocol.has_batch_step() else "machine"
    if local == "batch" and not protocol.has_batch_step():
        raise CompileError(f"{protocol.name} has no batch step (local='batch')")
    collisions = collisions if collisions is not None else IdCollisions.exact(config.machines)
    words = protocol.validate_input(config, data)
    if isinstance(data, np.ndarray) and np.may_share_memory(words, data):
        words = words.copy()
    state = protocol.initial_state(config, words)
    sizes = state.sizes()
    if sizes.size and sizes.max() > config.s:
        raise CompileError(f"machine {int(np.argmax(sizes))} starts with {int(sizes.max())} words, more than s = {config.s}")
    dtype = np.dtype(protocol.word_dtype)
    state, outbox = _local(protocol, model, 1, state, Delivery.empty(config.machines, dtype), local)
    snapshots = [_copy(state)] if record else None
    stats = RunStats(layout_cells=layout_cells(model.layout)[0], item_width=layout_cells(model.layout)[1])
    parts: list[tuple[np.ndarray, ...]] = []
    sent, halted = False, False
    for layer in range(plan.depth):
        if halted:
            break           # every later layer is the identity: nobody sends, every token halted
        round_, sub = plan.round_of_layer(layer)
        sent = sent or outbox.batch.num_messages > 0            # the global head
        stats.layers_run += 1
        parts.append(_route(model, collisions, outbox, sub, round_, stats))
        if sub == plan.layers_per_round - 1:
            if not sent:
                halted = True
                continue
            sent = False
            delivery = _delivery(parts, config.machines, config.s, dtype, round_)
            parts = []
            state, outbox = _local(protocol, model, round_ + 1, state, delivery, local)
            if record:
                snapshots.append(_copy(state))
    if outbox.batch.num_messages:
        raise RoundBudgetExceeded(f"machine {int(outbox.batch.src[0])} still has messages to send after the last layer: "
                                  f"the protocol needs more rounds than the model's budget")
    output = protocol.output(config, state)
    memories = LayerMemories(snapshots, plan.layers_per_round, plan.depth) if record else None
    return output, memories, stats
