"""Bucket kernels: number each table's distinct key codes, find every query's bucket, add values.

:func:`build_buckets` numbers each table's distinct key codes and finds every query's bucket (open
addressing; radix-partitioned when buckets are many); :func:`compact_hit_buckets` keeps only the
buckets some query lands in; :func:`bucket_sums` adds each key's value row into its bucket in
every table of a run and :func:`causal_segment_sums` does so per segment of positions (the causal
scan's starting sums). Sums are accumulated in float64, counts in int64, keys by index within a
table, so results do not depend on the number of threads.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange, types

from .common import PREFETCH_AHEAD, add_row, array, prefetch_row, typed_kernel

__all__ = ["build_buckets", "SINGLE_KEY", "compact_hit_buckets", "bucket_sums", "causal_segment_sums"]

_FIBONACCI = np.uint64(0x9E3779B97F4A7C15)
_IDS = array(types.int32, 2)
_IDS_READ = array(types.int32, 2, readonly=True)
_OFFSETS = array(types.int64, 1, readonly=True)


_SMALL_TABLE_BUCKETS = 2**15  # beyond this many buckets a single hash table leaves L2
_PARTITION_TARGET = 8192  # keys per partition: its hash table (<= 2**15 slots) stays in L2


@njit(cache=True, inline="always")
def _mixed(code):
    return code * _FIBONACCI


@njit(cache=True, inline="always")
def _probe_insert(slot_code, slot_id, mask, s, c, count):
    """Linear probing from slot s: the id of code c, inserting it as ``count`` if absent."""
    while True:
        b = slot_id[s]
        if b < 0:
            slot_id[s] = count
            slot_code[s] = c
            return count
        if slot_code[s] == c:
            return b
        s = (s + 1) & mask


@njit(cache=True, inline="always")
def _probe_find(slot_code, slot_id, mask, s, c):
    """Linear probing from slot s: the id of code c, or -1."""
    while True:
        b = slot_id[s]
        if b < 0:
            return -1
        if slot_code[s] == c:
            return b
        s = (s + 1) & mask


@njit(cache=True)
def _buckets_small(keys, queries, key_bucket, query_bucket):
    """One growable table (load <= 1/2); returns the bucket count, or -1 past _SMALL_TABLE_BUCKETS."""
    bits = 4
    slot_code = np.empty(1 << bits, dtype=np.uint64)
    slot_id = np.full(1 << bits, -1, dtype=np.int32)
    count = 0
    for j in range(keys.shape[0]):
        c = keys[j]
        b = _probe_insert(slot_code, slot_id, (1 << bits) - 1, np.int64(_mixed(c) >> np.uint64(64 - bits)), c,
                          count)
        if b == count:
            count += 1
            if count > _SMALL_TABLE_BUCKETS:
                return -1
            if 2 * count > (1 << bits):  # grow and rehash
                bits += 1
                new_code = np.empty(1 << bits, dtype=np.uint64)
                new_id = np.full(1 << bits, -1, dtype=np.int32)
                for s in range(slot_code.shape[0]):
                    if slot_id[s] >= 0:
                        _probe_insert(new_code, new_id, (1 << bits) - 1,
                                      np.int64(_mixed(slot_code[s]) >> np.uint64(64 - bits)), slot_code[s],
                                      slot_id[s])
                slot_code, slot_id = new_code, new_id
        key_bucket[j] = b
    for i in range(queries.shape[0]):
        c = queries[i]
        query_bucket[i] = _probe_find(slot_code, slot_id, (1 << bits) - 1,
                                      np.int64(_mixed(c) >> np.uint64(64 - bits)), c)
    return count


@njit(cache=True)
def _partition(codes, bits, sorted_codes, order, offsets):
    """Counting sort of the codes (and their indices) by the top ``bits`` bits of the mixed code."""
    n_parts = offsets.shape[0] - 1
    offsets[:] = 0
    for i in range(codes.shape[0]):
        offsets[np.int64(_mixed(codes[i]) >> np.uint64(64 - bits)) + 1] += 1
    for p in range(n_parts):
        offsets[p + 1] += offsets[p]
    fill = offsets[:n_parts].copy()
    for i in range(codes.shape[0]):
        p = np.int64(_mixed(codes[i]) >> np.uint64(64 - bits))
        sorted_codes[fill[p]] = codes[i]
        order[fill[p]] = i
        fill[p] += 1


@njit(cache=True)
def _buckets_partitioned(keys, queries, key_bucket, query_bucket):
    """Radix-partitioned build: partitions of ~_PARTITION_TARGET keys, each with a cache-sized table."""
    n_keys, n_queries = keys.shape[0], queries.shape[0]
    bits = 1
    while (n_keys >> bits) > _PARTITION_TARGET and bits < 20:
        bits += 1
    n_parts = 1 << bits
    key_codes = np.empty(n_keys, dtype=np.uint64)
    key_order = np.empty(n_keys, dtype=np.int32)
    key_offsets = np.empty(n_parts + 1, dtype=np.int64)
    query_codes = np.empty(n_queries, dtype=np.uint64)
    query_order = np.empty(n_queries, dtype=np.int32)
    query_offsets = np.empty(n_parts + 1, dtype=np.int64)
    _partition(keys, bits, key_codes, key_order, key_offsets)
    _partition(queries, bits, query_codes, query_order, query_offsets)
    capacity = 1
    while capacity < 4 * _PARTITION_TARGET:
        capacity *= 2
    slot_code = np.empty(capacity, dtype=np.uint64)
    slot_id = np.empty(capacity, dtype=np.int32)
    count = 0
    shift_in = np.uint64(bits)
    # ids are written in partition order, then scattered to row order in tight loops: a scatter
    # interleaved with the probing stalls (measured: about twice slower)
    key_ids = np.empty(n_keys, dtype=np.int32)
    query_ids = np.empty(n_queries, dtype=np.int32)
    for p in range(n_parts):
        size = key_offsets[p + 1] - key_offsets[p]
        table_bits = 1
        while (1 << table_bits) < 2 * size:
            table_bits += 1
        if (1 << table_bits) > capacity:  # an unusually full partition
            capacity = 1 << table_bits
            slot_code = np.empty(capacity, dtype=np.uint64)
            slot_id = np.empty(capacity, dtype=np.int32)
        mask = (1 << table_bits) - 1
        shift_out = np.uint64(64 - table_bits)
        slot_id[: 1 << table_bits] = -1
        for t in range(key_offsets[p], key_offsets[p + 1]):
            c = key_codes[t]
            b = _probe_insert(slot_code, slot_id, mask, np.int64((_mixed(c) << shift_in) >> shift_out), c, count)
            if b == count:
                count += 1
            key_ids[t] = b
        for t in range(query_offsets[p], query_offsets[p + 1]):
            c = query_codes[t]
            query_ids[t] = _probe_find(slot_code, slot_id, mask, np.int64((_mixed(c) << shift_in) >> shift_out), c)
    for t in range(n_keys):
        key_bucket[key_order[t]] = key_ids[t]
    for t in range(n_queries):
        query_bucket[query_order[t]] = query_ids[t]
    return count




@typed_kernel((array(types.uint64, 2, readonly=True), array(types.uint64, 2, readonly=True), _IDS, _IDS,
               array(types.int64, 1)), parallel=True)
def build_buckets(key_codes, query_codes, bucket_of, bucket_of_query, n_buckets):
    """Per table: number the distinct key codes (buckets) and find each query's bucket.

    Writes ``bucket_of[u, j]`` (key j's bucket), ``bucket_of_query[u, i]`` (query i's bucket, -1 if
    no key has its code) and ``n_buckets[u]``. Open addressing with linear probing on Fibonacci-
    mixed codes. While a table has few buckets, one growable hash table (in cache) numbers them
    first-seen; past ``_SMALL_TABLE_BUCKETS`` the table is rebuilt radix-partitioned (keys and
    queries split by the top bits of their mixed codes into partitions of ~1024 keys, each with a
    cache-sized table), since one large table would miss the cache on every probe. One table per
    task.
    """
    n_tables = key_codes.shape[0]
    for u in prange(n_tables):
        count = _buckets_small(key_codes[u], query_codes[u], bucket_of[u], bucket_of_query[u])
        if count < 0:
            count = _buckets_partitioned(key_codes[u], query_codes[u], bucket_of[u], bucket_of_query[u])
        n_buckets[u] = count



SINGLE_KEY = -2
"""Query bucket ids ``<= SINGLE_KEY`` name a bucket holding one key j, encoded ``SINGLE_KEY - j``."""



@typed_kernel((_IDS, _IDS, _OFFSETS, array(types.int64, 1)), parallel=True)
def compact_hit_buckets(bucket_of, bucket_of_query, n_buckets, n_rows):
    """Per table, keep only the buckets some query lands in; give sum rows to those with 2+ keys.

    Rewrites in place: ``bucket_of[u, j]`` becomes the sum row of key j's bucket (0.., in the old
    bucket order) or -1 when no query lands there or the bucket holds key j alone;
    ``bucket_of_query[u, i]`` becomes the sum row, ``SINGLE_KEY - j`` for a one-key bucket (the
    query reads ``v[j]`` directly) or stays -1. ``n_rows[u]`` = sum rows of table u. When keys
    and queries rarely share a code (many small buckets) this spares both the sums nobody reads
    and copying single keys' values into sums.
    """
    n_tables = bucket_of.shape[0]
    for u in prange(n_tables):
        keys = bucket_of[u]
        queries = bucket_of_query[u]
        size = np.zeros(n_buckets[u], dtype=np.int64)
        only_key = np.empty(n_buckets[u], dtype=np.int64)
        for j in range(keys.shape[0]):
            if size[keys[j]] == 0:
                only_key[keys[j]] = j
            size[keys[j]] += 1
        hit = np.zeros(n_buckets[u], dtype=np.bool_)
        for i in range(queries.shape[0]):
            if queries[i] >= 0:
                hit[queries[i]] = True
        row = np.full(n_buckets[u], -1, dtype=np.int64)
        count = 0
        for b in range(n_buckets[u]):
            if hit[b] and size[b] >= 2:
                row[b] = count
                count += 1
        for j in range(keys.shape[0]):
            keys[j] = row[keys[j]]
        for i in range(queries.shape[0]):
            b = queries[i]
            if b >= 0:
                queries[i] = row[b] if size[b] >= 2 else SINGLE_KEY - only_key[b]
        n_rows[u] = count



@typed_kernel(lambda dtype: (array(dtype, 2, readonly=True), _IDS_READ, _OFFSETS, _OFFSETS,
                             array(types.float64, 2), array(types.int64, 1)), parallel=True)
def bucket_sums(v, bucket_of, bucket_start, lane_bounds, vsum, bcount):
    """Add every key's value row and a 1 into its bucket, in every table of a run.

    ``bucket_of`` (T_run, N_k) holds bucket ids per table (-1: a bucket no query lands in, so the
    key is skipped); table u's buckets live at rows ``bucket_start[u] + id`` of ``vsum`` (B, d_v)
    float64 / ``bcount`` (B,) int64, which must arrive zeroed. Tables are split into lanes by
    ``lane_bounds`` (one thread each) and a lane does its tables one at a time, so the bucket rows
    it updates are one table's (the cache-friendly order: measured ~2x faster than visiting all
    tables per block of keys). Keys are added in index order, whatever the number of lanes.
    """
    n_keys = v.shape[0]
    for lane in prange(lane_bounds.shape[0] - 1):
        for u in range(lane_bounds[lane], lane_bounds[lane + 1]):
            start = bucket_start[u]
            ids = bucket_of[u]
            for j in range(n_keys):
                if j + PREFETCH_AHEAD < n_keys and ids[j + PREFETCH_AHEAD] >= 0:
                    prefetch_row(vsum, start + ids[j + PREFETCH_AHEAD])  # random rows: hide latency
                b = ids[j]
                if b >= 0:
                    bcount[start + b] += 1
                    add_row(vsum[start + b], v[j])



@typed_kernel(lambda dtype: (array(dtype, 2, readonly=True), _IDS_READ, _OFFSETS, _OFFSETS,
                             array(types.float64, 3), array(types.int64, 2)), parallel=True)
def causal_segment_sums(v, bucket_of, bucket_start, segment_bounds, seg_vsum, seg_count):
    """Per position segment s: the bucket sums of the keys in that segment (all run tables)."""
    n_tables = bucket_of.shape[0]
    for s in prange(segment_bounds.shape[0] - 1):
        for j in range(segment_bounds[s], segment_bounds[s + 1]):
            for u in range(n_tables):
                b = bucket_of[u, j]
                if b >= 0:
                    seg_count[s, bucket_start[u] + b] += 1
                    add_row(seg_vsum[s, bucket_start[u] + b], v[j])

