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

__all__ = ["AnnaError", "ShapeError", "ParameterError", "InputError", "NonFiniteError", "LoadError",
           "DeviceError"]


class AnnaError(ValueError):
    """Base class of the errors raised by :mod:`anna`."""


class ShapeError(AnnaError):
    """An array of the wrong type, rank, shape, dtype or layout (the message names the argument)."""


class ParameterError(AnnaError):
    """A scalar parameter of the wrong type or out of range (the message names the parameter)."""


class InputError(AnnaError):
    """Input data a model or task cannot take: token ids outside the vocabulary, a sequence longer
    than ``max_len``, targets that do not line up with their inputs."""


class NonFiniteError(AnnaError):
    """NaN or inf in an input, or a computation that overflowed to NaN or inf: never returned silently."""


class LoadError(AnnaError):
    """A saved file (model, weights) that cannot be read back: the message names the file and the field."""


class DeviceError(AnnaError):
    """A device or accelerator library that is not there: ``device="cuda"`` without a CUDA GPU, or
    :mod:`anna.gpu` without torch / triton installed (the message says what to install)."""
