"""Delivery of a round's messages: a stable numba counting sort by destination."""
from __future__ import annotations

import numba as nb
import numpy as np

from .state import Delivery, MessageBatch

__all__ = ["route"]


@nb.njit(parallel=True, cache=True)
def _route_kernel(src, dst, offsets, words, chunks,
                  out_src, out_dst, out_offsets, out_words, machine_offsets):  # pragma: no cover - compiled
    # The batch is cut into `chunks` consecutive pieces, each counted and scattered by its own thread.
    # A piece's slots for machine d follow those of the earlier pieces, so the result is the stable
    # sort whatever `chunks` is.
    m = dst.shape[0]
    machines = machine_offsets.shape[0] - 1
    bounds = (np.arange(chunks + 1) * m) // chunks
    next_message = np.zeros((chunks, machines), dtype=np.int64)
    next_word = np.zeros((chunks, machines), dtype=np.int64)
    for c in nb.prange(chunks):
        for j in range(bounds[c], bounds[c + 1]):
            d = dst[j]
            next_message[c, d] += 1
            next_word[c, d] += offsets[j + 1] - offsets[j]
    messages_before = 0
    words_before = 0
    for d in range(machines):
        machine_offsets[d] = messages_before
        for c in range(chunks):
            count = next_message[c, d]
            next_message[c, d] = messages_before
            messages_before += count
            count = next_word[c, d]
            next_word[c, d] = words_before
            words_before += count
    machine_offsets[machines] = messages_before
    for c in nb.prange(chunks):
        for j in range(bounds[c], bounds[c + 1]):
            d = dst[j]
            slot = next_message[c, d]
            next_message[c, d] = slot + 1
            start = next_word[c, d]
            lo = offsets[j]
            length = offsets[j + 1] - lo
            next_word[c, d] = start + length
            out_src[slot] = src[j]
            out_offsets[slot] = start
            for w in range(length):
                out_words[start + w] = words[lo + w]
    for d in nb.prange(machines):      # written in order, not scattered: one stream fewer per message
        out_dst[machine_offsets[d]:machine_offsets[d + 1]] = d
    out_offsets[m] = words.shape[0]


def route(batch: MessageBatch, machines: int, *, chunks: int | None = None) -> Delivery:
    """Deliver ``batch`` to ``machines`` machines: a stable counting sort by destination.

    The caller has checked that every destination is in range. Float words travel as their
    int64 bit patterns, so delivery is bit-exact for both word types. The sort runs on
    ``chunks`` threads (default: numba's thread count); the result does not depend on it.
    Output arrays are allocated by numpy, whose large allocations use huge pages: first
    touching numba-allocated memory cost more than the sort itself.

    Examples
    --------
    >>> b = MessageBatch.from_list([(0, 2, [1, 2]), (1, 0, [3]), (2, 2, [4])])
    >>> d = route(b, 3)
    >>> d.machine_offsets.tolist(), d.messages.words.tolist(), d.inbox(2).sources.tolist()
    ([0, 1, 1, 3], [3, 1, 2, 4], [0, 2])
    """
    m, num_words = batch.num_messages, batch.num_words
    chunks = nb.get_num_threads() if chunks is None else int(chunks)
    if chunks < 1:
        raise ValueError(f"chunks must be >= 1, got {chunks}")
    out_src, out_dst = np.empty(m, dtype=np.int64), np.empty(m, dtype=np.int64)
    out_offsets, out_words = np.empty(m + 1, dtype=np.int64), np.empty(num_words, dtype=np.int64)
    machine_offsets = np.empty(machines + 1, dtype=np.int64)
    _route_kernel(batch.src, batch.dst, batch.offsets, batch.words.view(np.int64), min(chunks, max(m, 1)),
                  out_src, out_dst, out_offsets, out_words, machine_offsets)
    return Delivery(MessageBatch(out_src, out_dst, out_offsets, out_words.view(batch.dtype)), machine_offsets)
