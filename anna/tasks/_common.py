"""Argument checks shared by the task modules (integer vectors and integer parameters).

Every public task function validates through these helpers, so a bad call raises a typed error
of :mod:`anna.errors` (a ValueError) naming the argument and what was received.
"""
from __future__ import annotations

import numpy as np

from anna._validate import check_matrix
from anna.errors import InputError, ParameterError, ShapeError

__all__ = ["check_int_param", "check_int_vector"]


def check_int_vector(name: str, x: object, *, low: int | None = None,
                     high: int | None = None) -> np.ndarray:
    """Return ``x`` if it is a 1-D integer ndarray with values in ``[low, high)``.

    ``low`` / ``high`` of ``None`` mean unbounded on that side.

    Raises
    ------
    ShapeError, InputError
        On a non-array, a rank other than 1, a non-integer dtype (bool included) (ShapeError),
        or a value outside the range (InputError); the message names ``name`` and the first offending value.

    Examples
    --------
    >>> check_int_vector("x", np.array([0, 2, 1]), low=0, high=3).tolist()
    [0, 2, 1]
    >>> check_int_vector("x", np.array([0, 3]), low=0, high=3)
    Traceback (most recent call last):
    ...
    anna.errors.InputError: x must have values in [0, 3), got 3 at index 1
    """
    x = check_matrix(name, x, ndim=1)
    if not np.issubdtype(x.dtype, np.integer):
        raise ShapeError(f"{name} must have an integer dtype, got {x.dtype}")
    if x.size:
        bad = np.zeros(x.shape, dtype=bool)
        if low is not None:
            bad |= x < low
        if high is not None:
            bad |= x >= high
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            lo = "-inf" if low is None else str(low)
            hi = "inf" if high is None else str(high)
            raise InputError(f"{name} must have values in [{lo}, {hi}), got {x[i]} at index {i}")
    return x


def check_int_param(name: str, value: object, *, minimum: int) -> int:
    """Return ``value`` as a Python int if it is an integer (not bool) ``>= minimum``.

    Examples
    --------
    >>> check_int_param("k", np.int64(2), minimum=0)
    2
    >>> check_int_param("k", -1, minimum=0)
    Traceback (most recent call last):
    ...
    anna.errors.ParameterError: k must be an integer >= 0, got -1
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)
