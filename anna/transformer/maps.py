"""Token-wise maps of the transformer: weight matrices (trained mode) or callables (theory mode).

A token-wise map sends the ``(N, d_in)`` matrix of token vectors to an ``(N, d_out)`` matrix, one
row per token. Two kinds exist:

- :class:`Linear` (trained mode): ``x @ weight + bias`` with ``weight`` of shape ``(d_in, d_out)``;
- a callable ``f(x, positions) -> ndarray`` (theory mode, docs/theory.md §2): any function of the token
  vector and its position (``positions`` is ``np.arange(N)``, 0-indexed, int64). It must act row
  by row; the transformer cannot check that, so it is the caller's promise. Integer or boolean
  results are converted to float64 (exact below 2**53), so IDs can be returned as they are.

:class:`MLP` is the trained token-wise feed-forward block ``GeLU(x W1 + b1) W2 + b2``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Union

import numba
import numpy as np

from .._validate import check_float_matrix
from ..errors import ParameterError, ShapeError

__all__ = ["Linear", "MLP", "Placement", "TokenFunction", "TokenMap", "as_token_map", "apply_map", "gelu",
           "describe_map"]

TokenFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]
TokenMap = Union["Linear", TokenFunction]


def _frozen_copy(name: str, x: object, ndim: int) -> np.ndarray:
    """A read-only private copy, so a frozen model cannot be changed through the caller's array."""
    x = check_float_matrix(name, np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x, ndim=ndim)
    x = x.copy()
    x.setflags(write=False)
    return x


@dataclass(frozen=True, eq=False, repr=False)
class Linear:
    """The affine token-wise map ``x ↦ x @ weight + bias`` (trained mode).

    Parameters
    ----------
    weight : ndarray, shape (d_in, d_out), float32 or float64
    bias : ndarray, shape (d_out,), optional (same dtype as ``weight``)

    The arrays are copied and made read-only.

    Examples
    --------
    >>> import numpy as np
    >>> f = Linear(np.eye(2), np.array([1.0, 0.0]))
    >>> f(np.array([[1.0, 2.0]])).tolist(), f.n_parameters, f
    ([[2.0, 2.0]], 6, Linear(2→2, bias))
    """

    weight: np.ndarray
    bias: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _frozen_copy("weight", self.weight, ndim=2))
        if self.bias is not None:
            bias = _frozen_copy("bias", self.bias, ndim=1)
            if bias.shape[0] != self.weight.shape[1]:
                raise ShapeError(f"bias must have length {self.weight.shape[1]} (weight columns), "
                                 f"got shape {bias.shape}")
            if bias.dtype != self.weight.dtype:
                raise ShapeError(f"bias dtype {bias.dtype} differs from weight dtype {self.weight.dtype}")
            object.__setattr__(self, "bias", bias)

    @property
    def in_dim(self) -> int:
        return int(self.weight.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.weight.shape[1])

    @property
    def n_parameters(self) -> int:
        return int(self.weight.size + (0 if self.bias is None else self.bias.size))

    def __call__(self, x: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
        """Apply to the rows of ``x``; ``positions`` is accepted and ignored (linear maps are position-free)."""
        y = x @ self.weight
        return y if self.bias is None else y + self.bias

    def __repr__(self) -> str:
        return f"Linear({self.in_dim}→{self.out_dim}{', bias' if self.bias is not None else ''})"


@dataclass(frozen=True, repr=False)
class Placement:
    """The fixed linear map placing a ``width``-vector into columns ``start .. start + width`` of a
    ``dim``-vector (a 0/1 selection matrix, no parameters).

    Head outputs that only fill a block of the residual stream use it: the transformer then adds
    the block in place instead of a dense ``(N, dim)`` matrix.

    Examples
    --------
    >>> import numpy as np
    >>> Placement(start=1, width=2, dim=4)(np.array([[5.0, 6.0]])).tolist()
    [[0.0, 5.0, 6.0, 0.0]]
    """

    start: int
    width: int
    dim: int

    def __post_init__(self) -> None:
        if min(self.start, 0) < 0 or self.width < 1 or self.start + self.width > self.dim:
            raise ParameterError(f"placement of {self.width} columns at {self.start} does not fit in dim {self.dim}")

    @property
    def columns(self) -> slice:
        return slice(self.start, self.start + self.width)

    def __call__(self, x: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
        out = np.zeros((x.shape[0], self.dim), dtype=x.dtype)
        out[:, self.columns] = x
        return out

    def __repr__(self) -> str:
        return f"Placement({self.width}→{self.dim} at {self.start})"


@numba.vectorize(["float32(float32)", "float64(float64)"], cache=True)
def _erf(x):  # pragma: no cover - compiled
    return math.erf(x)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GeLU ``x Φ(x) = x (1 + erf(x / √2)) / 2`` (torch's ``nn.GELU()`` default, not tanh).

    Examples
    --------
    >>> import numpy as np
    >>> gelu(np.array([-1.0, 0.0, 1.0])).round(6).tolist()
    [-0.158655, 0.0, 0.841345]
    """
    return 0.5 * x * (1.0 + _erf(x / x.dtype.type(math.sqrt(2.0))))


@dataclass(frozen=True, eq=False, repr=False)
class MLP:
    """The trained token-wise block ``GeLU(x W1 + b1) W2 + b2``, added residually by its layer.

    Parameters
    ----------
    hidden : Linear
        ``W1, b1`` of shape ``(d, h)`` and ``(h,)``; the paper uses ``h = 4d``.
    output : Linear
        ``W2, b2`` of shape ``(h, d)`` and ``(d,)``.

    Examples
    --------
    >>> import numpy as np
    >>> mlp = MLP(Linear(np.ones((2, 8))), Linear(np.ones((8, 2))))
    >>> mlp.dim, mlp.hidden_dim, mlp.n_parameters
    (2, 8, 32)
    """

    hidden: Linear
    output: Linear

    def __post_init__(self) -> None:
        if not isinstance(self.hidden, Linear) or not isinstance(self.output, Linear):
            raise ParameterError(f"MLP hidden and output must be Linear maps, got {self.hidden!r} and {self.output!r}")
        if self.hidden.out_dim != self.output.in_dim or self.output.out_dim != self.hidden.in_dim:
            raise ShapeError(f"MLP shapes must be (d, h) then (h, d), got {self.hidden.weight.shape} "
                             f"then {self.output.weight.shape}")

    @property
    def dim(self) -> int:
        return self.hidden.in_dim

    @property
    def hidden_dim(self) -> int:
        return self.hidden.out_dim

    @property
    def n_parameters(self) -> int:
        return self.hidden.n_parameters + self.output.n_parameters

    def __call__(self, x: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
        return self.output(gelu(self.hidden(x)))

    def __repr__(self) -> str:
        return f"MLP({self.dim}→{self.hidden_dim}→{self.dim}, GeLU)"


def as_token_map(name: str, f: object) -> TokenMap:
    """Accept a :class:`Linear`, a weight matrix (made a bias-free :class:`Linear`) or a callable."""
    if isinstance(f, Linear):
        return f
    if isinstance(f, np.ndarray):
        return Linear(f)
    if callable(f):
        return f
    raise ParameterError(f"{name} must be a weight matrix, a Linear or a callable f(x, positions), got {type(f).__name__}")


def apply_map(name: str, f: TokenMap, x: np.ndarray, positions: np.ndarray,
              out_dim: int | None = None) -> np.ndarray:
    """Apply a token-wise map and check its result: rank 2, one row per token, finite floats.

    ``out_dim`` (when given) is the number of columns the result must have. Integer and boolean
    results of callables become float64.
    """
    if isinstance(f, Linear) and x.shape[1] != f.in_dim:
        raise ShapeError(f"{name} expects {f.in_dim} input columns, got x of shape {x.shape}")
    y = f(x, positions)
    if isinstance(y, np.ndarray) and (y.dtype == np.bool_ or np.issubdtype(y.dtype, np.integer)):
        y = y.astype(np.float64)
    if isinstance(y, np.ndarray):
        y = np.ascontiguousarray(y)
    y = check_float_matrix(f"{name} output", y)
    if y.shape[0] != x.shape[0]:
        raise ShapeError(f"{name} must return one row per token ({x.shape[0]}), got shape {y.shape}")
    if out_dim is not None and y.shape[1] != out_dim:
        raise ShapeError(f"{name} must return {out_dim} columns, got shape {y.shape}")
    return y


def describe_map(f: object) -> str:
    """A short label: ``Linear(2→3)``, ``MLP(...)`` or ``callable <name>``."""
    if isinstance(f, (Linear, MLP, Placement)):
        return repr(f)
    return f"callable {getattr(f, '__qualname__', type(f).__name__)}"
