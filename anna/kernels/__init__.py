"""numba kernels behind :mod:`anna.lsh` and :mod:`anna.attention`, in three groups.

* :mod:`~anna.kernels.hashing` -- row tiles, linear projections and fast Walsh-Hadamard
  transforms that each family's hashing kernel (in its :mod:`anna.lsh` module) chains;
* :mod:`~anna.kernels.buckets` -- bucket numbering (:func:`build_buckets`,
  :func:`compact_hit_buckets`) and bucket sums (:func:`bucket_sums`, :func:`causal_segment_sums`);
* :mod:`~anna.kernels.queries` -- each query's sums over its buckets (:func:`gather_sums`,
  :func:`causal_scan`) and candidate counts (:func:`candidate_counts`);

and :mod:`~anna.kernels.common` (typed kernels, thread control, prefetching). Bucket sums are
accumulated in float64 (float32 values: rounded once to float32 before the query side reads
them), counts in int64, and every sum is taken in a fixed order (keys by index within a table,
tables by index within a query), so results do not depend on the number of threads.

Entry points have explicit signatures (C-contiguous arrays, float32 or float64 values) and
``cache=True``; they compile or load from the cache on first call (:func:`typed_kernel`). The
one-thread threshold is :data:`anna.kernels.common.PARALLEL_WORK` (set it there).
"""
from __future__ import annotations

from .buckets import SINGLE_KEY, bucket_sums, build_buckets, causal_segment_sums, compact_hit_buckets
from .common import PARALLEL_WORK, TypedKernel, finite_sum, threads_for, typed_kernel
from .hashing import MAX_PADDED_DIM, TILE, run_hash_kernel
from .queries import candidate_counts, causal_scan, gather_sums

__all__ = [
    "PARALLEL_WORK",
    "threads_for",
    "finite_sum",
    "typed_kernel",
    "TypedKernel",
    "TILE",
    "MAX_PADDED_DIM",
    "run_hash_kernel",
    "build_buckets",
    "SINGLE_KEY",
    "compact_hit_buckets",
    "bucket_sums",
    "gather_sums",
    "causal_segment_sums",
    "causal_scan",
    "candidate_counts",
]
