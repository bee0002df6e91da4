"""Boundary checks for arrays entering the anna package.

Every public function validates its inputs here, so a bad call fails with a ValueError that
says what was received, never deep inside a numba kernel.
"""
from __future__ import annotations

import numpy as np

__all__ = ["check_matrix", "check_float_matrix", "check_same_rows", "normalize_seed"]

_FLOAT_DTYPES = (np.float32, np.float64)


def check_matrix(name: str, x: object, *, ndim: int = 2) -> np.ndarray:
    """Return ``x`` as an ndarray of rank ``ndim``; raise ValueError naming ``name`` otherwise."""
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must have rank {ndim}, got shape {x.shape}")
    return x


def check_float_matrix(name: str, x: object, *, ndim: int = 2, finite: bool = True,
                       contiguous: bool = True) -> np.ndarray:
    """Check a float32/float64 array of rank ``ndim``, C-contiguous and finite.

    Raises
    ------
    ValueError
        On a non-array, wrong rank, non-float dtype, non-contiguous layout, NaN or inf; the
        message names the argument and what was received.

    Examples
    --------
    >>> import numpy as np
    >>> check_float_matrix("q", np.zeros((2, 3), dtype=np.float32)).shape
    (2, 3)
    >>> check_float_matrix("q", np.zeros((2, 3), dtype=np.int64))
    Traceback (most recent call last):
    ...
    ValueError: q must be float32 or float64, got int64
    """
    x = check_matrix(name, x, ndim=ndim)
    if x.dtype.type not in _FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32 or float64, got {x.dtype}")
    if contiguous and not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray), got strides {x.strides}")
    if finite and x.size and not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{name} contains NaN or inf (first at index {tuple(int(i) for i in bad)})")
    return x


def check_same_rows(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    """Raise ValueError unless ``a`` and ``b`` have the same number of rows."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{name_a} and {name_b} must have the same number of rows, "
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
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return int(seed)
