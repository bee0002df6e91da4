"""Query kernels: each query's bucket sums over the tables (Algorithm 1's ``sum vsum / sum count``).

:func:`gather_sums` adds, for every query, the sums and counts of its buckets; :func:`causal_scan`
does the same with the prefix restriction ``j <= i`` in linear time; :func:`candidate_counts`
counts the distinct keys a query meets (diagnostics). Every sum is taken in a fixed order (tables
by index within a query), so results do not depend on the number of threads.
"""
from __future__ import annotations

import numpy as np
from numba import prange, types

from .buckets import SINGLE_KEY
from .common import PREFETCH_AHEAD, add_row, array, prefetch_row, typed_kernel

__all__ = ["gather_sums", "causal_scan", "candidate_counts"]

_IDS_READ = array(types.int32, 2, readonly=True)
_OFFSETS = array(types.int64, 1, readonly=True)


@typed_kernel(lambda dtype: (array(dtype, 2, readonly=True), _IDS_READ, _OFFSETS, array(dtype, 2, readonly=True),
                             _OFFSETS, array(types.float64, 2), array(types.int64, 1), array(dtype, 2),
                             types.boolean, types.boolean, types.int64), parallel=True)
def gather_sums(v, bucket_of_query, bucket_start, vsum, bcount, acc, counts, out, first, last, n_threads):
    """Add the sums and counts of each query's buckets over the tables of a run.

    Queries go in blocks whose running sums stay in cache; within a block the tables are visited
    one at a time (so the bucket rows in use are one table's). ``vsum`` may be float32 (the
    float64 bucket sums rounded once, half the memory traffic); the block's running sums then
    are float32 too (at most ``ell`` terms each; measured ~1.4x faster than float64). With ``first
    and last`` (a single run) the result goes straight to ``out`` / ``counts``; otherwise ``acc``
    (N_q, d_v) float64 / ``counts`` carry running sums across runs (Algorithm 2) and ``last``
    divides into ``out``. Queries with count 0 get a zero row. Per query, tables are added in
    order, whatever the blocking and the number of threads. Ids ``<= SINGLE_KEY`` read the one
    key's value from ``v`` (see :func:`compact_hit_buckets`).
    """
    n_tables, n = bucket_of_query.shape
    dim_v = vsum.shape[1]
    block = 2048
    n_blocks = (n + block - 1) // block
    n_chunks = min(n_blocks, 4 * n_threads)
    if n_chunks == 0:
        return
    per_chunk = (n_blocks + n_chunks - 1) // n_chunks
    for chunk in prange(n_chunks):
        rows = np.empty((block, dim_v), dtype=vsum.dtype)
        totals = np.empty(block, dtype=np.int64)
        for blk in range(chunk * per_chunk, min(n_blocks, (chunk + 1) * per_chunk)):
            lo = blk * block
            size = min(n, lo + block) - lo
            for i in range(size):  # this run's sums; earlier runs' are added from acc at the end
                rows[i] = 0.0
                totals[i] = 0 if first else counts[lo + i]
            for u in range(n_tables):
                start = bucket_start[u]
                ids = bucket_of_query[u, lo: lo + size]
                for i in range(size):
                    if i + PREFETCH_AHEAD < size and ids[i + PREFETCH_AHEAD] >= 0:
                        prefetch_row(vsum, start + ids[i + PREFETCH_AHEAD])
                    b = ids[i]
                    if b >= 0:
                        totals[i] += bcount[start + b]
                        add_row(rows[i], vsum[start + b])
                    elif b <= SINGLE_KEY:
                        totals[i] += 1
                        add_row(rows[i], v[SINGLE_KEY - b])
            for i in range(size):
                counts[lo + i] = totals[i]
                if last:
                    target = out[lo + i]
                    row = rows[i]
                    if totals[i] > 0:
                        if first:
                            inverse = 1.0 / totals[i]
                            for c in range(dim_v):
                                target[c] = row[c] * inverse
                        else:  # add this run to the float64 running sums, then divide
                            previous = acc[lo + i]
                            for c in range(dim_v):
                                target[c] = (previous[c] + row[c]) / totals[i]
                    else:
                        for c in range(dim_v):
                            target[c] = 0.0
                elif first:
                    acc[lo + i] = rows[i]
                else:
                    previous = acc[lo + i]
                    row = rows[i]
                    for c in range(dim_v):
                        previous[c] += row[c]



@typed_kernel(lambda dtype: (array(dtype, 2, readonly=True), _IDS_READ, _IDS_READ, _OFFSETS, _OFFSETS,
                             array(types.float64, 3), array(types.int64, 2), array(types.float64, 2),
                             array(types.int64, 1), array(dtype, 2), types.boolean, types.boolean), parallel=True)
def causal_scan(v, bucket_of, bucket_of_query, bucket_start, segment_bounds, seg_vsum, seg_count,
                acc, counts, out, first, last):
    """Causal Algorithm 1: query i sees the running bucket sums of keys 0..i.

    ``seg_vsum[s]`` / ``seg_count[s]`` must hold the bucket sums of all keys before segment s
    (an exclusive prefix over segments); each segment then walks its positions in order, adding
    key t to its buckets before reading query t's buckets. Linear time, no pair enumeration.
    ``first`` / ``last`` as in :func:`gather_sums`.
    """
    n_tables = bucket_of.shape[0]
    dim_v = v.shape[1]
    for s in prange(segment_bounds.shape[0] - 1):
        row = np.empty(dim_v, dtype=np.float64)
        running = seg_vsum[s]
        running_count = seg_count[s]
        for t in range(segment_bounds[s], segment_bounds[s + 1]):
            for u in range(n_tables):
                b = bucket_of[u, t]
                if b >= 0:
                    running_count[bucket_start[u] + b] += 1
                    add_row(running[bucket_start[u] + b], v[t])
            if first:
                total = 0
                for c in range(dim_v):
                    row[c] = 0.0
            else:
                total = counts[t]
                for c in range(dim_v):
                    row[c] = acc[t, c]
            for u in range(n_tables):
                b = bucket_of_query[u, t]
                if b >= 0:
                    total += running_count[bucket_start[u] + b]
                    add_row(row, running[bucket_start[u] + b])
                elif b <= SINGLE_KEY and SINGLE_KEY - b <= t:  # a one-key bucket, key already seen
                    total += 1
                    add_row(row, v[SINGLE_KEY - b])
            counts[t] = total
            if last:
                if total > 0:
                    for c in range(dim_v):
                        out[t, c] = row[c] / total
                else:
                    for c in range(dim_v):
                        out[t, c] = 0.0
            else:
                for c in range(dim_v):
                    acc[t, c] = row[c]



@typed_kernel((_IDS_READ, _IDS_READ, _OFFSETS, types.boolean, array(types.int64, 1), types.int64), parallel=True)
def candidate_counts(bucket_of, bucket_of_query, n_buckets, causal, candidates, n_threads):
    """``candidates[i]`` = number of distinct keys sharing a bucket with query i in some table.

    With ``causal`` only keys j <= i count. Cost: the total bucket size over (query, table)
    pairs, i.e. what a candidate-list implementation would scan; meant for diagnostics.
    """
    n_tables, n_keys = bucket_of.shape
    n_queries = bucket_of_query.shape[1]
    # per table: keys grouped by bucket, ascending key index (a counting sort)
    starts = np.zeros((n_tables, n_keys + 1), dtype=np.int64)
    members = np.empty((n_tables, n_keys), dtype=np.int32)
    for u in prange(n_tables):
        for j in range(n_keys):
            starts[u, bucket_of[u, j] + 1] += 1
        for b in range(n_buckets[u]):
            starts[u, b + 1] += starts[u, b]
        fill = starts[u, :n_keys].copy()
        for j in range(n_keys):
            b = bucket_of[u, j]
            members[u, fill[b]] = j
            fill[b] += 1
    n_chunks = min(n_queries, n_threads)
    if n_chunks == 0:
        return
    per_chunk = (n_queries + n_chunks - 1) // n_chunks
    for chunk in prange(n_chunks):
        stamp = np.full(n_keys, -1, dtype=np.int64)
        for i in range(chunk * per_chunk, min(n_queries, (chunk + 1) * per_chunk)):
            found = 0
            for u in range(n_tables):
                b = bucket_of_query[u, i]
                if b < 0:
                    continue
                for p in range(starts[u, b], starts[u, b + 1]):
                    j = members[u, p]
                    if causal and j > i:
                        break
                    if stamp[j] != i:
                        stamp[j] = i
                        found += 1
            candidates[i] = found
