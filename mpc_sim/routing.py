"""Delivery of a round's messages: a stable numba counting sort by destination.

The batch is cut into consecutive pieces, one per thread. Each piece counts its messages per
destination, the counts become first slots (a piece's slots for machine ``d`` follow those of
the earlier pieces), and each piece scatters its messages into place: the result is the stable
sort whatever the number of pieces. The kernels release the GIL and run on plain Python threads
started per call, not on numba's OpenMP pool, which makes any later ``fork()`` abort.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

import numba as nb
import numpy as np

from .state import Delivery, MessageBatch

__all__ = ["route"]

# Below this many messages one thread is faster than starting others.
_MIN_MESSAGES_PER_THREAD = 1 << 15


@nb.njit(nogil=True, cache=True)
def _count(dst, offsets, lo, hi, messages_to, words_to):  # pragma: no cover - compiled
    for j in range(lo, hi):
        d = dst[j]
        messages_to[d] += 1
        words_to[d] += offsets[j + 1] - offsets[j]


@nb.njit(cache=True)
def _first_slots(messages_to, words_to, machine_offsets):  # pragma: no cover - compiled
    """Per-piece counts (pieces, machines) -> each piece's first message and word slot per machine."""
    pieces, machines = messages_to.shape
    messages_before = 0
    words_before = 0
    for d in range(machines):
        machine_offsets[d] = messages_before
        for c in range(pieces):
            count = messages_to[c, d]
            messages_to[c, d] = messages_before
            messages_before += count
            count = words_to[c, d]
            words_to[c, d] = words_before
            words_before += count
    machine_offsets[machines] = messages_before


@nb.njit(nogil=True, cache=True)
def _scatter(src, dst, offsets, words, lo, hi, next_message, next_word,
             out_src, out_offsets, out_words):  # pragma: no cover - compiled
    for j in range(lo, hi):
        d = dst[j]
        slot = next_message[d]
        next_message[d] = slot + 1
        start = next_word[d]
        first = offsets[j]
        length = offsets[j + 1] - first
        next_word[d] = start + length
        out_src[slot] = src[j]
        out_offsets[slot] = start
        for w in range(length):
            out_words[start + w] = words[first + w]


@nb.njit(nogil=True, cache=True)
def _fill_destinations(machine_offsets, lo, hi, out_dst):  # pragma: no cover - compiled
    # In order, not scattered: one stream fewer per message in the scatter.
    for d in range(lo, hi):
        out_dst[machine_offsets[d]:machine_offsets[d + 1]] = d


def _on_threads(tasks: list[Callable[[], None]]) -> None:
    """Run the tasks concurrently (the kernels release the GIL), the first on this thread."""
    threads = [threading.Thread(target=task) for task in tasks[1:]]
    for thread in threads:
        thread.start()
    tasks[0]()
    for thread in threads:
        thread.join()


def route(batch: MessageBatch, machines: int, *, threads: int | None = None) -> Delivery:
    """Deliver ``batch`` to ``machines`` machines: a stable counting sort by destination.

    The caller has checked that every destination is in range. Float words travel as their
    int64 bit patterns, so delivery is bit-exact for both word types. ``threads`` share the
    work (default: numba's thread count, fewer for small batches); the result does not depend
    on it. Outputs are allocated by numpy, whose large allocations use huge pages (first
    touching numba-allocated memory cost more than the sort).

    Examples
    --------
    >>> b = MessageBatch.from_list([(0, 2, [1, 2]), (1, 0, [3]), (2, 2, [4])])
    >>> d = route(b, 3)
    >>> d.machine_offsets.tolist(), d.messages.words.tolist(), d.inbox(2).sources.tolist()
    ([0, 1, 1, 3], [3, 1, 2, 4], [0, 2])
    """
    m = batch.num_messages
    if threads is None:
        threads = min(nb.get_num_threads(), m // _MIN_MESSAGES_PER_THREAD)
    elif threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    pieces = max(1, min(int(threads), m))
    src, dst, offsets, words = batch.src, batch.dst, batch.offsets, batch.words.view(np.int64)
    out_src, out_dst = np.empty(m, dtype=np.int64), np.empty(m, dtype=np.int64)
    out_offsets, out_words = np.empty(m + 1, dtype=np.int64), np.empty(words.shape[0], dtype=np.int64)
    machine_offsets = np.empty(machines + 1, dtype=np.int64)
    bounds = (np.arange(pieces + 1) * m) // pieces
    machine_bounds = (np.arange(pieces + 1) * machines) // pieces
    next_message = np.zeros((pieces, machines), dtype=np.int64)
    next_word = np.zeros((pieces, machines), dtype=np.int64)

    def count(c: int) -> None:
        _count(dst, offsets, bounds[c], bounds[c + 1], next_message[c], next_word[c])

    def place(c: int) -> None:
        _scatter(src, dst, offsets, words, bounds[c], bounds[c + 1], next_message[c], next_word[c],
                 out_src, out_offsets, out_words)
        _fill_destinations(machine_offsets, machine_bounds[c], machine_bounds[c + 1], out_dst)

    _on_threads([lambda c=c: count(c) for c in range(pieces)])
    _first_slots(next_message, next_word, machine_offsets)
    _on_threads([lambda c=c: place(c) for c in range(pieces)])
    out_offsets[m] = words.shape[0]
    return Delivery(MessageBatch(out_src, out_dst, out_offsets, out_words.view(batch.dtype)), machine_offsets)
