"""Vectorised plumbing for the batch styles of :mod:`reductions.decompile`: reading memories and
inboxes of a set of machines, building the next state and the round's messages, grouping records.

Every function keeps machines apart: a machine's new memory and messages are computed from its
own memory and inbox only (arrays carry the machine id of every row and every grouping key starts
with it), so running a batch step is running every machine's local computation at once.

Examples
--------
>>> out = RoundOutput(machines=3)
>>> out.keep(np.array([2, 0]), np.array([1, 2]), np.array([7.0, 1.0, 2.0]))
>>> out.send_records(np.array([0, 0, 2]), np.array([1, 1, 0]), np.array([[5.0], [6.0], [9.0]]))
>>> state, batch = out.build()
>>> [m.tolist() for m in state.to_list()], batch.src.tolist(), batch.dst.tolist(), batch.words.tolist()
([[1.0, 2.0], [], [7.0]], [0, 2], [1, 0], [5.0, 6.0, 9.0])
"""
from __future__ import annotations

import numba as nb
import numpy as np

from mpc_sim import ClusterState, Delivery, MessageBatch, ragged_offsets

__all__ = ["RoundOutput", "read_memories", "inbox_words", "received_rows", "group_keys", "lookup", "segmented_exclusive_sum"]


class RoundOutput:
    """Collects the new memories (disjoint machine sets) and messages of one round."""

    def __init__(self, machines: int):
        self.machines = machines
        self._memories: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._messages: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def keep(self, machines: np.ndarray, sizes: np.ndarray, words: np.ndarray) -> None:
        """Machines ``machines[i]`` keep the next ``sizes[i]`` words of ``words`` (in order)."""
        machines = np.asarray(machines, dtype=np.int64)
        sizes = np.asarray(sizes, dtype=np.int64)
        if machines.size:
            self._memories.append((machines, sizes, np.asarray(words, dtype=np.float64).reshape(-1)))

    def send(self, src: np.ndarray, dst: np.ndarray, lengths: np.ndarray, words: np.ndarray) -> None:
        """Messages ``src[j] -> dst[j]`` carrying the next ``lengths[j]`` words of ``words``."""
        src = np.asarray(src, dtype=np.int64)
        if src.size:
            self._messages.append((src, np.asarray(dst, dtype=np.int64), np.asarray(lengths, dtype=np.int64),
                                   np.asarray(words, dtype=np.float64).reshape(-1)))

    def send_records(self, src: np.ndarray, dst: np.ndarray, rows: np.ndarray) -> None:
        """One message per (source, destination) pair holding its rows, in the order given."""
        src = np.asarray(src, dtype=np.int64)
        if src.size == 0:
            return
        dst = np.asarray(dst, dtype=np.int64)
        rows = np.asarray(rows, dtype=np.float64).reshape(src.shape[0], -1)
        order = np.lexsort((dst, src))
        src, dst, rows = src[order], dst[order], rows[order]
        starts = np.flatnonzero(np.r_[True, (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])])
        counts = np.diff(np.r_[starts, src.shape[0]])
        self.send(src[starts], dst[starts], counts * rows.shape[1], rows)

    def build(self) -> tuple[ClusterState, MessageBatch]:
        sizes = np.zeros(self.machines, dtype=np.int64)
        for machines, part_sizes, _ in self._memories:
            sizes[machines] += part_sizes
        offsets = ragged_offsets(sizes)
        words = np.zeros(int(offsets[-1]), dtype=np.float64)
        for machines, part_sizes, part_words in self._memories:
            starts = np.repeat(offsets[machines] - np.r_[0, np.cumsum(part_sizes)[:-1]], part_sizes)
            words[starts + np.arange(part_words.shape[0])] = part_words
        state = ClusterState(words, offsets)
        if not self._messages:
            return state, MessageBatch.empty(np.float64)
        src = np.concatenate([m[0] for m in self._messages])
        dst = np.concatenate([m[1] for m in self._messages])
        lengths = np.concatenate([m[2] for m in self._messages])
        flat = np.concatenate([m[3] for m in self._messages])
        word_start = np.r_[0, np.cumsum(lengths)[:-1]]
        order = np.lexsort((dst, src))          # inboxes list senders in increasing order
        src, dst, lengths, word_start = src[order], dst[order], lengths[order], word_start[order]
        gather = np.repeat(word_start - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(int(lengths.sum()))
        return state, MessageBatch(src, dst, ragged_offsets(lengths), np.ascontiguousarray(flat[gather]))


def read_memories(state: ClusterState, machines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The memories of ``machines`` concatenated in that order, and their sizes."""
    machines = np.asarray(machines, dtype=np.int64)
    starts, sizes = state.offsets[machines], state.sizes()[machines]
    index = np.repeat(starts - np.r_[0, np.cumsum(sizes)[:-1]], sizes) + np.arange(int(sizes.sum()))
    return state.words[index], sizes


def inbox_words(delivery: Delivery, machines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inboxes of ``machines`` (every message's words, in delivery order) concatenated in
    that order, and their sizes."""
    machines = np.asarray(machines, dtype=np.int64)
    offsets = delivery.word_offsets()
    starts, sizes = offsets[machines], offsets[machines + 1] - offsets[machines]
    index = np.repeat(starts - np.r_[0, np.cumsum(sizes)[:-1]], sizes) + np.arange(int(sizes.sum()))
    return delivery.messages.words[index], sizes


def received_rows(delivery: Delivery, first: int, stop: int, width: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every message delivered to machines ``first .. stop - 1``, cut into rows of ``width`` words:
    ``(receiver, sender, row index within its message, rows)`` in delivery order."""
    lo, hi = delivery.machine_offsets[first], delivery.machine_offsets[stop]
    msgs = delivery.messages
    lengths = np.diff(msgs.offsets[lo:hi + 1])
    if np.any(lengths % width):
        raise ValueError(f"a message to machines {first}..{stop - 1} is not a whole number of {width}-word rows")
    counts = lengths // width
    words = msgs.words[msgs.offsets[lo]:msgs.offsets[hi]]
    message = np.repeat(np.arange(lo, hi), counts)
    row_in_message = np.arange(int(counts.sum())) - np.repeat(np.r_[0, np.cumsum(counts)[:-1]], counts)
    return msgs.dst[message], msgs.src[message], row_in_message, words.reshape(-1, width)


def group_keys(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort rows by the keys (first key most significant, stable) and cut them into groups of
    equal keys: ``(order, group starts in sorted order, group id of every sorted row)``.

    Examples
    --------
    >>> order, starts, group = group_keys(np.array([1, 0, 1]), np.array([5, 5, 5]))
    >>> order.tolist(), starts.tolist(), group.tolist()
    ([1, 0, 2], [0, 1], [0, 1, 1])
    """
    order = np.lexsort(tuple(reversed(keys)))
    n = order.shape[0]
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
        for key in keys:
            ordered = key[order]
            change[1:] |= ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(change)
    return order, starts, np.cumsum(change) - 1


def lookup(table_keys: tuple[np.ndarray, ...], query_keys: tuple[np.ndarray, ...]) -> np.ndarray:
    """For every query row, the index of the table row with equal keys (table keys are unique),
    or -1.

    Examples
    --------
    >>> lookup((np.array([3, 1]),), (np.array([1, 2, 3, 1]),)).tolist()
    [1, -1, 0, 1]
    """
    n_table = table_keys[0].shape[0]
    keys = [np.concatenate([t, q]) for t, q in zip(table_keys, query_keys)]
    is_query = np.r_[np.zeros(n_table, dtype=np.int64), np.ones(query_keys[0].shape[0], dtype=np.int64)]
    order = np.lexsort((is_query, *reversed(keys)))     # a table row sorts first among equal keys
    change = np.zeros(order.shape[0], dtype=bool)
    if order.size:
        change[0] = True
        for key in keys:
            ordered = key[order]
            change[1:] |= ordered[1:] != ordered[:-1]
    key_group = np.cumsum(change) - 1
    found = np.full(int(key_group[-1]) + 1 if key_group.size else 0, -1, dtype=np.int64)
    table_rows = order < n_table
    found[key_group[table_rows]] = order[table_rows]
    result = np.empty(query_keys[0].shape[0], dtype=np.int64)
    result[order[~table_rows] - n_table] = found[key_group[~table_rows]]
    return result


@nb.njit(cache=True)
def _exclusive_kernel(values, starts, out):  # pragma: no cover - compiled
    n_groups = starts.shape[0] - 1
    for g in range(n_groups):
        running = np.zeros(values.shape[1])
        for i in range(starts[g], starts[g + 1]):
            out[i] = running
            running += values[i]


def segmented_exclusive_sum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Within each group of consecutive rows (``starts``: the first row of every group), every
    row gets the sum of the rows before it, added in order (no cancellation across groups).

    Examples
    --------
    >>> segmented_exclusive_sum(np.array([[1.0], [2.0], [4.0], [8.0]]), np.array([0, 2])).ravel().tolist()
    [0.0, 1.0, 0.0, 4.0]
    """
    values = np.ascontiguousarray(values, dtype=np.float64)
    out = np.empty_like(values)
    _exclusive_kernel(values, np.r_[starts, values.shape[0]].astype(np.int64), out)
    return out
