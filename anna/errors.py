"""Typed errors of the :mod:`anna` package.

Every class subclasses :class:`ValueError`, so code catching ``ValueError`` (and the tests written
before these classes existed) keeps working; the class says what kind of problem it was.

Examples
--------
>>> from anna.errors import AnnaError, ShapeError, ParameterError
>>> issubclass(ShapeError, AnnaError) and issubclass(ParameterError, ValueError)
True
"""
from __future__ import annotations

__all__ = ["AnnaError", "ShapeError", "ParameterError", "InputError", "ModelError", "NonFiniteError", "LoadError",
           "DeviceError"]


class AnnaError(ValueError):
    """Base class of the errors raised by :mod:`anna`."""


class ShapeError(AnnaError):
    """An array of the wrong type, rank, shape, dtype or layout (the message names the argument)."""


class ParameterError(AnnaError):
    """A scalar parameter of the wrong type or out of range (the message names the parameter)."""


class InputError(AnnaError):
    """Values of input data outside what the function takes (the shape is right, the values are
    not): token ids outside the vocabulary, a sequence longer than ``max_len``, negative attention
    weights, vectors that should have unit norm."""


class ModelError(AnnaError):
    """A transformer whose parts do not fit together (dimensions that disagree, a head without the
    LSH its kind needs), or one the operation cannot take (a theory-mode model where weight
    matrices are needed, a head kind it does not run)."""


class NonFiniteError(AnnaError):
    """NaN or inf in an input, or a computation that overflowed to NaN or inf: never returned silently."""


class LoadError(AnnaError):
    """A saved file (model, weights) that cannot be read back: the message names the file and the field."""


class DeviceError(AnnaError):
    """A device or accelerator library that is not there: ``device="cuda"`` without a CUDA GPU, or
    :mod:`anna.gpu` without torch / triton installed (the message says what to install)."""
