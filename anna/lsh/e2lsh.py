"""E2LSH (p-stable LSH, Datar et al. 2004): ``h(x) = floor((a.x + b) / w)`` for Euclidean distance.

``a ~ N(0, I)``, ``b ~ U[0, w)``; ``rho ~ 1/c`` (docs/theory.md §3).

Examples
--------
>>> import numpy as np
>>> fam = E2LSH(width=4.0)
>>> params = fam.sample(dim=8, z=2, ell=3, seed=0)
>>> x = np.random.default_rng(0).standard_normal((5, 8))
>>> codes = fam.hash(x, params)
>>> codes.shape, codes.dtype
((5, 3), dtype('uint64'))
>>> bool((fam.hash(x, params) == codes).all())
True
>>> round(fam.collision_probability(1.0), 4)
0.8005
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from numba import njit, prange, types

from ..kernels.common import array, typed_kernel
from ..kernels.hashing import TILE, load_tile, project_tile, projection_matrix, run_hash_kernel, tile_chunks
from .base import (STREAM_DIRECTIONS, STREAM_OFFSETS, FamilyBase, TableParams, check_distance,
                   check_positive_float, multipliers, register_family, stream)

__all__ = ["E2LSH", "E2LSHParams", "e2lsh_codes"]

_CLAMP = 4.0e18  # cell indices are clamped to +-4e18 (< 2**62) before the int64 cast


@dataclass(frozen=True, eq=False)
class E2LSHParams(TableParams):
    """Sampled E2LSH tables: ``directions`` (ell, z, dim) ~ N(0, 1), ``offsets`` (ell, z) in [0, w)."""

    width: float = 4.0
    directions: np.ndarray = field(default=None, repr=False)
    offsets: np.ndarray = field(default=None, repr=False)

    def check(self) -> None:
        check_positive_float("width", self.width)
        self.check_shape("directions", (self.ell, self.z, self.dim))
        self.check_shape("offsets", (self.ell, self.z))


@njit(cache=True, fastmath=True)
def _cell_codes(tile, offset, mult, z, codes, row0, n_rows, acc):
    """Floor a projected tile into cells and combine each table's ``z`` cells into its code."""
    n_tables = codes.shape[0]
    zero = np.uint64(0)
    for u in range(n_tables):
        for r in range(TILE):
            acc[r] = zero
        for t in range(z):
            f = u * z + t
            m = mult[f]
            o = offset[f]
            row = tile[f * TILE: (f + 1) * TILE]
            for r in range(TILE):
                cell = min(max(np.float64(row[r]) + o, -_CLAMP), _CLAMP)
                acc[r] += np.uint64(np.int64(np.floor(cell))) * m
        out = codes[u, row0: row0 + n_rows]
        for r in range(n_rows):
            out[r] = acc[r]


@typed_kernel(lambda dtype: (array(dtype, 2, readonly=True), array(dtype, 2, readonly=True),
                             array(types.float64, 1, readonly=True), array(types.uint64, 1, readonly=True),
                             types.int64, array(types.uint64, 2), types.int64), parallel=True)
def e2lsh_codes(x, proj, offset, mult, z, codes, n_threads):
    """``codes[u, i]`` = table u's code of row ``x[i]``.

    ``proj`` (d4, F4) holds ``a / w`` per function (:func:`~anna.kernels.hashing.projection_matrix`),
    ``offset`` (F4,) ``b / w``, ``mult`` (F,) the odd multipliers, F = z * (rows of ``codes``).
    """
    n_tiles, n_chunks, per_chunk = tile_chunks(x.shape[0], n_threads)
    for chunk in prange(n_chunks):
        acc = np.empty(TILE, dtype=np.uint64)
        xt = np.zeros(proj.shape[0] * TILE, dtype=x.dtype)
        tile = np.empty(proj.shape[1] * TILE, dtype=x.dtype)
        for tile_index in range(chunk * per_chunk, min(n_tiles, (chunk + 1) * per_chunk)):
            row0, n_rows = load_tile(x, tile_index, xt)
            project_tile(xt, proj, tile)
            _cell_codes(tile, offset, mult, z, codes, row0, n_rows, acc)


@register_family
@dataclass(frozen=True)
class E2LSH(FamilyBase):
    """p-stable LSH for Euclidean distance: ``h(x) = floor((a.x + b) / width)``.

    Parameters
    ----------
    width : float
        Cell width ``w`` (default 4.0, Datar et al.'s recommendation).

    Examples
    --------
    >>> fam = E2LSH(4.0)
    >>> fam.name
    'e2lsh(width=4)'
    >>> round(fam.collision_probability(4.0), 4)
    0.3687
    """

    width: float = 4.0
    key: ClassVar[str] = "e2lsh"
    angular: ClassVar[bool] = False
    params_type: ClassVar[type] = E2LSHParams

    def __post_init__(self) -> None:
        object.__setattr__(self, "width", check_positive_float("width", self.width))

    @classmethod
    def examples(cls) -> tuple:
        return (cls(0.5), cls(2.0), cls(4.0))

    def draw_params(self, dim: int, z: int, ell: int, seed: int) -> E2LSHParams:
        """Directions and offsets from their own streams (see :mod:`anna.lsh.base`, *Seeds*)."""
        directions = stream(seed, STREAM_DIRECTIONS).standard_normal((ell, z, dim))
        offsets = stream(seed, STREAM_OFFSETS).uniform(0.0, self.width, size=(ell, z))
        return E2LSHParams(dim, z, ell, multipliers(seed, ell, z), self.width, directions, offsets)

    def table_codes(self, x: np.ndarray, params: E2LSHParams) -> np.ndarray:
        """Codes (ell, N) by :func:`e2lsh_codes`; projections run in ``x``'s dtype."""
        proj = projection_matrix(params.directions, self.width, x.dtype)
        offset = np.zeros(proj.shape[1], dtype=np.float64)
        offset[: params.ell * params.z] = params.offsets.reshape(-1) / self.width
        mult = np.ascontiguousarray(params.multipliers.reshape(-1))
        return run_hash_kernel(e2lsh_codes, x, (proj, offset, mult, params.z), params.ell, proj.size)

    def hash_functions(self, x: np.ndarray, params: E2LSHParams) -> np.ndarray:
        """Reference (plain numpy, float64): every function's value, (N, ell, z) int64."""
        x = self.check_rows(x, params).astype(np.float64)
        proj = np.einsum("nd,lzd->nlz", x, params.directions)
        return np.floor((proj + params.offsets[None]) / self.width).astype(np.int64)

    def boundary_margins(self, x: np.ndarray, params: E2LSHParams) -> np.ndarray:
        """Distance of ``(a.x + b) / w`` to the nearest integer, relative to the terms' size."""
        x = self.check_rows(x, params).astype(np.float64)
        proj = np.einsum("nd,lzd->nlz", x, params.directions)
        size = np.linalg.norm(x, axis=1)[:, None, None] * np.linalg.norm(params.directions, axis=2)[None]
        cells = (proj + params.offsets[None]) / self.width
        return np.abs(cells - np.round(cells)) / (size / self.width + params.offsets[None] / self.width + 1.0)

    def collision_probability(self, distance: float, *, dim: int | None = None) -> float:
        """Probability that one function collides on two points at Euclidean ``distance``.

        Datar et al. (2004): with ``t = w / distance``,
        ``p = 1 - 2 Phi(-t) - 2 / (sqrt(2 pi) t) * (1 - exp(-t**2 / 2))``; ``p(0) = 1``.
        ``dim`` is accepted for a uniform interface and ignored.
        """
        distance = check_distance(distance, angular=False)
        if distance == 0.0:
            return 1.0
        t = self.width / distance
        normal_tail = 0.5 * math.erfc(t / math.sqrt(2.0))
        return 1.0 - 2.0 * normal_tail - 2.0 / (math.sqrt(2.0 * math.pi) * t) * (1.0 - math.exp(-t * t / 2.0))
