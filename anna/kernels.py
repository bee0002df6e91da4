"""numba kernels behind :mod:`anna.lsh` and :mod:`anna.attention`.

Three groups, each a handful of small kernels that the Python layer chains:

* **hashing** -- :func:`hash_codes` turns rows into one ``uint64`` code per table. Rows are
  processed in tiles of ``TILE`` rows, transposed so that the tile's rows are the fast axis:
  the projections of a tile are then a register-blocked product (4 functions x 4 coordinates
  per step, rows vectorised), and the cross-polytope's fast Hadamard transforms are radix-8
  butterflies over whole rows of the tile. The ``z`` per-function values of a table are combined
  as ``sum_t h_t * mult_t (mod 2**64)`` with random odd multipliers drawn from the seed.
* **buckets** -- :func:`build_buckets` maps key codes to dense bucket ids per table (a growable
  open-addressing table, linear probing, Fibonacci slot hashing), :func:`fill_tables` lays the
  final tables out flat, and :func:`lookup_buckets` maps query codes to those ids.
* **sums** -- :func:`bucket_sums` adds each key's value row into its bucket in every table of a
  run, :func:`gather_sums` adds, for every query, the sums and counts of its buckets
  (Algorithm 1's ``sum vsum / sum count``); :func:`causal_segment_sums` and :func:`causal_scan`
  do the same with the prefix restriction ``j <= i`` in linear time.

Bucket sums, running sums and counts are kept in float64 / int64 whatever the input dtype, and
every sum is taken in a fixed order (keys by index within a table, tables by index within a
query), so results do not depend on the number of threads.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numba
import numpy as np
from numba import njit, prange

__all__ = [
    "PARALLEL_WORK",
    "threads_for",
    "TILE",
    "KIND_E2LSH",
    "KIND_HYPERPLANE",
    "KIND_CROSS_POLYTOPE",
    "MAX_PADDED_DIM",
    "hash_codes",
    "build_buckets",
    "fill_tables",
    "lookup_buckets",
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


@njit(cache=True, fastmath=True, inline="always")
def _signed_fht(src, w, dim, signs):
    """``w <- H diag(signs) src``: unnormalised Walsh-Hadamard transform of the tile's columns.

    ``dim = 2**p <= MAX_PADDED_DIM``; ``src`` may be ``w`` (inlined, so the compiler knows).
    """
    # radix-8 passes at strides 1, 8, 64, ... (written out: the strides must be literals)
    if dim >= 8:
        for g in range(dim // 8):
            _radix8_first(src, w, 8 * g, signs)
    else:
        for k in range(dim):
            for r in range(TILE):
                w[k * TILE + r] = src[k * TILE + r] * signs[k]
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
            _signed_fht(xt, work, dim, signs[f, 0])
            for rnd in range(1, rounds):
                _signed_fht(work, work, dim, signs[f, rnd])
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
@njit(cache=True)
def _slot(code, bits):
    """Fibonacci hashing: the top ``bits`` bits of ``code * 0x9E37...``."""
    return np.int64((code * _FIBONACCI) >> np.uint64(64 - bits))


@njit(cache=True)
def _grow(slot_code, slot_id, bits):
    """Double an open-addressing table (linear probing), keeping every (code, id)."""
    new_bits = bits + 1
    new_code = np.empty(slot_code.shape[0] * 2, dtype=np.uint64)
    new_id = np.full(slot_code.shape[0] * 2, -1, dtype=np.int32)
    mask = new_code.shape[0] - 1
    for s in range(slot_code.shape[0]):
        if slot_id[s] >= 0:
            t = _slot(slot_code[s], new_bits)
            while new_id[t] >= 0:
                t = (t + 1) & mask
            new_code[t] = slot_code[s]
            new_id[t] = slot_id[s]
    return new_code, new_id, new_bits


@njit(parallel=True, cache=True)
def build_buckets(codes, bucket_of, first_member, n_buckets):
    """Per table: number the distinct codes in first-seen order.

    Writes ``bucket_of[u, j]`` (the bucket id of key j), ``first_member[u, b]`` (the first key of
    bucket b) and ``n_buckets[u]``. One table per task; each keeps a growable hash table.
    """
    n_tables, n = codes.shape
    for u in prange(n_tables):
        bits = 4
        while (1 << bits) < 2 * n and bits < 12:
            bits += 1
        slot_code = np.empty(1 << bits, dtype=np.uint64)
        slot_id = np.full(1 << bits, -1, dtype=np.int32)
        count = 0
        for j in range(n):
            c = codes[u, j]
            mask = (1 << bits) - 1
            s = _slot(c, bits)
            while True:
                b = slot_id[s]
                if b < 0:
                    b = count
                    slot_id[s] = b
                    slot_code[s] = c
                    first_member[u, b] = j
                    count += 1
                    if 2 * count > (1 << bits):
                        slot_code, slot_id, bits = _grow(slot_code, slot_id, bits)
                    break
                if slot_code[s] == c:
                    break
                s = (s + 1) & mask
            bucket_of[u, j] = b
        n_buckets[u] = count


@njit(parallel=True, cache=True)
def fill_tables(codes, first_member, n_buckets, slot_start, slot_bits, slot_code, slot_id):
    """Insert every table's distinct codes into its part of flat open-addressing arrays.

    Table u owns ``slot_code/slot_id[slot_start[u] : slot_start[u] + 2**slot_bits[u]]``;
    ``slot_id`` must arrive filled with -1.
    """
    n_tables = codes.shape[0]
    for u in prange(n_tables):
        base = slot_start[u]
        bits = slot_bits[u]
        mask = (1 << bits) - 1
        for b in range(n_buckets[u]):
            c = codes[u, first_member[u, b]]
            s = _slot(c, bits)
            while slot_id[base + s] >= 0:
                s = (s + 1) & mask
            slot_code[base + s] = c
            slot_id[base + s] = b


@njit(parallel=True, cache=True)
def lookup_buckets(query_codes, slot_start, slot_bits, slot_code, slot_id, bucket_of_query):
    """``bucket_of_query[u, i]`` = the key bucket of query code ``query_codes[u, i]``, or -1."""
    n_tables, n = query_codes.shape
    block = 1024
    for blk in prange((n + block - 1) // block):
        lo = blk * block
        hi = min(n, lo + block)
        for u in range(n_tables):
            base = slot_start[u]
            bits = slot_bits[u]
            mask = (1 << bits) - 1
            for i in range(lo, hi):
                c = query_codes[u, i]
                s = _slot(c, bits)
                found = -1
                while True:
                    b = slot_id[base + s]
                    if b < 0:
                        break
                    if slot_code[base + s] == c:
                        found = b
                        break
                    s = (s + 1) & mask
                bucket_of_query[u, i] = found


# -------------------------------------------------------------------------------------- sums
@njit(parallel=True, cache=True)
def bucket_sums(v, bucket_of, bucket_start, lane_bounds, vsum, bcount):
    """Add every key's value row and a 1 into its bucket, in every table of a run.

    ``bucket_of`` (T_run, N_k) holds bucket ids per table, table u's buckets live at rows
    ``bucket_start[u] + id`` of ``vsum`` (B, d_v) float64 / ``bcount`` (B,) int64, which must
    arrive zeroed. Tables are split into lanes by ``lane_bounds``; a lane walks the keys in
    blocks and visits its tables per block, so values are read from memory once per lane. Keys
    are added in index order in every bucket, whatever the number of lanes.
    """
    n_keys = v.shape[0]
    block = 2048
    for lane in prange(lane_bounds.shape[0] - 1):
        for lo in range(0, n_keys, block):
            hi = min(n_keys, lo + block)
            for u in range(lane_bounds[lane], lane_bounds[lane + 1]):
                start = bucket_start[u]
                ids = bucket_of[u, lo:hi]
                for j in range(hi - lo):
                    b = start + ids[j]
                    bcount[b] += 1
                    _add_row(vsum[b], v[lo + j])


@njit(cache=True, fastmath=True, inline="always")
def _add_row(dst, src):
    for c in range(dst.shape[0]):
        dst[c] += src[c]


@njit(parallel=True, cache=True)
def gather_sums(bucket_of_query, bucket_start, vsum, bcount, acc, counts, out, first, last):
    """Add the sums and counts of each query's buckets over the tables of a run.

    Queries go in blocks whose float64 running sums stay in cache; within a block the tables
    are visited one at a time (their bucket rows are then a small, hot working set). ``vsum``
    may be float32 (the rounded float64 bucket sums) to halve that working set. With ``first
    and last`` (a single run) the result goes straight to ``out`` / ``counts``; otherwise ``acc``
    (N_q, d_v) float64 / ``counts`` carry running sums across runs (Algorithm 2) and ``last``
    divides into ``out``. Queries with count 0 get a zero row. Per query, tables are added in
    order, whatever the blocking.
    """
    n_tables, n = bucket_of_query.shape
    dim_v = vsum.shape[1]
    block = 512
    n_blocks = (n + block - 1) // block
    for blk in prange(n_blocks):
        lo = blk * block
        size = min(n, lo + block) - lo
        rows = np.empty((size, dim_v), dtype=np.float64)
        totals = np.empty(size, dtype=np.int64)
        if first:
            rows[:] = 0.0
            totals[:] = 0
        else:
            for i in range(size):
                totals[i] = counts[lo + i]
                rows[i] = acc[lo + i]
        for u in range(n_tables):
            start = bucket_start[u]
            ids = bucket_of_query[u, lo: lo + size]
            for i in range(size):
                b = ids[i]
                if b >= 0:
                    totals[i] += bcount[start + b]
                    _add_row(rows[i], vsum[start + b])
        for i in range(size):
            counts[lo + i] = totals[i]
            if last:
                target = out[lo + i]
                if totals[i] > 0:
                    inverse = 1.0 / totals[i]
                    for c in range(dim_v):
                        target[c] = rows[i, c] * inverse
                else:
                    for c in range(dim_v):
                        target[c] = 0.0
            else:
                acc[lo + i] = rows[i]


@njit(parallel=True, cache=True)
def causal_segment_sums(v, bucket_of, bucket_start, segment_bounds, seg_vsum, seg_count):
    """Per position segment s: the bucket sums of the keys in that segment (all run tables)."""
    n_tables = bucket_of.shape[0]
    dim_v = v.shape[1]
    for s in prange(segment_bounds.shape[0] - 1):
        for j in range(segment_bounds[s], segment_bounds[s + 1]):
            for u in range(n_tables):
                b = bucket_start[u] + bucket_of[u, j]
                seg_count[s, b] += 1
                for c in range(dim_v):
                    seg_vsum[s, b, c] += v[j, c]


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
                b = bucket_start[u] + bucket_of[u, t]
                running_count[b] += 1
                for c in range(dim_v):
                    running[b, c] += v[t, c]
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
                    b += bucket_start[u]
                    total += running_count[b]
                    for c in range(dim_v):
                        row[c] += running[b, c]
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
