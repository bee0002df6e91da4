"""Boundary checks for arrays entering the anna package.

Every public function validates its inputs here, so a bad call fails with a typed error (from
:mod:`anna.errors`, all subclasses of ValueError) that says what was received, never deep inside
a numba kernel. :func:`check_int`, :func:`check_float` and :func:`check_bool` are the one
validator of scalar parameters: numpy integers and floats are accepted, strings and bools where
numbers belong are refused by the parameter's name, as are values out of range.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import NonFiniteError, ParameterError, ShapeError

__all__ = ["check_matrix", "check_float_matrix", "check_same_rows", "normalize_seed", "check_int", "check_float",
           "check_bool", "check_finite_output"]

_FLOAT_DTYPES = (np.float32, np.float64)


def check_matrix(name: str, x: object, *, ndim: int = 2) -> np.ndarray:
    """Return ``x`` as an ndarray of rank ``ndim``; raise ShapeError naming ``name`` otherwise."""
    if not isinstance(x, np.ndarray):
        raise ShapeError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ShapeError(f"{name} must have rank {ndim}, got shape {x.shape}")
    return x


def check_float_matrix(name: str, x: object, *, ndim: int = 2, finite: bool = True,
                       contiguous: bool = True) -> np.ndarray:
    """Check a float32/float64 array of rank ``ndim``, C-contiguous and finite.

    Raises
    ------
    ShapeError, NonFiniteError
        On a non-array, wrong rank, non-float dtype or non-contiguous layout (ShapeError), NaN or
        inf (NonFiniteError); the message names the argument and what was received.

    Examples
    --------
    >>> import numpy as np
    >>> check_float_matrix("q", np.zeros((2, 3), dtype=np.float32)).shape
    (2, 3)
    >>> check_float_matrix("q", np.zeros((2, 3), dtype=np.int64))
    Traceback (most recent call last):
    ...
    anna.errors.ShapeError: q must be float32 or float64, got int64
    """
    x = check_matrix(name, x, ndim=ndim)
    if x.dtype.type not in _FLOAT_DTYPES:
        raise ShapeError(f"{name} must be float32 or float64, got {x.dtype}")
    if contiguous and not x.flags.c_contiguous:
        raise ShapeError(f"{name} must be C-contiguous (use np.ascontiguousarray), got strides {x.strides}")
    if finite and x.size and not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise NonFiniteError(f"{name} contains NaN or inf (first at index {tuple(int(i) for i in bad)})")
    return x


def check_same_rows(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    """Raise ShapeError unless ``a`` and ``b`` have the same number of rows."""
    if a.shape[0] != b.shape[0]:
        raise ShapeError(f"{name_a} and {name_b} must have the same number of rows, "
                         f"got {a.shape[0]} and {b.shape[0]}")


def normalize_seed(seed: int | np.integer | None) -> int:
    """Return ``seed`` as a non-negative Python int; ``None`` means 0 (deterministic by default).

    Examples
    --------
    >>> normalize_seed(None), normalize_seed(np.int64(7))
    (0, 7)
    """
    if seed is None:
        return 0
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ParameterError(f"seed must be a non-negative integer or None, got {seed!r}")
    if seed < 0:
        raise ParameterError(f"seed must be non-negative, got {seed}")
    return int(seed)


def check_int(name: str, value: object, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as a Python int (numpy integers accepted) within ``[low, high]``; a
    :class:`~anna.errors.ParameterError` naming ``name`` for a bool, a string, a float or a value
    out of range.

    Examples
    --------
    >>> check_int("ell", np.int64(4), low=1)
    4
    >>> check_int("ell", "4", low=1)
    Traceback (most recent call last):
    ...
    anna.errors.ParameterError: ell must be an integer, got '4' (str)
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ParameterError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low}" if high is None else (f"<= {high}" if low is None else f"in [{low}, {high}]")
        raise ParameterError(f"{name} must be {bounds}, got {value}")
    return value


def check_float(name: str, value: object, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite Python float (ints and numpy numbers accepted) within its bounds
    (open or closed); a :class:`~anna.errors.ParameterError` naming ``name`` otherwise.

    Examples
    --------
    >>> check_float("temperature", 2, low=0.0)
    2.0
    >>> check_float("temperature", float("nan"))
    Traceback (most recent call last):
    ...
    anna.errors.ParameterError: temperature must be a finite number, got nan
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
        raise ParameterError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    try:
        number = float(value)
    except OverflowError:
        raise ParameterError(f"{name} must be a finite number, got an integer of {len(str(value))} digits") from None
    if not math.isfinite(number):
        raise ParameterError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (number < low or (low_open and number == low)):
        raise ParameterError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (number > high or (high_open and number == high)):
        raise ParameterError(f"{name} must be {'<' if high_open else '<='} {high}, got {value!r}")
    return number


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a bool (numpy bools accepted); a :class:`~anna.errors.ParameterError`
    naming ``name`` otherwise (``'no'`` is not false, and not true either)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"{name} must be a bool (True or False), got {value!r} ({type(value).__name__})")
    return bool(value)


def check_finite_output(what: str, out: np.ndarray) -> np.ndarray:
    """``out`` if every entry is finite; a :class:`~anna.errors.NonFiniteError` saying where it
    overflowed otherwise (finite inputs so large that the computation left float range)."""
    if out.size and not np.isfinite(out).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(out))[0])
        raise NonFiniteError(f"{what} overflowed to NaN or inf (first at index {bad}): the inputs are finite but "
                             f"too large for {out.dtype}; scale them down")
    return out
