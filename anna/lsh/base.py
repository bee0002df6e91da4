"""What an LSH family is: the interface, the name registry, sampled tables and their codes.

A family is a small frozen dataclass (its fields are its parameters, e.g. E2LSH's ``width``)
deriving from :class:`FamilyBase` and registered with :func:`register_family`, which puts it in
:data:`FAMILIES` under its ``key``. Serialisation, the experiments' command line and the test
strategies read that table, so a registered family is saved and loaded, offered and tested with
no list to edit. A family provides:

* ``key`` (class attribute): its registry name, e.g. ``"e2lsh"``; ``angular`` (class attribute):
  whether it hashes directions (rows are compared as unit vectors, distances in [0, 2]);
* ``draw_params(dim, z, ell, seed)``: ``ell`` tables of ``z`` functions as a frozen
  :class:`TableParams` subclass whose array fields have the tables on axis 0;
* ``table_codes(x, params)``: the codes, (ell, N) uint64, of already-validated rows (its numba
  kernel; see :func:`combine_codes` for what a code is);
* ``hash_functions(x, params)``: the plain-numpy reference, every function's value (N, ell, z);
* ``boundary_margins(x, params)``: per function, how far (relatively) the reference value is
  from changing, so that tests can tell rounding-level disagreements from wrong kernels;
* ``collision_probability(distance, *, dim=None)``: one function's collision probability;
* ``examples()`` (class method): a few instances the shared test strategies draw from.

:class:`FamilyBase` supplies ``sample`` (validated, size-checked, cached: sampling is pure) and
``hash`` (validated rows, optionally table-major) and a default ``name``.

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
from per-purpose streams (:func:`stream`), so the first ``ell'`` tables of a sample with
``ell > ell'`` equal a sample with ``ell'`` (grids over ``ell`` reuse tables). Every table's
functions are independent.

Examples
--------
>>> sorted(FAMILIES)
['cross_polytope', 'e2lsh', 'hyperplane']
>>> family_class("hyperplane") is family_class("Hyperplane")    # key or class name
True
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import ClassVar, Mapping, Protocol, runtime_checkable

import numpy as np

from .._validate import check_float_matrix, normalize_seed
from ..errors import ParameterError, ShapeError

__all__ = [
    "LSHFamily",
    "FamilyBase",
    "TableParams",
    "LSHConfig",
    "FAMILIES",
    "register_family",
    "unregister_family",
    "family_class",
    "combine_codes",
    "multipliers",
    "stream",
    "STREAM_DIRECTIONS",
    "STREAM_OFFSETS",
    "STREAM_MULTIPLIERS",
    "STREAM_SIGNS",
    "parameter_bytes",
    "check_positive_int",
    "check_positive_float",
    "check_distance",
]

# Independent random streams per purpose, so that adding tables never changes earlier ones.
STREAM_DIRECTIONS, STREAM_OFFSETS, STREAM_MULTIPLIERS, STREAM_SIGNS = 1, 2, 3, 4


def stream(seed: int, purpose: int) -> np.random.Generator:
    """The generator of one purpose (``STREAM_*``; a new family takes numbers above 4) of a seed."""
    return np.random.default_rng(np.random.SeedSequence([seed, purpose]))


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an int >= 1, else :class:`~anna.errors.ParameterError` naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positive_float(name: str, value: object) -> float:
    """``value`` as a finite float > 0, else :class:`~anna.errors.ParameterError` naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ParameterError(f"{name} must be a positive number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ParameterError(f"{name} must be positive and finite, got {value!r}")
    return float(value)


def check_distance(distance: object, angular: bool) -> float:
    """A distance >= 0 (at most 2, the diameter of the unit sphere, for angular families)."""
    if isinstance(distance, (bool, np.bool_)) or not isinstance(distance, (int, float, np.integer, np.floating)):
        raise ParameterError(f"distance must be a number, got {distance!r}")
    distance = float(distance)
    if not math.isfinite(distance) or distance < 0:
        raise ParameterError(f"distance must be finite and >= 0, got {distance}")
    if angular and distance > 2.0:
        raise ParameterError(f"angular families take distances between unit vectors, in [0, 2]; got {distance}")
    return distance


def multipliers(seed: int, ell: int, z: int) -> np.ndarray:
    """The odd uint64 multipliers (ell, z) that combine a table's values into its code."""
    raw = stream(seed, STREAM_MULTIPLIERS).integers(0, 2**64, size=(ell, z), dtype=np.uint64, endpoint=False)
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
        raise ShapeError(f"values must be (N, ell, z) matching multipliers {multipliers.shape}, got {values.shape}")
    with np.errstate(over="ignore"):
        return (values.astype(np.int64).astype(np.uint64) * multipliers[None]).sum(axis=2, dtype=np.uint64)


# ------------------------------------------------------------------------------------ params
@dataclass(frozen=True, eq=False)
class TableParams:
    """``ell`` sampled tables of ``z`` functions on rows of length ``dim``.

    A family's parameters subclass this with array fields (defaults ``None``) whose axis 0 is the
    table: :meth:`select` slices every array field. ``__post_init__`` checks the common fields;
    subclasses check theirs in :meth:`check`.
    """

    dim: int
    z: int
    ell: int
    multipliers: np.ndarray  # (ell, z) uint64, odd

    def __post_init__(self) -> None:
        check_positive_int("dim", self.dim)
        check_positive_int("z", self.z)
        check_positive_int("ell", self.ell)
        if self.multipliers.shape != (self.ell, self.z) or self.multipliers.dtype != np.uint64:
            raise ShapeError(f"multipliers must be uint64 of shape {(self.ell, self.z)}, "
                             f"got {self.multipliers.dtype} {self.multipliers.shape}")
        self.check()

    def check(self) -> None:
        """Check the family's own fields (raise :class:`~anna.errors.ShapeError` naming them)."""

    def check_shape(self, name: str, shape: tuple) -> None:
        """Refuse an array field ``name`` that is missing or not of ``shape``."""
        value = getattr(self, name)
        if value is None or value.shape != shape:
            raise ShapeError(f"{name} must have shape {shape}")

    def select(self, start: int, stop: int):
        """The tables ``start..stop-1`` as parameters of their own."""
        if not (0 <= start < stop <= self.ell):
            raise ParameterError(f"table range must satisfy 0 <= start < stop <= ell={self.ell}, "
                                 f"got [{start}, {stop})")
        changes = {f.name: getattr(self, f.name)[start:stop] for f in dataclasses.fields(self)
                   if isinstance(getattr(self, f.name), np.ndarray)}
        return dataclasses.replace(self, ell=stop - start, **changes)


def parameter_bytes(dim: int, z: int, ell: int) -> int:
    """An estimate of the bytes of ``ell`` tables of ``z`` functions in dimension ``dim``: one
    8-byte direction per coordinate (or sign per padded coordinate), an offset and a multiplier."""
    return ell * z * (8 * dim + 16)


@lru_cache(maxsize=64)
def _cached_draw(family: "FamilyBase", dim: int, z: int, ell: int, seed: int) -> TableParams:
    """Sampling is pure, so repeated calls (a transformer head per forward pass) share one draw;
    the arrays are made read-only so that sharing is safe."""
    params = family.draw_params(dim, z, ell, seed)
    for value in vars(params).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return params


# ---------------------------------------------------------------------------------- families
@runtime_checkable
class LSHFamily(Protocol):
    """What :class:`LSHConfig` and :func:`anna.attention.anna_attention` need of a family."""

    angular: ClassVar[bool]

    @property
    def name(self) -> str: ...

    def sample(self, dim: int, z: int, ell: int, seed: int | None = 0): ...

    def hash(self, x: np.ndarray, params, *, table_major: bool = False) -> np.ndarray: ...

    def hash_functions(self, x: np.ndarray, params) -> np.ndarray: ...

    def collision_probability(self, distance: float, *, dim: int | None = None) -> float: ...


class FamilyBase:
    """The shared half of every family: ``sample``, ``hash`` and ``name`` (see the module docstring).

    Subclasses are frozen dataclasses setting ``key``, ``angular`` and ``params_type`` and
    implementing ``draw_params``, ``table_codes``, ``hash_functions``, ``boundary_margins`` and
    ``collision_probability``.
    """

    key: ClassVar[str]
    angular: ClassVar[bool]
    params_type: ClassVar[type]

    @property
    def name(self) -> str:
        """``key(field=value, ...)``, floats in ``%g``; the key alone for a family without fields."""
        fields = [f"{f.name}={_format(getattr(self, f.name))}" for f in dataclasses.fields(self)]
        return f"{self.key}({', '.join(fields)})" if fields else self.key

    @classmethod
    def examples(cls) -> tuple:
        """Instances the test strategies draw (default: the one with default parameters)."""
        return (cls(),)

    def sample(self, dim: int, z: int, ell: int, seed: int | None = 0) -> TableParams:
        """Draw ``ell`` tables of ``z`` functions for rows of length ``dim`` (pure; cached)."""
        from . import MAX_PARAMETER_BYTES as limit  # the knob users raise lives on anna.lsh

        dim, z, ell = check_positive_int("dim", dim), check_positive_int("z", z), check_positive_int("ell", ell)
        need = parameter_bytes(dim, z, ell)
        if need > limit:
            raise ParameterError(f"z = {z}, ell = {ell} tables in dimension {dim} need about {need / 2**30:.3g} GiB "
                                 f"of hash parameters, above anna.lsh.MAX_PARAMETER_BYTES = "
                                 f"{limit / 2**30:.3g} GiB (raise it to sample this many)")
        return _cached_draw(self, dim, z, ell, normalize_seed(seed))

    def hash(self, x: np.ndarray, params: TableParams, *, table_major: bool = False) -> np.ndarray:
        """Codes of the rows of ``x``: (N, ell) uint64, or (ell, N) with ``table_major``.

        Projections run in ``x``'s dtype (float32 or float64).
        """
        codes = self.table_codes(self.check_rows(x, params), params)
        return codes if table_major else np.ascontiguousarray(codes.T)

    def check_rows(self, x: object, params: object) -> np.ndarray:
        """``x`` as validated rows for ``params`` (this family's, of matching ``dim``)."""
        if not isinstance(params, self.params_type):
            raise ParameterError(f"params must be {self.params_type.__name__} (from this family's sample), "
                                 f"got {type(params).__name__}")
        x = check_float_matrix("x", x)
        if x.shape[1] != params.dim:
            raise ShapeError(f"x must have {params.dim} columns (the params' dim), got shape {x.shape}")
        return x


def _format(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


# ---------------------------------------------------------------------------------- registry
_REQUIRED = ("draw_params", "table_codes", "hash_functions", "boundary_margins", "collision_probability",
             "examples", "sample", "hash")
_REGISTRY: dict[str, type] = {}

FAMILIES: Mapping[str, type] = MappingProxyType(_REGISTRY)
"""Registered family classes by key (read-only view; :func:`register_family` adds to it)."""


def register_family(cls: type) -> type:
    """Class decorator: add an LSH family (see the module docstring) to :data:`FAMILIES`.

    Refuses a class that is not a dataclass (its fields are what serialisation saves), lacks a
    method of the interface, or whose ``key`` or class name is taken by another family.

    Examples
    --------
    >>> register_family(int)
    Traceback (most recent call last):
    ...
    anna.errors.ParameterError: LSH family int must be a dataclass with a str key and an angular flag
    """
    key = getattr(cls, "key", None)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls) and isinstance(key, str) and key
            and isinstance(getattr(cls, "angular", None), bool)):
        raise ParameterError(f"LSH family {getattr(cls, '__name__', cls)} must be a dataclass with a str key "
                             f"and an angular flag")
    missing = [method for method in _REQUIRED if not callable(getattr(cls, method, None))]
    if missing:
        raise ParameterError(f"LSH family {cls.__name__} lacks {', '.join(missing)}")
    for other in _REGISTRY.values():
        same = other.__module__ == cls.__module__ and other.__qualname__ == cls.__qualname__  # a reload
        if not same and ({key, cls.__name__} & {other.key, other.__name__}):
            raise ParameterError(f"LSH family {cls.__name__} (key {key!r}) clashes with registered "
                                 f"{other.__name__} (key {other.key!r})")
    _REGISTRY.pop(next((k for k, other in _REGISTRY.items() if other.__qualname__ == cls.__qualname__
                        and other.__module__ == cls.__module__), None), None)
    _REGISTRY[key] = cls
    return cls


def unregister_family(key: str) -> type:
    """Remove the family registered under ``key`` (returns its class)."""
    if key not in _REGISTRY:
        raise ParameterError(f"no LSH family is registered as {key!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY.pop(key)


def family_class(name: str) -> type:
    """The registered family class whose key or class name is ``name``."""
    for cls in _REGISTRY.values():
        if name in (cls.key, cls.__name__):
            return cls
    raise ParameterError(f"no LSH family is registered as {name!r}; registered: "
                         f"{', '.join(f'{cls.key} ({cls.__name__})' for cls in _REGISTRY.values())}")


# ------------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class LSHConfig:
    """A family with ``z`` functions per table and ``ell`` tables.

    Examples
    --------
    >>> from anna.lsh import Hyperplane
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
            names = ", ".join(cls.__name__ for cls in _REGISTRY.values())
            raise ParameterError(f"family must be an LSH family ({names}), got {self.family!r}")
        object.__setattr__(self, "z", check_positive_int("z", self.z))
        object.__setattr__(self, "ell", check_positive_int("ell", self.ell))
