"""Record blocks for the graph protocols: message packing, relayouts and a bitonic block sort.

Shared by :mod:`~mpc_sim.protocols.khop`, :mod:`~mpc_sim.protocols.match2` and
:mod:`~mpc_sim.protocols.connectivity` (which now sort with the constant-round sample sorts of
:mod:`._splitters`; the bitonic block sort below, ``O(log^2 P)`` rounds, is kept for protocols
that want a deterministic sort). The communication helpers come in two flavours with the
same result: ``*_local`` works on one machine's data (per-machine style), ``*_batch`` on the whole
cluster at once (batch style). A record is a row of a 2-D int64 array (``width`` words). Memories
with a fixed-size header are built and split by :func:`join_headers` / :func:`split_headers`.
Public through :mod:`mpc_sim.protocols.toolkit`.

Message order is part of the contract (inboxes list messages in the order they were sent, and a
protocol may decode an inbox by position): a machine sends one message per destination, in
increasing destination order, holding its records for that destination in the order it produced
them. :func:`pack_local` and :func:`pack_batch` both implement exactly that.

Block sort. ``P`` machines each hold a block of exactly ``B`` records (padded with records that
sort last). Every block is first sorted locally; then the all-ascending bitonic sorting network
on ``2**ceil(log2 P)`` blocks runs with each comparator replaced by a *merge-split*: the two
machines exchange blocks and the lower id keeps the ``B`` smallest records of the union, the
higher id the ``B`` largest. A comparator network that sorts numbers sorts equal-size sorted
blocks this way (0-1 principle). Comparators touching a block ``>= P`` are skipped: such
(virtual) blocks would hold only records larger than everything, and in an all-ascending network
they never move. One stage is one round (both partners send their whole block, ``B * width``
words), so a sort costs ``t (t + 1) / 2`` rounds with ``t = ceil(log2 P)`` and needs
``2 * B * width`` words of memory per machine.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..state import ClusterState, Delivery, Inbox, MessageBatch, ragged_offsets

__all__ = [
    "INT_MAX",
    "Keys",
    "batch_merge_split",
    "bitonic_stages",
    "build_state",
    "delivery_records",
    "first_of_runs",
    "inbox_records",
    "join_headers",
    "split_headers",
    "local_sort",
    "batch_local_sort",
    "merge_split",
    "pack_batch",
    "pack_local",
    "relayout_batch",
    "relayout_local",
    "spanned",
    "sort_round_batch",
    "sort_round_local",
    "stage_partner",
    "with_heartbeat",
    "HEARTBEAT",
]

INT_MAX = int(np.iinfo(np.int64).max)

HEARTBEAT = 0
"""Payload of a heartbeat: a one-word message machine 0 sends itself in a round where it might
otherwise be silent. The simulator ends a run at the first round without messages, so a protocol
whose traffic in some scheduled round depends on the data (possibly none at all) keeps its
schedule alive this way; receivers drop one-word messages in those rounds."""

Keys = Callable[[np.ndarray], Sequence[np.ndarray]]
"""Sort keys of records ``(m, width) -> [most significant column, ..., least significant]``."""


def spanned(length: int, per_owner: int) -> int:
    """How many owners of ``per_owner`` consecutive items a run of ``length`` consecutive items can
    touch: ``ceil((length - 1) / per_owner) + 1`` (the fan-out of a relayout).

    Examples
    --------
    >>> spanned(10, 4), spanned(1, 4), spanned(8, 4)
    (4, 1, 3)
    """
    return -(-(max(length, 1) - 1) // per_owner) + 1


# --- messages ---------------------------------------------------------------------------------
def pack_local(dst: np.ndarray, payload: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """One machine's messages: one per destination (increasing), records in production order.

    Examples
    --------
    >>> [(d, p.tolist()) for d, p in pack_local(np.array([2, 0, 2]), np.array([[1, 1], [2, 2], [3, 3]]))]
    [(0, [2, 2]), (2, [1, 1, 3, 3])]
    """
    dst = np.asarray(dst, dtype=np.int64)
    if dst.shape[0] == 0:
        return []
    payload = np.asarray(payload, dtype=np.int64).reshape(dst.shape[0], -1)
    order = np.argsort(dst, kind="stable")
    dst, payload = dst[order], payload[order]
    starts = np.flatnonzero(np.r_[True, dst[1:] != dst[:-1]])
    ends = np.r_[starts[1:], dst.shape[0]]
    return [(int(dst[a]), payload[a:b].ravel()) for a, b in zip(starts, ends)]


def pack_batch(src: np.ndarray, dst: np.ndarray, payload: np.ndarray) -> MessageBatch:
    """The cluster's messages, grouped exactly as every machine's :func:`pack_local` would.

    ``src``, ``dst`` and the rows of ``payload`` describe records; records of one source must be
    listed in that machine's production order.

    Examples
    --------
    >>> b = pack_batch(np.array([1, 0, 1]), np.array([0, 1, 0]), np.array([[5], [6], [7]]))
    >>> b.src.tolist(), b.dst.tolist(), b.words.tolist()
    ([0, 1], [1, 0], [6, 5, 7])
    """
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    m = src.shape[0]
    if m == 0:
        return MessageBatch.empty(np.int64)
    payload = np.asarray(payload, dtype=np.int64).reshape(m, -1)
    width = payload.shape[1]
    order = np.lexsort((dst, src))  # stable: production order kept inside a (src, dst) group
    src, dst, payload = src[order], dst[order], payload[order]
    starts = np.flatnonzero(np.r_[True, (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])])
    counts = np.diff(np.r_[starts, m]) * width
    return MessageBatch(src[starts], dst[starts], ragged_offsets(counts), np.ascontiguousarray(payload.ravel()))


def with_heartbeat(batch: MessageBatch) -> MessageBatch:
    """``batch`` plus, if machine 0 sends nothing in it, a one-word heartbeat from machine 0 to
    itself (see :data:`HEARTBEAT`)."""
    if batch.num_messages and batch.src[0] == 0:  # pack_batch orders messages by sender
        return batch
    one = np.zeros(1, dtype=np.int64)
    return MessageBatch(np.r_[one, batch.src], np.r_[one, batch.dst], np.r_[one, batch.offsets + 1],
                        np.r_[np.int64(HEARTBEAT), batch.words])


def inbox_records(inbox: Inbox, width: int, skip_single: bool = False) -> np.ndarray:
    """An inbox's payloads as records ``(m, width)``, in delivery order.

    With ``skip_single`` one-word messages (heartbeats) are dropped first.
    """
    if skip_single:
        parts = [payload for _, payload in inbox if payload.shape[0] != 1]
        words = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    else:
        words = inbox.words
    return words.reshape(-1, width)


def delivery_records(delivery: Delivery, width: int,
                     skip_single: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every delivered record: ``(receiving machine, sending machine, records (m, width))``, in
    delivery order (by receiver, then as each inbox lists them)."""
    msgs = delivery.messages
    lengths = msgs.lengths()
    word_msg = np.repeat(np.arange(msgs.num_messages), lengths)
    words = msgs.words
    if skip_single:
        keep = (lengths != 1)[word_msg]
        word_msg, words = word_msg[keep], words[keep]
    rec_msg = word_msg[::width]
    return msgs.dst[rec_msg], msgs.src[rec_msg], words.reshape(-1, width)


# --- layouts ----------------------------------------------------------------------------------
def relayout_local(machine: int, words: np.ndarray, per_source: int, dst_of_index: Callable[[np.ndarray], np.ndarray]
                   ) -> list[tuple[int, np.ndarray]]:
    """Messages moving a machine's slice of a global array (``per_source`` items per machine,
    in order) to new owners ``dst_of_index(global index)``. Receivers rebuild their slice by
    concatenating their inbox, since senders are in increasing order: no indices are sent."""
    index = machine * per_source + np.arange(words.shape[0], dtype=np.int64)
    return pack_local(dst_of_index(index), words[:, None])


def relayout_batch(words: np.ndarray, per_source: int, dst_of_index: Callable[[np.ndarray], np.ndarray],
                   first_source: int = 0) -> MessageBatch:
    """:func:`relayout_local` for a whole global array held ``per_source`` items per machine
    from machine ``first_source`` on."""
    index = np.arange(words.shape[0], dtype=np.int64)
    return pack_batch(first_source + index // per_source, dst_of_index(index), words[:, None])


def build_state(machines: int, parts: Sequence[tuple[int, np.ndarray, np.ndarray]]) -> ClusterState:
    """A cluster state from role parts ``(first machine, words per machine, flat words)``, the
    parts covering disjoint machine ranges listed in increasing order; other machines are empty."""
    sizes = np.zeros(machines, dtype=np.int64)
    words = []
    for first, part_sizes, part_words in parts:
        part_sizes = np.asarray(part_sizes, dtype=np.int64)
        sizes[first:first + part_sizes.shape[0]] = part_sizes
        words.append(np.asarray(part_words, dtype=np.int64).ravel())
    flat = np.concatenate(words) if words else np.zeros(0, dtype=np.int64)
    return ClusterState(np.ascontiguousarray(flat), ragged_offsets(sizes))


def _exclusive_cumsum(sizes: np.ndarray) -> np.ndarray:
    return np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64)


def join_headers(headers: np.ndarray, body: np.ndarray, body_sizes: np.ndarray) -> np.ndarray:
    """Memories ``[header | body slice]`` of consecutive machines, concatenated: machine ``m``
    gets ``headers[m]`` (``h`` words) then the next ``body_sizes[m]`` words of ``body``.

    Examples
    --------
    >>> join_headers(np.array([[7], [8]]), np.array([1, 2, 3]), np.array([2, 1])).tolist()
    [7, 1, 2, 8, 3]
    """
    h = headers.shape[1]
    starts = _exclusive_cumsum(body_sizes + h)
    out = np.empty(int(body_sizes.sum()) + headers.size, dtype=np.int64)
    out[starts[:, None] + np.arange(h)[None, :]] = headers
    owner = np.repeat(np.arange(body_sizes.shape[0]), body_sizes)
    out[starts[owner] + h + np.arange(body.shape[0]) - _exclusive_cumsum(body_sizes)[owner]] = body
    return out


def split_headers(words: np.ndarray, body_sizes: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`join_headers`: ``(headers (P, h), body)``."""
    at = _exclusive_cumsum(body_sizes + h)[:, None] + np.arange(h)[None, :]
    body = np.ones(words.shape[0], dtype=bool)
    body[at.ravel()] = False
    return words[at], words[body]


def first_of_runs(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mask of the valid entries starting a run of equal values (along the last axis)."""
    start = np.ones(values.shape, dtype=bool)
    start[..., 1:] = values[..., 1:] != values[..., :-1]
    return start & valid


# --- bitonic block sort -----------------------------------------------------------------------
def bitonic_stages(machines: int) -> tuple[tuple[int, int], ...]:
    """Stages ``(i, j)`` of the all-ascending bitonic network on ``2**ceil(log2 machines)`` blocks.

    Examples
    --------
    >>> bitonic_stages(1), bitonic_stages(3)
    ((), ((0, 0), (1, 1), (1, 0)))
    """
    t = (int(machines) - 1).bit_length()
    return tuple((i, j) for i in range(t) for j in range(i, -1, -1))


def stage_partner(machine: int | np.ndarray, stage: tuple[int, int]) -> int | np.ndarray:
    """The block ``machine`` merge-splits with at ``stage`` (may be a virtual block ``>= P``)."""
    i, j = stage
    return machine ^ ((2 << i) - 1) if j == i else machine ^ (1 << j)


def _order(records: np.ndarray, keys: Keys, rows: np.ndarray | None = None) -> np.ndarray:
    columns = list(keys(records))[::-1]
    if rows is not None:
        columns.append(rows)
    return np.lexsort(columns)


def local_sort(block: np.ndarray, keys: Keys) -> np.ndarray:
    """One block sorted by ``keys`` (stable)."""
    return block[_order(block, keys)]


def batch_local_sort(blocks: np.ndarray, keys: Keys) -> np.ndarray:
    """Every block of ``blocks (P, B, width)`` sorted by ``keys`` (stable), as :func:`local_sort`."""
    p, b, w = blocks.shape
    flat = blocks.reshape(p * b, w)
    return flat[_order(flat, keys, np.repeat(np.arange(p), b))].reshape(p, b, w)


def merge_split(own: np.ndarray, received: np.ndarray, machine: int, partner: int, keys: Keys) -> np.ndarray:
    """One machine's side of a merge-split: the lower id keeps the smallest half of the union."""
    low, high = (own, received) if machine < partner else (received, own)
    merged = local_sort(np.concatenate([low, high]), keys)
    return merged[:own.shape[0]] if machine < partner else merged[own.shape[0]:]


def batch_merge_split(blocks: np.ndarray, stage: tuple[int, int], keys: Keys) -> np.ndarray:
    """Every merge-split of ``stage`` at once on ``blocks (P, B, width)``, as :func:`merge_split`."""
    p, b, w = blocks.shape
    ids = np.arange(p)
    partners = stage_partner(ids, stage)
    lows = ids[(partners < p) & (ids < partners)]
    if lows.size == 0:
        return blocks
    highs = partners[lows]
    merged = np.concatenate([blocks[lows], blocks[highs]], axis=1).reshape(lows.size * 2 * b, w)
    merged = merged[_order(merged, keys, np.repeat(np.arange(lows.size), 2 * b))].reshape(lows.size, 2 * b, w)
    out = blocks.copy()
    out[lows] = merged[:, :b]
    out[highs] = merged[:, b:]
    return out


def sort_round_local(block: np.ndarray, received: np.ndarray | None, q: int, machine: int, machines: int,
                     stages: Sequence[tuple[int, int]], keys: Keys) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Round ``q`` of a block sort on one machine (``machine`` counted within the sorting group).

    ``q = 0``: sort the fresh block locally; ``q >= 1``: merge-split with the block ``received``
    from the partner of stage ``q``. Then, unless ``q`` is the last stage, send the block to the
    partner of stage ``q + 1``. Returns the block and the messages (partner ids are group-local).
    """
    if q == 0:
        block = local_sort(block, keys)
    else:
        partner = stage_partner(machine, stages[q - 1])
        if partner < machines:
            block = merge_split(block, received.reshape(block.shape), machine, partner, keys)
    messages = []
    if q < len(stages):
        partner = stage_partner(machine, stages[q])
        if partner < machines:
            messages.append((int(partner), block.ravel()))
    return block, messages


def sort_round_batch(blocks: np.ndarray, q: int, stages: Sequence[tuple[int, int]], keys: Keys,
                     first_machine: int = 0) -> tuple[np.ndarray, MessageBatch]:
    """:func:`sort_round_local` on every block of ``blocks (P, B, width)`` at once; the group's
    machines are ``first_machine .. first_machine + P - 1``."""
    if q == 0:
        blocks = batch_local_sort(blocks, keys)
    else:
        blocks = batch_merge_split(blocks, stages[q - 1], keys)
    if q == len(stages):
        return blocks, MessageBatch.empty(np.int64)
    p = blocks.shape[0]
    ids = np.arange(p)
    partners = stage_partner(ids, stages[q])
    senders = ids[partners < p]
    words_each = blocks.shape[1] * blocks.shape[2]
    batch = MessageBatch(first_machine + senders, first_machine + partners[senders],
                         np.arange(senders.size + 1, dtype=np.int64) * words_each,
                         np.ascontiguousarray(blocks[senders].ravel()))
    return blocks, batch
