"""Hashing building blocks: row tiles, linear projections, fast Walsh-Hadamard transforms.

Each family's own kernel (in :mod:`anna.lsh`) chains these. Rows are processed in tiles of
``TILE`` rows, transposed so that the tile's rows are the fast axis (and stored flat, see
:func:`project_tile`): the projections of a tile are a register-blocked product (4 functions x 4
coordinates per step, rows vectorised), and the cross-polytope's fast Walsh-Hadamard transforms
are radix-8 butterflies over whole tile rows, the random signs fused into each round's first
pass. A family's kernel parallelises over chunks of tiles (:func:`tile_chunks`), and
:func:`run_hash_kernel` calls it with the output and the thread count. Performance notes were
measured on the project's 2-core AMD EPYC (Zen 4) machine.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import njit

from .common import threads_for

__all__ = [
    "TILE",
    "MAX_PADDED_DIM",
    "tile_chunks",
    "load_tile",
    "transpose_into",
    "project_tile",
    "signed_fht_copy",
    "signed_fht_inplace",
    "run_hash_kernel",
    "projection_matrix",
]

TILE = 64
"""Rows per hashing tile (a multiple of 16 so that a tile row is whole SIMD registers)."""

MAX_PADDED_DIM = 2**15
"""Largest Walsh-Hadamard (cross-polytope) dimension D (rows are padded to D = 2**ceil(log2 dim))."""


def run_hash_kernel(kernel, x: np.ndarray, args: tuple, ell: int, work_per_row: int) -> np.ndarray:
    """``kernel(x, *args, codes, n_threads)`` into fresh codes (ell, N) uint64; one thread when
    ``N * work_per_row`` is small (see :func:`~anna.kernels.common.threads_for`)."""
    codes = np.empty((ell, x.shape[0]), dtype=np.uint64)
    with threads_for(x.shape[0] * work_per_row):
        kernel(x, *args, codes, numba.get_num_threads())
    return codes


# ----------------------------------------------------------------------------------- tiles
@njit(cache=True, inline="always")
def tile_chunks(n, n_threads):
    """(tiles, chunks, tiles per chunk) for ``n`` rows split into ``4 * n_threads`` chunks at most
    (each row's code is independent of the split)."""
    n_tiles = (n + TILE - 1) // TILE
    n_chunks = min(n_tiles, 4 * n_threads)
    per_chunk = (n_tiles + n_chunks - 1) // n_chunks if n_chunks > 0 else 0
    return n_tiles, n_chunks, per_chunk


@njit(cache=True, inline="always")
def load_tile(x, tile_index, flat):
    """Transpose tile ``tile_index`` of ``x`` into ``flat``; returns (first row, rows in the tile)."""
    row0 = tile_index * TILE
    n_rows = min(x.shape[0], row0 + TILE) - row0
    transpose_into(x, row0, n_rows, flat)
    return row0, n_rows


# Tiles are flat: row k of a tile lives at [k * TILE, (k + 1) * TILE). Loops index views taken at
# a row (``v = tile[k * TILE:]``) with literal offsets plus the loop counter, so the compiler sees
# constant distances between the rows it reads and writes, and indices it can prove non-negative:
# it vectorises over the tile's rows without aliasing checks (about twice as fast as 2-D indexing).
@njit(cache=True, fastmath=True)
def project_tile(xt, proj, tile):
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


@njit(cache=True)
def transpose_into(x, row0, n_rows, flat):
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


# ------------------------------------------------------------------------ Walsh-Hadamard
# The Walsh-Hadamard tile is flat, row k of the tile at [k * TILE, (k + 1) * TILE): every
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
def signed_fht_copy(src, w, dim, signs):
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
def signed_fht_inplace(w, dim, signs):
    """``w <- H diag(signs) w`` (see :func:`signed_fht_copy`)."""
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



def projection_matrix(directions: np.ndarray, scale: float, dtype: np.dtype) -> np.ndarray:
    """The (d4, F4) matrix :func:`project_tile` takes: ``directions`` (ell, z, dim) divided by
    ``scale``, one column per function (F = ell z), both sides zero-padded to multiples of 4."""
    ell, z, dim = directions.shape
    n_func = ell * z
    proj = np.zeros((_pad4(dim), _pad4(n_func)), dtype=dtype)
    proj[:dim, :n_func] = directions.reshape(n_func, dim).T / scale
    return proj


def _pad4(n: int) -> int:
    return (n + 3) // 4 * 4
