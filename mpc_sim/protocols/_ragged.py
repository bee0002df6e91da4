"""Vectorised operations on ragged cluster arrays, shared by the batch styles of the protocol library.

Every function works on the whole cluster at once (flat words plus per-machine offsets) with numba
kernels, so a batch step never loops over machines in Python.

Examples
--------
>>> a = ClusterState(np.array([1, 2, 3]), ragged_offsets([2, 0, 1]))
>>> b = ClusterState(np.array([7, 8]), ragged_offsets([0, 1, 1]))
>>> [m.tolist() for m in concat_memories(a, b).to_list()]
[[1, 2], [7], [3, 8]]
>>> sort_segments(np.array([3, 1, 2, 9, 5]), np.array([0, 3, 3, 5])).tolist()
[1, 2, 3, 5, 9]
"""
from __future__ import annotations

import numba as nb
import numpy as np

from ..state import ClusterState, ragged_offsets

__all__ = ["concat_memories", "sort_segments"]


@nb.njit(cache=True)
def _concat_kernel(a_words, a_offsets, b_words, b_offsets, out):  # pragma: no cover - compiled
    machines = a_offsets.shape[0] - 1
    pos = 0
    for i in range(machines):
        for j in range(a_offsets[i], a_offsets[i + 1]):
            out[pos] = a_words[j]
            pos += 1
        for j in range(b_offsets[i], b_offsets[i + 1]):
            out[pos] = b_words[j]
            pos += 1


def concat_memories(first: ClusterState, second: ClusterState) -> ClusterState:
    """Machine by machine, the words of ``first`` followed by those of ``second``."""
    if first.machines != second.machines or first.dtype != second.dtype:
        raise ValueError("concat_memories needs two states of the same machines and word dtype")
    sizes = first.sizes() + second.sizes()
    out = np.empty(int(sizes.sum()), dtype=first.dtype)
    _concat_kernel(first.words.view(np.int64), first.offsets, second.words.view(np.int64), second.offsets,
                   out.view(np.int64))
    return ClusterState(out, ragged_offsets(sizes))


@nb.njit(cache=True, parallel=True)
def _sort_segments_kernel(words, offsets):  # pragma: no cover - compiled
    for i in nb.prange(offsets.shape[0] - 1):
        lo, hi = offsets[i], offsets[i + 1]
        if hi - lo > 1:
            words[lo:hi] = np.sort(words[lo:hi])


def sort_segments(words: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """A copy of ``words`` with every segment ``offsets[i]:offsets[i + 1]`` sorted (int64 words)."""
    out = np.array(words, dtype=np.int64, copy=True)
    _sort_segments_kernel(out, np.ascontiguousarray(offsets, dtype=np.int64))
    return out

