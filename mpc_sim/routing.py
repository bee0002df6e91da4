"""Delivery of a round's messages: a stable numba counting sort by destination."""
from __future__ import annotations

import numba as nb
import numpy as np

from .state import Delivery, MessageBatch

__all__ = ["route"]


@nb.njit(cache=True)
def _route_kernel(src, dst, offsets, words, machines):  # pragma: no cover - compiled
    m = dst.shape[0]
    machine_offsets = np.zeros(machines + 1, dtype=np.int64)
    machine_words = np.zeros(machines + 1, dtype=np.int64)
    for j in range(m):
        d = dst[j]
        machine_offsets[d + 1] += 1
        machine_words[d + 1] += offsets[j + 1] - offsets[j]
    for i in range(machines):
        machine_offsets[i + 1] += machine_offsets[i]
        machine_words[i + 1] += machine_words[i]
    next_message = machine_offsets[:-1].copy()
    next_word = machine_words[:-1].copy()
    out_src = np.empty(m, dtype=np.int64)
    out_dst = np.empty(m, dtype=np.int64)
    out_offsets = np.empty(m + 1, dtype=np.int64)
    out_words = np.empty(words.shape[0], dtype=np.int64)
    for j in range(m):
        d = dst[j]
        slot = next_message[d]
        next_message[d] = slot + 1
        start = next_word[d]
        lo = offsets[j]
        length = offsets[j + 1] - lo
        next_word[d] = start + length
        out_src[slot] = src[j]
        out_dst[slot] = d
        out_offsets[slot] = start
        for w in range(length):
            out_words[start + w] = words[lo + w]
    out_offsets[m] = words.shape[0]
    return out_src, out_dst, out_offsets, out_words, machine_offsets


def route(batch: MessageBatch, machines: int) -> Delivery:
    """Deliver ``batch`` to ``machines`` machines: a stable counting sort by destination.

    The caller has checked that every destination is in range. Float words travel as their
    int64 bit patterns, so delivery is bit-exact for both word types.

    Examples
    --------
    >>> b = MessageBatch.from_list([(0, 2, [1, 2]), (1, 0, [3]), (2, 2, [4])])
    >>> d = route(b, 3)
    >>> d.machine_offsets.tolist(), d.messages.words.tolist(), d.inbox(2).sources.tolist()
    ([0, 1, 1, 3], [3, 1, 2, 4], [0, 2])
    """
    src, dst, offsets, words, machine_offsets = _route_kernel(
        batch.src, batch.dst, batch.offsets, batch.words.view(np.int64), machines)
    routed = MessageBatch(src, dst, offsets, words.view(batch.dtype))
    return Delivery(routed, machine_offsets)
