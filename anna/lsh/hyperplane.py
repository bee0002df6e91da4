"""Random-hyperplane LSH (Charikar 2002): ``h(x) = [a.x >= 0]``; angular, collision ``1 - theta/pi``.

Examples
--------
>>> import numpy as np
>>> fam = Hyperplane()
>>> params = fam.sample(dim=3, z=2, ell=4, seed=1)
>>> x = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])     # same direction: same codes
>>> bool((fam.hash(x, params)[0] == fam.hash(x, params)[1]).all())
True
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from numba import njit, prange, types

from ..kernels.common import array, typed_kernel
from ..kernels.hashing import TILE, load_tile, project_tile, projection_matrix, run_hash_kernel, tile_chunks
from .base import STREAM_DIRECTIONS, FamilyBase, TableParams, check_distance, multipliers, register_family, stream

__all__ = ["Hyperplane", "HyperplaneParams", "hyperplane_codes"]


@dataclass(frozen=True, eq=False)
class HyperplaneParams(TableParams):
    """Sampled hyperplane tables: ``directions`` (ell, z, dim) ~ N(0, 1)."""

    directions: np.ndarray = field(default=None, repr=False)

    def check(self) -> None:
        self.check_shape("directions", (self.ell, self.z, self.dim))


@njit(cache=True, fastmath=True)
def _sign_codes(tile, mult, z, codes, row0, n_rows, acc):
    """Take the signs of a projected tile and combine each table's ``z`` bits into its code."""
    n_tables = codes.shape[0]
    zero = np.uint64(0)
    for u in range(n_tables):
        for r in range(TILE):
            acc[r] = zero
        for t in range(z):
            f = u * z + t
            m = mult[f]
            row = tile[f * TILE: (f + 1) * TILE]
            for r in range(TILE):
                acc[r] += m if row[r] >= 0 else zero
        out = codes[u, row0: row0 + n_rows]
        for r in range(n_rows):
            out[r] = acc[r]


@typed_kernel(lambda dtype: (array(dtype, 2, readonly=True), array(dtype, 2, readonly=True),
                             array(types.uint64, 1, readonly=True), types.int64, array(types.uint64, 2), types.int64),
              parallel=True)
def hyperplane_codes(x, proj, mult, z, codes, n_threads):
    """``codes[u, i]`` = table u's code of row ``x[i]``; ``proj`` (d4, F4) holds the normals
    (:func:`~anna.kernels.hashing.projection_matrix`), ``mult`` (F,) the odd multipliers."""
    n_tiles, n_chunks, per_chunk = tile_chunks(x.shape[0], n_threads)
    for chunk in prange(n_chunks):
        acc = np.empty(TILE, dtype=np.uint64)
        xt = np.zeros(proj.shape[0] * TILE, dtype=x.dtype)
        tile = np.empty(proj.shape[1] * TILE, dtype=x.dtype)
        for tile_index in range(chunk * per_chunk, min(n_tiles, (chunk + 1) * per_chunk)):
            row0, n_rows = load_tile(x, tile_index, xt)
            project_tile(xt, proj, tile)
            _sign_codes(tile, mult, z, codes, row0, n_rows, acc)


@register_family
@dataclass(frozen=True)
class Hyperplane(FamilyBase):
    """Random-hyperplane LSH for angles: ``h(x) = [a.x >= 0]``, collision ``1 - theta / pi``.

    Only directions matter; the zero row hashes to all ones.

    Examples
    --------
    >>> round(Hyperplane().collision_probability(2 ** 0.5), 12)   # orthogonal unit vectors
    0.5
    """

    key: ClassVar[str] = "hyperplane"
    angular: ClassVar[bool] = True
    params_type: ClassVar[type] = HyperplaneParams

    def draw_params(self, dim: int, z: int, ell: int, seed: int) -> HyperplaneParams:
        """``ell`` tables of ``z`` hyperplanes through the origin (normals ~ N(0, I))."""
        directions = stream(seed, STREAM_DIRECTIONS).standard_normal((ell, z, dim))
        return HyperplaneParams(dim, z, ell, multipliers(seed, ell, z), directions)

    def table_codes(self, x: np.ndarray, params: HyperplaneParams) -> np.ndarray:
        """Codes (ell, N) by :func:`hyperplane_codes`; projections run in ``x``'s dtype."""
        proj = projection_matrix(params.directions, 1.0, x.dtype)
        mult = np.ascontiguousarray(params.multipliers.reshape(-1))
        return run_hash_kernel(hyperplane_codes, x, (proj, mult, params.z), params.ell, proj.size)

    def hash_functions(self, x: np.ndarray, params: HyperplaneParams) -> np.ndarray:
        """Reference (plain numpy, float64): every function's bit, (N, ell, z) int64."""
        x = self.check_rows(x, params).astype(np.float64)
        return (np.einsum("nd,lzd->nlz", x, params.directions) >= 0).astype(np.int64)

    def boundary_margins(self, x: np.ndarray, params: HyperplaneParams) -> np.ndarray:
        """``|a.x| / (|a| |x|)``: the cosine between the row and the hyperplane's normal."""
        x = self.check_rows(x, params).astype(np.float64)
        proj = np.einsum("nd,lzd->nlz", x, params.directions)
        size = np.linalg.norm(x, axis=1)[:, None, None] * np.linalg.norm(params.directions, axis=2)[None]
        return np.abs(proj) / (size + 1e-300)

    def collision_probability(self, distance: float, *, dim: int | None = None) -> float:
        """``1 - theta / pi`` for unit vectors at chord ``distance`` (theta = 2 asin(distance / 2))."""
        distance = check_distance(distance, angular=True)
        return 1.0 - 2.0 * math.asin(distance / 2.0) / math.pi
