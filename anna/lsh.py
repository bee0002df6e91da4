"""Locality-sensitive hash families, (z, ell) from Theorem 3.4, and measured collision rates.

A family samples ``ell`` tables of ``z`` functions each (:meth:`sample`) and hashes rows into one
``uint64`` code per table (:meth:`hash`): two rows share a table's code exactly when all ``z``
functions of the table agree on them (up to a false match of probability about ``2**-64``, see
*Codes* below). Three families (docs/theory.md §3):

* :class:`E2LSH` -- p-stable (Datar et al. 2004), ``h(x) = floor((a.x + b) / w)`` with
  ``a ~ N(0, I)``, ``b ~ U[0, w)``; for Euclidean distance, ``rho ~ 1/c``.
* :class:`Hyperplane` -- ``h(x) = [a.x >= 0]`` (Charikar 2002); angular, collision ``1 - theta/pi``.
* :class:`CrossPolytope` -- rotate by ``H D_3 H D_2 H D_1`` (``H`` Walsh-Hadamard, ``D_i``
  random signs, Andoni et al. 2015), then take the nearest of ``+-e_i``; angular.

Codes
-----
The ``z`` values ``h_1..h_z`` of a table are combined as ``sum_t h_t * m_t mod 2**64`` with odd
multipliers ``m_t`` drawn from the seed. Two different ``z``-tuples get the same code with
probability at most ``2**-(63 - v)`` over the multipliers, where ``2**v`` divides every difference
``h_t - h'_t``: ``2**-63`` for hyperplane bits, at most ``2**-40`` for values below ``2**23`` in
magnitude. Such a false match counts as a collision of the table (codes are what is compared).

Seeds
-----
``sample(dim, z, ell, seed)`` is a pure function of its arguments; tables are drawn in order
from per-purpose streams, so the first ``ell'`` tables of a sample with ``ell > ell'`` equal a
sample with ``ell'`` (grids over ``ell`` reuse tables). Every table's functions are independent.

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
from functools import lru_cache
from typing import ClassVar, Protocol, Union, runtime_checkable

import numba
import numpy as np

from . import kernels
from ._validate import check_float_matrix, normalize_seed
from .errors import ParameterError

__all__ = [
    "E2LSH",
    "Hyperplane",
    "CrossPolytope",
    "E2LSHParams",
    "HyperplaneParams",
    "CrossPolytopeParams",
    "LSHFamily",
    "LSHConfig",
    "TheoryParameters",
    "MeasuredRho",
    "combine_codes",
    "theory_parameters",
    "measure_collision_rates",
]

# Independent random streams per purpose, so that adding tables never changes earlier ones.
_STREAM_DIRECTIONS, _STREAM_OFFSETS, _STREAM_MULTIPLIERS, _STREAM_SIGNS = 1, 2, 3, 4


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_positive_float(name: str, value: object) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ParameterError(f"{name} must be a positive number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ParameterError(f"{name} must be positive and finite, got {value!r}")
    return float(value)


def _check_distance(distance: object, angular: bool) -> float:
    if isinstance(distance, (bool, np.bool_)) or not isinstance(distance, (int, float, np.integer, np.floating)):
        raise ValueError(f"distance must be a number, got {distance!r}")
    distance = float(distance)
    if not math.isfinite(distance) or distance < 0:
        raise ValueError(f"distance must be finite and >= 0, got {distance}")
    if angular and distance > 2.0:
        raise ValueError(f"angular families take distances between unit vectors, in [0, 2]; got {distance}")
    return distance


def _multipliers(seed: int, ell: int, z: int) -> np.ndarray:
    raw = _rng(seed, _STREAM_MULTIPLIERS).integers(0, 2**64, size=(ell, z), dtype=np.uint64, endpoint=False)
    return raw | np.uint64(1)


def combine_codes(values: np.ndarray, multipliers: np.ndarray) -> np.ndarray:
    """Combine per-function values (N, ell, z) into codes (N, ell): ``sum_t h_t m_t mod 2**64``.

    The plain-numpy definition the numba hash kernels are tested against.

    Examples
    --------
    >>> import numpy as np
    >>> combine_codes(np.array([[[1, 2]]]), np.array([[3, 5]], dtype=np.uint64))
    array([[13]], dtype=uint64)
    """
    values = np.asarray(values)
    if values.ndim != 3 or values.shape[1:] != multipliers.shape:
        raise ValueError(f"values must be (N, ell, z) matching multipliers {multipliers.shape}, got {values.shape}")
    with np.errstate(over="ignore"):
        return (values.astype(np.int64).astype(np.uint64) * multipliers[None]).sum(axis=2, dtype=np.uint64)


def _check_rows(x: object, dim: int) -> np.ndarray:
    x = check_float_matrix("x", x)
    if x.shape[1] != dim:
        raise ValueError(f"x must have {dim} columns (the params' dim), got shape {x.shape}")
    return x


def _pad4(n: int) -> int:
    return (n + 3) // 4 * 4


def _table_major(codes: np.ndarray, table_major: bool) -> np.ndarray:
    return codes if table_major else np.ascontiguousarray(codes.T)


# ------------------------------------------------------------------------------------ params
@dataclass(frozen=True, eq=False)
class _ParamsBase:
    dim: int
    z: int
    ell: int
    multipliers: np.ndarray  # (ell, z) uint64, odd

    def _check_base(self) -> None:
        _check_positive_int("dim", self.dim)
        _check_positive_int("z", self.z)
        _check_positive_int("ell", self.ell)
        if self.multipliers.shape != (self.ell, self.z) or self.multipliers.dtype != np.uint64:
            raise ValueError(f"multipliers must be uint64 of shape {(self.ell, self.z)}, "
                             f"got {self.multipliers.dtype} {self.multipliers.shape}")

    def _check_select(self, start: int, stop: int) -> None:
        if not (0 <= start < stop <= self.ell):
            raise ValueError(f"table range must satisfy 0 <= start < stop <= ell={self.ell}, got [{start}, {stop})")


@dataclass(frozen=True, eq=False)
class E2LSHParams(_ParamsBase):
    """Sampled E2LSH tables: ``directions`` (ell, z, dim) ~ N(0, 1), ``offsets`` (ell, z) in [0, w)."""

    width: float = 4.0
    directions: np.ndarray = field(default=None, repr=False)
    offsets: np.ndarray = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._check_base()
        _check_positive_float("width", self.width)
        if self.directions is None or self.directions.shape != (self.ell, self.z, self.dim):
            raise ValueError(f"directions must have shape {(self.ell, self.z, self.dim)}")
        if self.offsets is None or self.offsets.shape != (self.ell, self.z):
            raise ValueError(f"offsets must have shape {(self.ell, self.z)}")

    def select(self, start: int, stop: int) -> "E2LSHParams":
        """The tables ``start..stop-1`` as parameters of their own."""
        self._check_select(start, stop)
        return E2LSHParams(self.dim, self.z, stop - start, self.multipliers[start:stop], self.width,
                           self.directions[start:stop], self.offsets[start:stop])


@dataclass(frozen=True, eq=False)
class HyperplaneParams(_ParamsBase):
    """Sampled hyperplane tables: ``directions`` (ell, z, dim) ~ N(0, 1)."""

    directions: np.ndarray = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._check_base()
        if self.directions is None or self.directions.shape != (self.ell, self.z, self.dim):
            raise ValueError(f"directions must have shape {(self.ell, self.z, self.dim)}")

    def select(self, start: int, stop: int) -> "HyperplaneParams":
        """The tables ``start..stop-1`` as parameters of their own."""
        self._check_select(start, stop)
        return HyperplaneParams(self.dim, self.z, stop - start, self.multipliers[start:stop],
                                self.directions[start:stop])


@dataclass(frozen=True, eq=False)
class CrossPolytopeParams(_ParamsBase):
    """Sampled cross-polytope tables: ``signs`` (ell, z, rotations, D) of +-1, D = 2**ceil(log2 dim)."""

    signs: np.ndarray = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._check_base()
        if self.signs is None or self.signs.ndim != 4 or self.signs.shape[:2] != (self.ell, self.z) \
                or self.signs.shape[3] != _padded_power_of_two(self.dim):
            raise ValueError(f"signs must have shape (ell, z, rotations, {_padded_power_of_two(self.dim)})")

    @property
    def padded_dim(self) -> int:
        """D, the power of two the rows are zero-padded to before rotating."""
        return int(self.signs.shape[3])

    def select(self, start: int, stop: int) -> "CrossPolytopeParams":
        """The tables ``start..stop-1`` as parameters of their own."""
        self._check_select(start, stop)
        return CrossPolytopeParams(self.dim, self.z, stop - start, self.multipliers[start:stop],
                                   self.signs[start:stop])


Params = Union[E2LSHParams, HyperplaneParams, CrossPolytopeParams]


MAX_PARAMETER_BYTES = 4 * 2**30
"""Sampling refuses tables whose parameters would take more bytes than this (raise it to sample more)."""


def parameter_bytes(dim: int, z: int, ell: int) -> int:
    """An estimate of the bytes of ``ell`` tables of ``z`` functions in dimension ``dim``: one
    8-byte direction per coordinate (or sign per padded coordinate), an offset and a multiplier."""
    return ell * z * (8 * dim + 16)


def _sample(family, dim: object, z: object, ell: object, seed: object):
    dim, z, ell = _check_positive_int("dim", dim), _check_positive_int("z", z), _check_positive_int("ell", ell)
    need = parameter_bytes(dim, z, ell)
    if need > MAX_PARAMETER_BYTES:
        raise ParameterError(f"z = {z}, ell = {ell} tables in dimension {dim} need about {need / 2**30:.3g} GiB of "
                             f"hash parameters, above anna.lsh.MAX_PARAMETER_BYTES = "
                             f"{MAX_PARAMETER_BYTES / 2**30:.3g} GiB (raise it to sample this many)")
    return _cached_draw(family, dim, z, ell, normalize_seed(seed))


@lru_cache(maxsize=64)
def _cached_draw(family, dim: int, z: int, ell: int, seed: int):
    """Sampling is pure, so repeated calls (a transformer head per forward pass) share one draw;
    the arrays are made read-only so that sharing is safe."""
    params = family._draw(dim, z, ell, seed)
    for value in vars(params).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return params


def _padded_power_of_two(dim: int) -> int:
    return 1 << max(0, (int(dim) - 1).bit_length())


def _check_params(params: object, cls: type) -> None:
    if not isinstance(params, cls):
        raise ValueError(f"params must be {cls.__name__} (from this family's sample), got {type(params).__name__}")


def _linear_kernel_args(directions: np.ndarray, scale: float, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    ell, z, dim = directions.shape
    n_func = ell * z
    proj = np.zeros((_pad4(dim), _pad4(n_func)), dtype=dtype)
    proj[:dim, :n_func] = directions.reshape(n_func, dim).T / scale
    return proj, np.zeros(_pad4(n_func), dtype=np.float64)


def _run_hash(x: np.ndarray, kind: int, proj: np.ndarray, offset: np.ndarray, signs: np.ndarray,
              multipliers: np.ndarray, z: int, ell: int) -> np.ndarray:
    codes = np.empty((ell, x.shape[0]), dtype=np.uint64)
    per_row = proj.size if kind != kernels.KIND_CROSS_POLYTOPE else signs.size * 3
    with kernels.threads_for(x.shape[0] * per_row):
        kernels.hash_codes(x, kind, proj, offset, signs, np.ascontiguousarray(multipliers.reshape(-1)), z, codes,
                           numba.get_num_threads())
    return codes


# ---------------------------------------------------------------------------------- families
@dataclass(frozen=True)
class E2LSH:
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
    angular: ClassVar[bool] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "width", _check_positive_float("width", self.width))

    @property
    def name(self) -> str:
        return f"e2lsh(width={self.width:g})"

    def sample(self, dim: int, z: int, ell: int, seed: int | None = 0) -> E2LSHParams:
        """Draw ``ell`` tables of ``z`` functions for rows of length ``dim``."""
        return _sample(self, dim, z, ell, seed)

    def _draw(self, dim: int, z: int, ell: int, seed: int) -> E2LSHParams:
        directions = _rng(seed, _STREAM_DIRECTIONS).standard_normal((ell, z, dim))
        offsets = _rng(seed, _STREAM_OFFSETS).uniform(0.0, self.width, size=(ell, z))
        return E2LSHParams(dim, z, ell, _multipliers(seed, ell, z), self.width, directions, offsets)

    def hash(self, x: np.ndarray, params: E2LSHParams, *, table_major: bool = False) -> np.ndarray:
        """Codes of the rows of ``x``: (N, ell) uint64, or (ell, N) with ``table_major``.

        Projections run in ``x``'s dtype (float32 or float64).
        """
        _check_params(params, E2LSHParams)
        return _table_major(self._table_codes(_check_rows(x, params.dim), params), table_major)

    def _table_codes(self, x: np.ndarray, params: E2LSHParams) -> np.ndarray:
        proj, offset = _linear_kernel_args(params.directions, self.width, x.dtype)
        offset[: params.ell * params.z] = params.offsets.reshape(-1) / self.width
        dummy = np.zeros((1, 1, 1), dtype=x.dtype)
        return _run_hash(x, kernels.KIND_E2LSH, proj, offset, dummy, params.multipliers, params.z, params.ell)

    def hash_functions(self, x: np.ndarray, params: E2LSHParams) -> np.ndarray:
        """Reference (plain numpy, float64): every function's value, (N, ell, z) int64."""
        _check_params(params, E2LSHParams)
        x = _check_rows(x, params.dim).astype(np.float64)
        proj = np.einsum("nd,lzd->nlz", x, params.directions)
        return np.floor((proj + params.offsets[None]) / self.width).astype(np.int64)

    def collision_probability(self, distance: float, *, dim: int | None = None) -> float:
        """Probability that one function collides on two points at Euclidean ``distance``.

        Datar et al. (2004): with ``t = w / distance``,
        ``p = 1 - 2 Phi(-t) - 2 / (sqrt(2 pi) t) * (1 - exp(-t**2 / 2))``; ``p(0) = 1``.
        ``dim`` is accepted for a uniform interface and ignored.
        """
        distance = _check_distance(distance, angular=False)
        if distance == 0.0:
            return 1.0
        t = self.width / distance
        normal_tail = 0.5 * math.erfc(t / math.sqrt(2.0))
        return 1.0 - 2.0 * normal_tail - 2.0 / (math.sqrt(2.0 * math.pi) * t) * (1.0 - math.exp(-t * t / 2.0))


@dataclass(frozen=True)
class Hyperplane:
    """Random-hyperplane LSH for angles: ``h(x) = [a.x >= 0]``, collision ``1 - theta / pi``.

    Only directions matter; the zero row hashes to all ones.

    Examples
    --------
    >>> round(Hyperplane().collision_probability(2 ** 0.5), 12)   # orthogonal unit vectors
    0.5
    """

    angular: ClassVar[bool] = True

    @property
    def name(self) -> str:
        return "hyperplane"

    def sample(self, dim: int, z: int, ell: int, seed: int | None = 0) -> HyperplaneParams:
        """Draw ``ell`` tables of ``z`` hyperplanes through the origin in dimension ``dim``."""
        return _sample(self, dim, z, ell, seed)

    def _draw(self, dim: int, z: int, ell: int, seed: int) -> HyperplaneParams:
        directions = _rng(seed, _STREAM_DIRECTIONS).standard_normal((ell, z, dim))
        return HyperplaneParams(dim, z, ell, _multipliers(seed, ell, z), directions)

    def hash(self, x: np.ndarray, params: HyperplaneParams, *, table_major: bool = False) -> np.ndarray:
        """Codes of the rows of ``x``: (N, ell) uint64, or (ell, N) with ``table_major``."""
        _check_params(params, HyperplaneParams)
        return _table_major(self._table_codes(_check_rows(x, params.dim), params), table_major)

    def _table_codes(self, x: np.ndarray, params: HyperplaneParams) -> np.ndarray:
        proj, offset = _linear_kernel_args(params.directions, 1.0, x.dtype)
        dummy = np.zeros((1, 1, 1), dtype=x.dtype)
        return _run_hash(x, kernels.KIND_HYPERPLANE, proj, offset, dummy, params.multipliers, params.z,
                         params.ell)

    def hash_functions(self, x: np.ndarray, params: HyperplaneParams) -> np.ndarray:
        """Reference (plain numpy, float64): every function's bit, (N, ell, z) int64."""
        _check_params(params, HyperplaneParams)
        x = _check_rows(x, params.dim).astype(np.float64)
        return (np.einsum("nd,lzd->nlz", x, params.directions) >= 0).astype(np.int64)

    def collision_probability(self, distance: float, *, dim: int | None = None) -> float:
        """``1 - theta / pi`` for unit vectors at chord ``distance`` (theta = 2 asin(distance / 2))."""
        distance = _check_distance(distance, angular=True)
        return 1.0 - 2.0 * math.asin(distance / 2.0) / math.pi


@dataclass(frozen=True)
class CrossPolytope:
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
    angular: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "rotations", _check_positive_int("rotations", self.rotations))

    @property
    def name(self) -> str:
        return f"cross_polytope(rotations={self.rotations})"

    def sample(self, dim: int, z: int, ell: int, seed: int | None = 0) -> CrossPolytopeParams:
        """Draw the random signs of ``ell * z`` pseudo-random rotations of R^D."""
        return _sample(self, dim, z, ell, seed)

    def _draw(self, dim: int, z: int, ell: int, seed: int) -> CrossPolytopeParams:
        if _padded_power_of_two(dim) > kernels.MAX_PADDED_DIM:
            raise ValueError(f"dim must be at most {kernels.MAX_PADDED_DIM} for the cross-polytope, got {dim}")
        signs = np.stack([_cross_polytope_table(seed, u, dim, z, self.rotations) for u in range(ell)])
        return CrossPolytopeParams(dim, z, ell, _multipliers(seed, ell, z), signs)

    def hash(self, x: np.ndarray, params: CrossPolytopeParams, *, table_major: bool = False) -> np.ndarray:
        """Codes of the rows of ``x``: (N, ell) uint64, or (ell, N) with ``table_major``."""
        _check_params(params, CrossPolytopeParams)
        return _table_major(self._table_codes(_check_rows(x, params.dim), params), table_major)

    def _table_codes(self, x: np.ndarray, params: CrossPolytopeParams) -> np.ndarray:
        signs = np.ascontiguousarray(params.signs.reshape(-1, params.signs.shape[2], params.signs.shape[3]),
                                     dtype=x.dtype)
        dummy_proj = np.zeros((4, 4), dtype=x.dtype)
        dummy_offset = np.zeros(4, dtype=np.float64)
        return _run_hash(x, kernels.KIND_CROSS_POLYTOPE, dummy_proj, dummy_offset, signs, params.multipliers,
                         params.z, params.ell)

    def rotation_matrices(self, params: CrossPolytopeParams) -> np.ndarray:
        """The dense rotations, (ell, z, D, D) float64: ``H D_r ... H D_1`` (unnormalised ``H``)."""
        _check_params(params, CrossPolytopeParams)
        padded = params.padded_dim
        hadamard = _hadamard(padded)
        mats = np.broadcast_to(np.eye(padded), (params.ell, params.z, padded, padded)).copy()
        for rnd in range(params.signs.shape[2]):
            mats = hadamard @ (params.signs[:, :, rnd, :, None].astype(np.float64) * mats)
        return mats

    def hash_functions(self, x: np.ndarray, params: CrossPolytopeParams) -> np.ndarray:
        """Reference (plain numpy, float64, dense rotations): every function's value, (N, ell, z)."""
        x = _check_rows(x, params.dim).astype(np.float64)
        mats = self.rotation_matrices(params)
        padded = np.zeros((x.shape[0], params.padded_dim))
        padded[:, : params.dim] = x
        y = np.einsum("lzij,nj->nlzi", mats, padded)
        index = np.argmax(np.abs(y), axis=3)
        negative = np.take_along_axis(y, index[..., None], axis=3)[..., 0] < 0
        return 2 * index.astype(np.int64) + negative

    def collision_probability(self, distance: float, *, dim: int | None = None) -> float:
        """Monte Carlo estimate (see the class docstring); ``dim`` (the row length) is required."""
        distance = _check_distance(distance, angular=True)
        if dim is None:
            raise ValueError("dim is required: the cross-polytope's collision probability depends on it")
        padded = _padded_power_of_two(_check_positive_int("dim", dim))
        return _cross_polytope_estimate(distance, padded)


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


def _cross_polytope_table(seed: int, table: int, dim: int, z: int, rounds: int) -> np.ndarray:
    """Signs (z, rounds, D) of one table from its own stream; tie-prone functions are redrawn."""
    padded = _padded_power_of_two(dim)
    rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM_SIGNS, table]))
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
def _cross_polytope_estimate(distance: float, padded: int) -> float:
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


@runtime_checkable
class LSHFamily(Protocol):
    """What :class:`LSHConfig` needs of a family (E2LSH, Hyperplane, CrossPolytope provide it)."""

    angular: ClassVar[bool]

    @property
    def name(self) -> str: ...

    def sample(self, dim: int, z: int, ell: int, seed: int | None = 0): ...

    def hash(self, x: np.ndarray, params, *, table_major: bool = False) -> np.ndarray: ...

    def hash_functions(self, x: np.ndarray, params) -> np.ndarray: ...

    def collision_probability(self, distance: float, *, dim: int | None = None) -> float: ...


@dataclass(frozen=True)
class LSHConfig:
    """A family with ``z`` functions per table and ``ell`` tables.

    Examples
    --------
    >>> LSHConfig(Hyperplane(), z=2, ell=8)
    LSHConfig(family=Hyperplane(), z=2, ell=8)
    >>> LSHConfig(Hyperplane(), z=0, ell=8)
    Traceback (most recent call last):
    ...
    anna.errors.ParameterError: z must be a positive integer, got 0
    """

    family: LSHFamily
    z: int
    ell: int

    def __post_init__(self) -> None:
        if not isinstance(self.family, LSHFamily):
            raise ValueError(f"family must be an LSH family (E2LSH, Hyperplane, CrossPolytope), got {self.family!r}")
        object.__setattr__(self, "z", _check_positive_int("z", self.z))
        object.__setattr__(self, "ell", _check_positive_int("ell", self.ell))


# ---------------------------------------------------------------------------- Theorem 3.4
@dataclass(frozen=True)
class TheoryParameters:
    """(z, ell) for ``n`` tokens from Theorem 3.4, with the failure bound they guarantee.

    ``z = ceil(3 ln n / ln(1/p2))`` makes ``p2**z <= n**-3``; ``ell = ceil(3 ln n / p1**z)``
    makes a near pair miss every table with probability ``(1 - p1**z)**ell <= n**-3``. Since
    ``p1**z >= p1 n**(-3 rho)``, ``ell <= ceil((3 / p1) n**(3 rho) ln n)``: the theorem's
    ``Theta(n**(3 rho) log n)`` with the constant ``3 / p1``. The union bound over at most ``n**2``
    far and ``n**2`` near pairs gives ``eta_bound = min(1, n**2 ell p2**z + n**2 (1 - p1**z)**ell)
    <= (ell + 1) / n``, i.e. ``O(n**(3 rho - 1) log n)``. ``theorem_applies`` says whether the
    theorem's hypotheses ``c > sqrt 3`` and ``rho < 1/3`` hold.
    """

    n: int
    r: float
    c: float
    family: str
    p1: float
    p2: float
    rho: float
    z: int
    ell: int
    eta_bound: float
    theorem_applies: bool

    def __post_init__(self) -> None:
        if not (0.0 < self.p2 < self.p1 <= 1.0):
            raise ValueError(f"need 0 < p2 < p1 <= 1, got p1={self.p1}, p2={self.p2}")
        if self.z < 1 or self.ell < 1 or not (0.0 <= self.eta_bound <= 1.0):
            raise ValueError(f"inconsistent parameters z={self.z}, ell={self.ell}, eta_bound={self.eta_bound}")

    def config(self, family: LSHFamily) -> LSHConfig:
        """The :class:`LSHConfig` with these (z, ell)."""
        return LSHConfig(family, self.z, self.ell)


def _sensitivity(family: LSHFamily, r: object, c: object, dim: int | None) -> tuple[float, float, float, float]:
    r = _check_positive_float("r", r)
    c = _check_positive_float("c", c)
    if c <= 1.0:
        raise ValueError(f"c must be > 1, got {c}")
    if family.angular and c * r > 2.0:
        raise ValueError(f"angular family: c*r = {c * r} exceeds 2, the largest distance between unit vectors")
    p1 = family.collision_probability(r, dim=dim)
    p2 = family.collision_probability(c * r, dim=dim)
    if not (0.0 < p2 < p1 < 1.0):
        raise ValueError(f"{family.name} is not usefully sensitive at r={r}, cr={c * r}: p1={p1}, p2={p2}")
    return r, c, p1, p2


def theory_parameters(n: int, r: float, c: float, family: LSHFamily | None = None, *,
                      dim: int | None = None) -> TheoryParameters:
    """(z, ell, eta) per Theorem 3.4 for ``n`` queries and ``n`` keys (see :class:`TheoryParameters`).

    ``dim`` is needed by the cross-polytope family only.

    Examples
    --------
    >>> t = theory_parameters(1000, r=1.0, c=8.0)
    >>> t.z, t.ell, round(t.rho, 3), t.theorem_applies, round(t.eta_bound, 2)
    (13, 374, 0.136, True, 0.23)
    """
    family = E2LSH() if family is None else family
    n = _check_positive_int("n", n)
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    r, c, p1, p2 = _sensitivity(family, r, c, dim)
    rho = math.log(1.0 / p1) / math.log(1.0 / p2)
    log_n = math.log(n)
    z = max(1, math.ceil(3.0 * log_n / math.log(1.0 / p2)))
    ell = max(1, math.ceil(3.0 * log_n / p1**z))
    eta = min(1.0, n * n * ell * p2**z + n * n * (1.0 - p1**z) ** ell)
    return TheoryParameters(n, r, c, family.name, p1, p2, rho, z, ell, eta,
                            bool(c > math.sqrt(3.0) and rho < 1.0 / 3.0))


# ------------------------------------------------------------------------ measured rho
@dataclass(frozen=True)
class MeasuredRho:
    """Collision rates measured on independent (function, pair) trials, beside the closed forms."""

    family: str
    r: float
    c: float
    pairs: int
    p1: float
    p1_stderr: float
    p2: float
    p2_stderr: float
    p1_theory: float
    p2_theory: float
    rho_measured: float
    rho_theory: float

    def __post_init__(self) -> None:
        if self.pairs < 1 or not (0.0 <= self.p1 <= 1.0 and 0.0 <= self.p2 <= 1.0):
            raise ValueError(f"inconsistent measurement: pairs={self.pairs}, p1={self.p1}, p2={self.p2}")


def _rho(p1: float, p2: float) -> float:
    if p2 <= 0.0 or p1 >= 1.0:
        return 0.0
    if p1 <= 0.0 or p2 >= 1.0:
        return math.inf
    return math.log(1.0 / p1) / math.log(1.0 / p2)


def _pairs_at(rng: np.random.Generator, count: int, dim: int, distance: float, angular: bool) -> np.ndarray:
    """``count`` pairs (2*count, dim): rows 2t and 2t+1 at exactly ``distance`` (unit rows if angular)."""
    base = rng.standard_normal((count, dim))
    direction = rng.standard_normal((count, dim))
    if angular:
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        direction -= np.sum(direction * base, axis=1, keepdims=True) * base
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        theta = 2.0 * math.asin(distance / 2.0)
        other = math.cos(theta) * base + math.sin(theta) * direction
    else:
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        other = base + distance * direction
    out = np.empty((2 * count, dim))
    out[0::2], out[1::2] = base, other
    return out


def _collision_trials(family: LSHFamily, params, points: np.ndarray) -> np.ndarray:
    """Trial t hashes pair t with table t only (all trials independent)."""
    chunk = 256
    hits = np.empty(params.ell, dtype=bool)
    for lo in range(0, params.ell, chunk):
        hi = min(params.ell, lo + chunk)
        codes = family.hash(points[2 * lo: 2 * hi], params.select(lo, hi), table_major=True)
        t = np.arange(hi - lo)
        hits[lo:hi] = codes[t, 2 * t] == codes[t, 2 * t + 1]
    return hits


def measure_collision_rates(family: LSHFamily, dim: int, r: float, c: float, pairs: int = 20000,
                            seed: int | None = 0) -> MeasuredRho:
    """Measure p1 = P[collide at distance r] and p2 = P[collide at distance c*r] for one function.

    Each of ``pairs`` trials draws a fresh function (table t of a z=1 sample) and a fresh pair at
    exactly the distance (unit vectors for angular families), so the hit counts are binomial and
    the standard errors ``sqrt(p (1 - p) / pairs)`` are exact.

    Examples
    --------
    >>> m = measure_collision_rates(Hyperplane(), dim=16, r=0.5, c=2.0, pairs=2000)
    >>> abs(m.p1 - m.p1_theory) < 4 * m.p1_stderr + 1e-9
    True
    """
    dim = _check_positive_int("dim", dim)
    pairs = _check_positive_int("pairs", pairs)
    seed = normalize_seed(seed)
    r, c, p1_theory, p2_theory = _sensitivity(family, r, c, dim)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    rates = []
    for index, distance in enumerate((r, c * r)):
        params = family.sample(dim, 1, pairs, np.random.SeedSequence([seed, 11 + index]).generate_state(1)[0])
        hits = _collision_trials(family, params, _pairs_at(rng, pairs, dim, distance, family.angular))
        p = float(hits.mean())
        rates.append((p, math.sqrt(max(p * (1.0 - p), 0.0) / pairs)))
    (p1, s1), (p2, s2) = rates
    return MeasuredRho(family.name, r, c, pairs, p1, s1, p2, s2, p1_theory, p2_theory, _rho(p1, p2),
                       _rho(p1_theory, p2_theory))
