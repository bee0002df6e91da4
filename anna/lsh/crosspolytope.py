"""Cross-polytope LSH (Andoni et al. 2015): rotate by ``H D_r ... H D_1``, take the nearest ``+-e_i``.

``H`` is the Walsh-Hadamard matrix and ``D_i`` random signs; angular (docs/theory.md §3).

Examples
--------
>>> import numpy as np
>>> fam = CrossPolytope()
>>> params = fam.sample(dim=5, z=1, ell=2, seed=0)
>>> params.padded_dim, params.signs.shape
(8, (2, 1, 3, 8))
>>> x = np.random.default_rng(1).standard_normal((3, 5))
>>> bool((fam.hash(x, params) == fam.hash(2.0 * x, params)).all())   # only directions matter
True
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import ClassVar

import numpy as np
from numba import njit, prange, types

from ..errors import ParameterError, ShapeError
from ..kernels.common import array, typed_kernel
from ..kernels.hashing import (MAX_PADDED_DIM, TILE, load_tile, run_hash_kernel, signed_fht_copy,
                               signed_fht_inplace, tile_chunks)
from .base import (STREAM_SIGNS, FamilyBase, TableParams, check_distance, check_positive_int, multipliers,
                   register_family)

__all__ = ["CrossPolytope", "CrossPolytopeParams", "cross_polytope_codes", "padded_power_of_two"]


def padded_power_of_two(dim: int) -> int:
    """D = 2**ceil(log2 dim), the length rows are zero-padded to before rotating."""
    return 1 << max(0, (int(dim) - 1).bit_length())


@dataclass(frozen=True, eq=False)
class CrossPolytopeParams(TableParams):
    """Sampled cross-polytope tables: ``signs`` (ell, z, rotations, D) of +-1, D = 2**ceil(log2 dim)."""

    signs: np.ndarray = field(default=None, repr=False)

    def check(self) -> None:
        padded = padded_power_of_two(self.dim)
        if self.signs is None or self.signs.ndim != 4 or self.signs.shape[:2] != (self.ell, self.z) \
                or self.signs.shape[3] != padded:
            raise ShapeError(f"signs must have shape (ell, z, rotations, {padded})")

    @property
    def padded_dim(self) -> int:
        """D, the power of two the rows are zero-padded to before rotating."""
        return int(self.signs.shape[3])


@njit(cache=True, fastmath=True)
def _nearest_vertex_codes(xt, signs, mult, z, codes, row0, n_rows, work, best_abs, best, best_index, acc):
    """Rotate the tile by ``H D_R ... H D_1`` per function, take the nearest signed basis vector."""
    rounds, dim = signs.shape[1], signs.shape[2]
    n_tables = codes.shape[0]
    zero = np.uint64(0)
    for u in range(n_tables):
        for r in range(TILE):
            acc[r] = zero
        for t in range(z):
            f = u * z + t
            signed_fht_copy(xt, work, dim, signs[f, 0])
            for rnd in range(1, rounds):
                signed_fht_inplace(work, dim, signs[f, rnd])
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


@typed_kernel(lambda dtype: (array(dtype, 2, readonly=True), array(dtype, 3, readonly=True),
                             array(types.uint64, 1, readonly=True), types.int64, array(types.uint64, 2), types.int64),
              parallel=True)
def cross_polytope_codes(x, signs, mult, z, codes, n_threads):
    """``codes[u, i]`` = table u's code of row ``x[i]``.

    ``signs`` (F, rounds, D) in ``x``'s dtype, D the power of two >= d (at most
    ``MAX_PADDED_DIM``); ``mult`` (F,) the odd multipliers, F = z * (rows of ``codes``).
    """
    padded = signs.shape[2]
    n_tiles, n_chunks, per_chunk = tile_chunks(x.shape[0], n_threads)
    for chunk in prange(n_chunks):
        acc = np.empty(TILE, dtype=np.uint64)
        xt = np.zeros(padded * TILE, dtype=x.dtype)
        work = np.empty(padded * TILE, dtype=x.dtype)
        best_abs = np.empty(TILE, dtype=x.dtype)
        best = np.empty(TILE, dtype=x.dtype)
        best_index = np.empty(TILE, dtype=np.int64)
        for tile_index in range(chunk * per_chunk, min(n_tiles, (chunk + 1) * per_chunk)):
            row0, n_rows = load_tile(x, tile_index, xt)
            _nearest_vertex_codes(xt, signs, mult, z, codes, row0, n_rows, work, best_abs, best, best_index, acc)


@register_family
@dataclass(frozen=True)
class CrossPolytope(FamilyBase):
    """Cross-polytope LSH for angles (Andoni, Indyk, Laarhoven, Razenshteyn, Schmidt 2015).

    Rows are zero-padded to ``D = 2**ceil(log2 dim)``, rotated by the pseudo-random rotation
    ``H D_r ... H D_1`` (``rotations`` rounds of random signs and an unnormalised Walsh-Hadamard
    transform, computed as fast transforms), and hashed to the nearest signed basis vector: the
    value is ``2 i + [y_i < 0]`` for ``i = argmax |y_i|`` (first index on ties). Three rounds make
    the rotation close to a uniformly random one in practice (the cited paper).

    :meth:`collision_probability` has no closed form; it is a Monte Carlo estimate under an
    exactly uniform random rotation of R^D (2**17 pairs, fixed seed, standard error <= 0.0014),
    cached per (distance, D).

    Examples
    --------
    >>> fam = CrossPolytope()
    >>> fam.name
    'cross_polytope(rotations=3)'
    >>> fam.collision_probability(0.0, dim=64)
    1.0
    """

    rotations: int = 3
    key: ClassVar[str] = "cross_polytope"
    angular: ClassVar[bool] = True
    params_type: ClassVar[type] = CrossPolytopeParams

    def __post_init__(self) -> None:
        object.__setattr__(self, "rotations", check_positive_int("rotations", self.rotations))

    @classmethod
    def examples(cls) -> tuple:
        return (cls(), cls(rotations=1))

    def draw_params(self, dim: int, z: int, ell: int, seed: int) -> CrossPolytopeParams:
        """The random signs of ``ell * z`` pseudo-random rotations of R^D, a stream per table."""
        if padded_power_of_two(dim) > MAX_PADDED_DIM:
            raise ParameterError(f"dim must be at most {MAX_PADDED_DIM} for the cross-polytope, got {dim}")
        signs = np.stack([_table_signs(seed, u, dim, z, self.rotations) for u in range(ell)])
        return CrossPolytopeParams(dim, z, ell, multipliers(seed, ell, z), signs)

    def table_codes(self, x: np.ndarray, params: CrossPolytopeParams) -> np.ndarray:
        """Codes (ell, N) by :func:`cross_polytope_codes` (fast transforms in ``x``'s dtype)."""
        signs = np.ascontiguousarray(params.signs.reshape(-1, params.signs.shape[2], params.signs.shape[3]),
                                     dtype=x.dtype)
        mult = np.ascontiguousarray(params.multipliers.reshape(-1))
        return run_hash_kernel(cross_polytope_codes, x, (signs, mult, params.z), params.ell, signs.size * 3)

    def rotation_matrices(self, params: CrossPolytopeParams) -> np.ndarray:
        """The dense rotations, (ell, z, D, D) float64: ``H D_r ... H D_1`` (unnormalised ``H``)."""
        if not isinstance(params, CrossPolytopeParams):
            raise ParameterError(f"params must be CrossPolytopeParams (from this family's sample), "
                                 f"got {type(params).__name__}")
        padded = params.padded_dim
        hadamard = _hadamard(padded)
        mats = np.broadcast_to(np.eye(padded), (params.ell, params.z, padded, padded)).copy()
        for rnd in range(params.signs.shape[2]):
            mats = hadamard @ (params.signs[:, :, rnd, :, None].astype(np.float64) * mats)
        return mats

    def _rotated(self, x: np.ndarray, params: CrossPolytopeParams) -> np.ndarray:
        """The rotated rows (N, ell, z, D), float64, by dense matrices."""
        x = self.check_rows(x, params).astype(np.float64)
        padded = np.zeros((x.shape[0], params.padded_dim))
        padded[:, : params.dim] = x
        return np.einsum("lzij,nj->nlzi", self.rotation_matrices(params), padded)

    def hash_functions(self, x: np.ndarray, params: CrossPolytopeParams) -> np.ndarray:
        """Reference (plain numpy, float64, dense rotations): every function's value, (N, ell, z)."""
        y = self._rotated(x, params)
        index = np.argmax(np.abs(y), axis=3)
        negative = np.take_along_axis(y, index[..., None], axis=3)[..., 0] < 0
        return 2 * index.astype(np.int64) + negative

    def boundary_margins(self, x: np.ndarray, params: CrossPolytopeParams) -> np.ndarray:
        """The gap between the two largest ``|y_i|`` relative to the largest (D = 1: the sign of
        ``y_0`` relative to the row's largest entry)."""
        y = np.sort(np.abs(self._rotated(x, params)), axis=3)
        if y.shape[3] == 1:
            return y[..., 0] / (np.abs(np.asarray(x, dtype=np.float64)).max(axis=1)[:, None, None] + 1e-300)
        return (y[..., -1] - y[..., -2]) / (y[..., -1] + 1e-300)

    def collision_probability(self, distance: float, *, dim: int | None = None) -> float:
        """Monte Carlo estimate (see the class docstring); ``dim`` (the row length) is required."""
        distance = check_distance(distance, angular=True)
        if dim is None:
            raise ParameterError("dim is required: the cross-polytope's collision probability depends on it")
        return _collision_estimate(distance, padded_power_of_two(check_positive_int("dim", dim)))


_CP_SAMPLES = 2**17
_CP_REDRAWS = 100


def _hadamard(size: int) -> np.ndarray:
    h = np.ones((1, 1))
    while h.shape[0] < size:
        h = np.block([[h, h], [h, -h]])
    return h


def _tied_coordinates(signs: np.ndarray, dim: int) -> np.ndarray:
    """Per function (signs: (z, rounds, D)): do two rotated coordinates agree up to sign on R^dim?

    With ``dim < D`` the rotation's rows restricted to the first ``dim`` coordinates can coincide
    up to sign; those two coordinates then tie on every input and rounding would pick the winner.
    Exact: the restricted rows are small integers.
    """
    z, rounds, padded = signs.shape
    hadamard = _hadamard(padded)
    rows = np.broadcast_to(np.eye(dim, padded), (z, dim, padded)).copy()  # rows[f, a, i] = M_f[i, a]
    for rnd in range(rounds):
        rows = (rows * signs[:, None, rnd, :]) @ hadamard
    rows = np.rint(rows).astype(np.int64).transpose(0, 2, 1)  # (z, D, dim): restricted rows of M_f
    tied = np.zeros(z, dtype=bool)
    for f in range(z):
        nonzero = rows[f][np.any(rows[f] != 0, axis=1)]
        first = nonzero[np.arange(nonzero.shape[0]), np.argmax(nonzero != 0, axis=1)]
        canonical = nonzero * np.sign(first)[:, None]
        tied[f] = np.unique(canonical, axis=0).shape[0] < canonical.shape[0]
    return tied


def _table_signs(seed: int, table: int, dim: int, z: int, rounds: int) -> np.ndarray:
    """Signs (z, rounds, D) of one table from its own stream; tie-prone functions are redrawn."""
    padded = padded_power_of_two(dim)
    rng = np.random.default_rng(np.random.SeedSequence([seed, STREAM_SIGNS, table]))
    signs = (2 * rng.integers(0, 2, size=(z, rounds, padded), dtype=np.int8) - 1).astype(np.int8)
    if dim == padded:
        return signs  # M_f is invertible with orthogonal rows: no two coincide up to sign
    for _ in range(_CP_REDRAWS):
        tied = _tied_coordinates(signs, dim)
        if not tied.any():
            break
        redraw = 2 * rng.integers(0, 2, size=(int(tied.sum()), rounds, padded), dtype=np.int8) - 1
        signs[tied] = redraw.astype(np.int8)
    return signs


@lru_cache(maxsize=256)
def _collision_estimate(distance: float, padded: int) -> float:
    if distance == 0.0:
        return 1.0
    theta = 2.0 * math.asin(distance / 2.0)
    rng = np.random.default_rng(np.random.SeedSequence([20150901, padded]))
    hits = 0
    for lo in range(0, _CP_SAMPLES, 8192):
        g = rng.standard_normal((8192, 2, padded))
        u = g[:, 0] / np.linalg.norm(g[:, 0], axis=1, keepdims=True)
        w = g[:, 1] - np.sum(g[:, 1] * u, axis=1, keepdims=True) * u
        w /= np.linalg.norm(w, axis=1, keepdims=True)
        y = math.cos(theta) * u + math.sin(theta) * w
        iu, iy = np.argmax(np.abs(u), axis=1), np.argmax(np.abs(y), axis=1)
        rows = np.arange(u.shape[0])
        hits += int(np.sum((iu == iy) & ((u[rows, iu] < 0) == (y[rows, iy] < 0))))
    return hits / _CP_SAMPLES
