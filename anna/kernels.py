"""numba kernels behind :mod:`anna.lsh` and :mod:`anna.attention`.

Three groups, each a handful of small kernels that the Python layer chains:

* **hashing** -- :func:`hash_codes` turns rows into one ``uint64`` code per table. Rows are
  processed in tiles of ``TILE`` rows, transposed so that the tile's rows are the fast axis (and
  stored flat, see ``_project_tile``): the projections of a tile are a register-blocked product
  (4 functions x 4 coordinates per step, rows vectorised), and the cross-polytope's fast
  Walsh-Hadamard transforms are radix-8 butterflies over whole tile rows, the random signs fused
  into each round's first pass. The ``z`` per-function values of a table are combined as
  ``sum_t h_t * mult_t (mod 2**64)`` with random odd multipliers drawn from the seed.
* **buckets** -- :func:`build_buckets` numbers each table's distinct key codes and finds every
  query's bucket (open addressing; radix-partitioned when buckets are many), and
  :func:`compact_hit_buckets` keeps only the buckets some query lands in.
* **sums** -- :func:`bucket_sums` adds each key's value row into its bucket in every table of a
  run, :func:`gather_sums` adds, for every query, the sums and counts of its buckets
  (Algorithm 1's ``sum vsum / sum count``); :func:`causal_segment_sums` and :func:`causal_scan`
  do the same with the prefix restriction ``j <= i`` in linear time.

Bucket sums are accumulated in float64 (float32 values: rounded once to float32 before the
query side reads them), counts in int64, and every sum is taken in a fixed order (keys by index
within a table, tables by index within a query), so results do not depend on the number of
threads. Performance notes are next to each kernel; the numbers quoted were measured on the
project's 2-core AMD EPYC (Zen 4) machine.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "PARALLEL_WORK",
    "threads_for",
    "finite_sum",
    "TILE",
    "KIND_E2LSH",
    "KIND_HYPERPLANE",
    "KIND_CROSS_POLYTOPE",
    "MAX_PADDED_DIM",
    "hash_codes",
    "build_buckets",
    "SINGLE_KEY",
    "compact_hit_buckets",
    "bucket_sums",
    "gather_sums",
    "causal_segment_sums",
    "causal_scan",
    "candidate_counts",
]

TILE = 64
"""Rows per hashing tile (a multiple of 16 so that a tile row is whole SIMD registers)."""

KIND_E2LSH = 0
KIND_HYPERPLANE = 1
KIND_CROSS_POLYTOPE = 2

PARALLEL_WORK = 2**20
"""Below this much work (roughly: scalar operations) kernels run on one thread: waking the pool
costs tens of microseconds on a quiet machine and milliseconds on a busy one."""

_FIBONACCI = np.uint64(0x9E3779B97F4A7C15)


@contextmanager
def threads_for(work: int) -> Iterator[None]:
    """Run the numba kernels called inside on one thread if ``work < PARALLEL_WORK``."""
    if work >= PARALLEL_WORK or numba.get_num_threads() == 1:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)
_CLAMP = 4.0e18  # E2LSH cell indices are clamped to +-4e18 (< 2**62) before the int64 cast


@intrinsic
def _prefetch(typingctx, array, row, column):
    """Hint the CPU to fetch ``array[row, column]``'s cache line for writing (LLVM prefetch)."""
    signature = types.void(array, types.intp, types.intp)

    def codegen(context, builder, sig, args):
        array_type = sig.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, view, [args[1], args[2]],
                                           wraparound=False)
        byte_pointer = ir.IntType(8).as_pointer()
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer] + [ir.IntType(32)] * 3),
            "llvm.prefetch.p0")
        i32 = ir.IntType(32)
        builder.call(function, [builder.bitcast(pointer, byte_pointer), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()

    return signature, codegen


_PREFETCH_AHEAD = 16  # rows: enough to cover an L3 / DRAM latency at a few ns per row


@njit(cache=True, inline="always")
def _prefetch_row(array, row):
    """Prefetch every cache line of ``array[row]`` (2-D, C-contiguous)."""
    step = max(1, 64 // array.itemsize)
    for column in range(0, array.shape[1], step):
        _prefetch(array, row, column)


@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def finite_sum(flat):
    """Sum of a 1-D array in float64; finite exactly when every entry is finite (unless it overflows).

    Only reassociation is allowed (no 'no-NaN' assumptions), so NaN and inf propagate; callers
    fall back to an element-wise check when the sum is not finite.
    """
    total = 0.0
    for i in prange(flat.shape[0]):
        total += flat[i]
    return total


# ----------------------------------------------------------------------------------- hashing
# Tiles are flat: row k of a tile lives at [k * TILE, (k + 1) * TILE). Loops index views taken at
# a row (``v = tile[k * TILE:]``) with literal offsets plus the loop counter, so the compiler sees
# constant distances between the rows it reads and writes, and indices it can prove non-negative:
# it vectorises over the tile's rows without aliasing checks (about twice as fast as 2-D indexing).
@njit(cache=True, fastmath=True)
def _project_tile(xt, proj, tile):
    """``tile[f] = sum_k proj[k, f] * xt[k]`` (rows of TILE); dims padded to multiples of 4."""
    dim4, n_func4 = proj.shape
    for f in range(0, n_func4, 4):
        tv = tile[f * TILE:]
        for r in range(TILE):
            tv[r] = 0
            tv[TILE + r] = 0
            tv[2 * TILE + r] = 0
            tv[3 * TILE + r] = 0
        for k in range(0, dim4, 4):
            a00 = proj[k, f]
            a01 = proj[k + 1, f]
            a02 = proj[k + 2, f]
            a03 = proj[k + 3, f]
            a10 = proj[k, f + 1]
            a11 = proj[k + 1, f + 1]
            a12 = proj[k + 2, f + 1]
            a13 = proj[k + 3, f + 1]
            a20 = proj[k, f + 2]
            a21 = proj[k + 1, f + 2]
            a22 = proj[k + 2, f + 2]
            a23 = proj[k + 3, f + 2]
            a30 = proj[k, f + 3]
            a31 = proj[k + 1, f + 3]
            a32 = proj[k + 2, f + 3]
            a33 = proj[k + 3, f + 3]
            xv = xt[k * TILE:]
            for r in range(TILE):
                x0 = xv[r]
                x1 = xv[TILE + r]
                x2 = xv[2 * TILE + r]
                x3 = xv[3 * TILE + r]
                tv[r] += a00 * x0 + a01 * x1 + a02 * x2 + a03 * x3
                tv[TILE + r] += a10 * x0 + a11 * x1 + a12 * x2 + a13 * x3
                tv[2 * TILE + r] += a20 * x0 + a21 * x1 + a22 * x2 + a23 * x3
                tv[3 * TILE + r] += a30 * x0 + a31 * x1 + a32 * x2 + a33 * x3


@njit(cache=True, fastmath=True)
def _linear_codes(tile, offset, mult, z, kind, codes, row0, n_rows, acc):
    """Quantise a projected tile (E2LSH floor or hyperplane sign) and combine per table."""
    n_tables = codes.shape[0]
    zero = np.uint64(0)
    for u in range(n_tables):
        for r in range(TILE):
            acc[r] = zero
        for t in range(z):
            f = u * z + t
            m = mult[f]
            row = tile[f * TILE: (f + 1) * TILE]
            if kind == KIND_E2LSH:
                o = offset[f]
                for r in range(TILE):
                    cell = min(max(np.float64(row[r]) + o, -_CLAMP), _CLAMP)
                    acc[r] += np.uint64(np.int64(np.floor(cell))) * m
            else:
                for r in range(TILE):
                    acc[r] += m if row[r] >= 0 else zero
        out = codes[u, row0: row0 + n_rows]
        for r in range(n_rows):
            out[r] = acc[r]


@njit(cache=True)
def _transpose_into(x, row0, n_rows, flat):
    """``flat[k * TILE + r] = x[row0 + r, k]`` for the tile's rows (padding rows stay as they are)."""
    dim = x.shape[1]
    full = n_rows - n_rows % 4
    for r in range(0, full, 4):  # four source rows at a time: 4 stores per destination row
        a = x[row0 + r]
        b = x[row0 + r + 1]
        c = x[row0 + r + 2]
        d = x[row0 + r + 3]
        for k in range(dim):
            out = flat[k * TILE + r:]
            out[0] = a[k]
            out[1] = b[k]
            out[2] = c[k]
            out[3] = d[k]
    for r in range(full, n_rows):
        src = x[row0 + r]
        for k in range(dim):
            flat[k * TILE + r] = src[k]


# The cross-polytope's tile is flat, row k of the tile at [k * TILE, (k + 1) * TILE): every
# butterfly below is called with a literal stride, so the compiler sees constant distances between
# the rows it reads and writes and vectorises over the tile's rows without aliasing checks.
@njit(cache=True, fastmath=True, inline="always")
def _radix8(w, base, h):
    """In place: the 3 butterfly stages of stride h, 2h, 4h on tile rows base + m h (m < 8)."""
    v = w[base * TILE:]  # a view, so that every index below is a literal offset plus r >= 0
    for r in range(TILE):
        a0 = v[r]
        a1 = v[h * TILE + r]
        a2 = v[2 * h * TILE + r]
        a3 = v[3 * h * TILE + r]
        a4 = v[4 * h * TILE + r]
        a5 = v[5 * h * TILE + r]
        a6 = v[6 * h * TILE + r]
        a7 = v[7 * h * TILE + r]
        b0 = a0 + a1
        b1 = a0 - a1
        b2 = a2 + a3
        b3 = a2 - a3
        b4 = a4 + a5
        b5 = a4 - a5
        b6 = a6 + a7
        b7 = a6 - a7
        c0 = b0 + b2
        c2 = b0 - b2
        c1 = b1 + b3
        c3 = b1 - b3
        c4 = b4 + b6
        c6 = b4 - b6
        c5 = b5 + b7
        c7 = b5 - b7
        v[r] = c0 + c4
        v[4 * h * TILE + r] = c0 - c4
        v[h * TILE + r] = c1 + c5
        v[5 * h * TILE + r] = c1 - c5
        v[2 * h * TILE + r] = c2 + c6
        v[6 * h * TILE + r] = c2 - c6
        v[3 * h * TILE + r] = c3 + c7
        v[7 * h * TILE + r] = c3 - c7


@njit(cache=True, fastmath=True, inline="always")
def _radix8_first(src, dst, base, signs):
    """The first radix-8 pass (stride 1) of a round, reading ``src * signs`` and writing ``dst``."""
    u = src[base * TILE:]
    v = dst[base * TILE:]
    s0 = signs[base]
    s1 = signs[base + 1]
    s2 = signs[base + 2]
    s3 = signs[base + 3]
    s4 = signs[base + 4]
    s5 = signs[base + 5]
    s6 = signs[base + 6]
    s7 = signs[base + 7]
    for r in range(TILE):
        a0 = u[r] * s0
        a1 = u[TILE + r] * s1
        a2 = u[2 * TILE + r] * s2
        a3 = u[3 * TILE + r] * s3
        a4 = u[4 * TILE + r] * s4
        a5 = u[5 * TILE + r] * s5
        a6 = u[6 * TILE + r] * s6
        a7 = u[7 * TILE + r] * s7
        b0 = a0 + a1
        b1 = a0 - a1
        b2 = a2 + a3
        b3 = a2 - a3
        b4 = a4 + a5
        b5 = a4 - a5
        b6 = a6 + a7
        b7 = a6 - a7
        c0 = b0 + b2
        c2 = b0 - b2
        c1 = b1 + b3
        c3 = b1 - b3
        c4 = b4 + b6
        c6 = b4 - b6
        c5 = b5 + b7
        c7 = b5 - b7
        v[r] = c0 + c4
        v[4 * TILE + r] = c0 - c4
        v[TILE + r] = c1 + c5
        v[5 * TILE + r] = c1 - c5
        v[2 * TILE + r] = c2 + c6
        v[6 * TILE + r] = c2 - c6
        v[3 * TILE + r] = c3 + c7
        v[7 * TILE + r] = c3 - c7


@njit(cache=True, fastmath=True, inline="always")
def _radix4(w, base, h):
    v = w[base * TILE:]
    for r in range(TILE):
        a0 = v[r]
        a1 = v[h * TILE + r]
        a2 = v[2 * h * TILE + r]
        a3 = v[3 * h * TILE + r]
        b0 = a0 + a1
        b1 = a0 - a1
        b2 = a2 + a3
        b3 = a2 - a3
        v[r] = b0 + b2
        v[2 * h * TILE + r] = b0 - b2
        v[h * TILE + r] = b1 + b3
        v[3 * h * TILE + r] = b1 - b3


@njit(cache=True, fastmath=True, inline="always")
def _radix2(w, base, h):
    v = w[base * TILE:]
    for r in range(TILE):
        a0 = v[r]
        a1 = v[h * TILE + r]
        v[r] = a0 + a1
        v[h * TILE + r] = a0 - a1


@njit(cache=True, fastmath=True)
def _signed_fht_copy(src, w, dim, signs):
    """``w <- H diag(signs) src``: an unnormalised Walsh-Hadamard transform of the tile's columns.

    ``dim = 2**p <= MAX_PADDED_DIM``. The first pass reads ``src * signs``; the rest is
    :func:`_fht_rest`. (Two entry points, copy and in place, so that each compiles with its
    arrays' aliasing known.)
    """
    if dim >= 8:
        for g in range(dim // 8):
            _radix8_first(src, w, 8 * g, signs)
    else:
        for k in range(dim):
            for r in range(TILE):
                w[k * TILE + r] = src[k * TILE + r] * signs[k]
    _fht_rest(w, dim)


@njit(cache=True, fastmath=True)
def _signed_fht_inplace(w, dim, signs):
    """``w <- H diag(signs) w`` (see :func:`_signed_fht_copy`)."""
    if dim >= 8:
        for g in range(dim // 8):
            _radix8_first(w, w, 8 * g, signs)
    else:
        for k in range(dim):
            for r in range(TILE):
                w[k * TILE + r] *= signs[k]
    _fht_rest(w, dim)


@njit(cache=True, fastmath=True)
def _fht_rest(w, dim):
    """The Walsh-Hadamard passes after the first (strides 8, 64, ... then a last factor 2 or 4)."""
    # the strides must be literals for the compiler: each pass is written out
    if dim >= 64:
        for i in range(dim // 64):
            for j in range(8):
                _radix8(w, 64 * i + j, 8)
    if dim >= 512:
        for i in range(dim // 512):
            for j in range(64):
                _radix8(w, 512 * i + j, 64)
    if dim >= 4096:
        for i in range(dim // 4096):
            for j in range(512):
                _radix8(w, 4096 * i + j, 512)
    if dim >= 32768:
        for j in range(4096):
            _radix8(w, j, 4096)
    rest = dim
    while rest >= 8:
        rest //= 8
    # the remaining factor 2 or 4, at stride dim / rest (a literal in each branch)
    if rest == 2:
        if dim == 2:
            _radix2(w, 0, 1)
        elif dim == 16:
            for j in range(8):
                _radix2(w, j, 8)
        elif dim == 128:
            for j in range(64):
                _radix2(w, j, 64)
        elif dim == 1024:
            for j in range(512):
                _radix2(w, j, 512)
        elif dim == 8192:
            for j in range(4096):
                _radix2(w, j, 4096)
    elif rest == 4:
        if dim == 4:
            _radix4(w, 0, 1)
        elif dim == 32:
            for j in range(8):
                _radix4(w, j, 8)
        elif dim == 256:
            for j in range(64):
                _radix4(w, j, 64)
        elif dim == 2048:
            for j in range(512):
                _radix4(w, j, 512)
        elif dim == 16384:
            for j in range(4096):
                _radix4(w, j, 4096)


MAX_PADDED_DIM = 2**15
"""Largest cross-polytope dimension D (rows are padded to D = 2**ceil(log2 dim))."""


@njit(cache=True, fastmath=True)
def _cross_polytope_codes(xt, signs, mult, z, codes, row0, n_rows, work, best_abs, best, best_index, acc):
    """Rotate the tile by ``H D_R ... H D_1`` per function, take the nearest signed basis vector."""
    rounds, dim = signs.shape[1], signs.shape[2]
    n_tables = codes.shape[0]
    zero = np.uint64(0)
    for u in range(n_tables):
        for r in range(TILE):
            acc[r] = zero
        for t in range(z):
            f = u * z + t
            _signed_fht_copy(xt, work, dim, signs[f, 0])
            for rnd in range(1, rounds):
                _signed_fht_inplace(work, dim, signs[f, rnd])
            for r in range(TILE):
                best_abs[r] = -1.0
            for k in range(dim):  # strict >: the first index wins ties
                row = work[k * TILE: (k + 1) * TILE]
                for r in range(TILE):
                    y = row[r]
                    if abs(y) > best_abs[r]:
                        best_abs[r] = abs(y)
                        best[r] = y
                        best_index[r] = k
            m = mult[f]
            for r in range(TILE):
                h = 2 * best_index[r] + (1 if best[r] < 0 else 0)
                acc[r] += np.uint64(h) * m
        for r in range(n_rows):
            codes[u, row0 + r] = acc[r]


@njit(parallel=True, cache=True)
def hash_codes(x, kind, proj, offset, signs, mult, z, codes, n_threads):
    """Write ``codes[u, i]`` = the combined code of row ``x[i]`` in table ``u``.

    ``x`` is (N, d). Linear kinds use ``proj`` (d4, F4) -- d and F padded with zeros to
    multiples of 4 -- and ``offset`` (F4,) float64 (E2LSH cell offsets; unused for hyperplanes).
    The cross-polytope uses ``signs`` (F, rounds, D) with D the power of two >= d. ``mult`` (F,)
    holds odd uint64 multipliers, F = z * T for the T rows of ``codes``. Rows are split into
    ``4 * n_threads`` chunks (each row's code is independent of the split).
    """
    n, dim = x.shape
    n_tiles = (n + TILE - 1) // TILE
    n_chunks = min(n_tiles, 4 * n_threads)
    if n_chunks == 0:
        return
    per_chunk = (n_tiles + n_chunks - 1) // n_chunks
    if kind == KIND_CROSS_POLYTOPE:
        padded = signs.shape[2]
    else:
        padded = proj.shape[0]
    for chunk in prange(n_chunks):
        acc = np.empty(TILE, dtype=np.uint64)
        xt = np.zeros(padded * TILE, dtype=x.dtype)
        if kind == KIND_CROSS_POLYTOPE:
            work = np.empty(padded * TILE, dtype=x.dtype)
            best_abs = np.empty(TILE, dtype=x.dtype)
            best = np.empty(TILE, dtype=x.dtype)
            best_index = np.empty(TILE, dtype=np.int64)
        else:
            tile = np.empty(proj.shape[1] * TILE, dtype=x.dtype)
        for tile_index in range(chunk * per_chunk, min(n_tiles, (chunk + 1) * per_chunk)):
            row0 = tile_index * TILE
            n_rows = min(n, row0 + TILE) - row0
            _transpose_into(x, row0, n_rows, xt)
            if kind == KIND_CROSS_POLYTOPE:
                _cross_polytope_codes(xt, signs, mult, z, codes, row0, n_rows, work, best_abs, best,
                                      best_index, acc)
            else:
                _project_tile(xt, proj, tile)
                _linear_codes(tile, offset, mult, z, kind, codes, row0, n_rows, acc)


# ----------------------------------------------------------------------------------- buckets
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


@njit(parallel=True, cache=True)
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


@njit(parallel=True, cache=True)
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
                if j + _PREFETCH_AHEAD < n_keys and ids[j + _PREFETCH_AHEAD] >= 0:
                    _prefetch_row(vsum, start + ids[j + _PREFETCH_AHEAD])  # random rows: hide latency
                b = ids[j]
                if b >= 0:
                    bcount[start + b] += 1
                    _add_row(vsum[start + b], v[j])


@njit(cache=True, fastmath=True, inline="always")
def _add_row(dst, src):
    for c in range(dst.shape[0]):
        dst[c] += src[c]


@njit(parallel=True, cache=True)
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
                    if i + _PREFETCH_AHEAD < size and ids[i + _PREFETCH_AHEAD] >= 0:
                        _prefetch_row(vsum, start + ids[i + _PREFETCH_AHEAD])
                    b = ids[i]
                    if b >= 0:
                        totals[i] += bcount[start + b]
                        _add_row(rows[i], vsum[start + b])
                    elif b <= SINGLE_KEY:
                        totals[i] += 1
                        _add_row(rows[i], v[SINGLE_KEY - b])
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


SINGLE_KEY = -2
"""Query bucket ids ``<= SINGLE_KEY`` name a bucket holding one key j, encoded ``SINGLE_KEY - j``."""


@njit(parallel=True, cache=True)
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


@njit(parallel=True, cache=True)
def causal_segment_sums(v, bucket_of, bucket_start, segment_bounds, seg_vsum, seg_count):
    """Per position segment s: the bucket sums of the keys in that segment (all run tables)."""
    n_tables = bucket_of.shape[0]
    for s in prange(segment_bounds.shape[0] - 1):
        for j in range(segment_bounds[s], segment_bounds[s + 1]):
            for u in range(n_tables):
                b = bucket_of[u, j]
                if b >= 0:
                    seg_count[s, bucket_start[u] + b] += 1
                    _add_row(seg_vsum[s, bucket_start[u] + b], v[j])


@njit(parallel=True, cache=True)
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
                    _add_row(running[bucket_start[u] + b], v[t])
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
                    _add_row(row, running[bucket_start[u] + b])
                elif b <= SINGLE_KEY and SINGLE_KEY - b <= t:  # a one-key bucket, key already seen
                    total += 1
                    _add_row(row, v[SINGLE_KEY - b])
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


@njit(parallel=True, cache=True)
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
