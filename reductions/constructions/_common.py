"""Shared pieces of the direct constructions: integer keys, their LSH, input checks, head helpers.

Every query and key of the direct constructions is a vector of small integers (a symbol, a
position, a (symbol, rank) pair). Exact-match attention compares them for equality. For ANNA
(Algorithm 1) the same vectors are hashed as points of R^m: equal vectors are at distance 0 and
distinct integer vectors at distance at least 1, so an (r, c)-ANNA with ``c * r = 1`` separates
them. :func:`integer_lsh` takes E2LSH of cell width 1 with ``r = 0.01`` and ``c = 100`` and
the (z, ell) that Theorem 3.4 prescribes for ``n`` tokens (docs/theory.md §3); equal keys then collide
in every table (distance 0), so ANNA's weights equal exact-match weights unless a far pair
collides somewhere, an event of probability at most the theorem's ``eta_bound``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from anna.lsh import E2LSH, LSHConfig, TheoryParameters, theory_parameters
from anna.transformer import Transformer

__all__ = ["INT_NEAR", "INT_FAR", "ATTENTIONS", "integer_lsh_parameters", "integer_lsh", "check_symbols",
           "check_attention", "with_lsh", "columns", "place"]

INT_NEAR = 0.01
"""The LSH's near radius ``r`` for integer keys (equal keys are at distance 0 <= r)."""
INT_FAR = 1.0
"""``c * r``: distinct integer vectors are at least this far apart."""
MAX_EXACT = 2**52
"""Integers below this survive the float64 residual stream exactly."""
ATTENTIONS = ("ema", "anna")


def integer_lsh_parameters(n: int) -> TheoryParameters:
    """Theorem 3.4's (z, ell) for ``n`` tokens of integer keys: E2LSH(width=1), r = 0.01, c = 100.

    Examples
    --------
    >>> t = integer_lsh_parameters(2**10)
    >>> t.z, t.ell, t.theorem_applies
    (21, 25, True)
    """
    family = E2LSH(width=1.0)
    return theory_parameters(max(2, int(n)), INT_NEAR, INT_FAR / INT_NEAR, family)


def integer_lsh(n: int) -> LSHConfig:
    """The :class:`~anna.lsh.LSHConfig` of :func:`integer_lsh_parameters` (E2LSH, theory z and ell)."""
    return integer_lsh_parameters(n).config(E2LSH(width=1.0))


def check_attention(attention: object) -> str:
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
    return str(attention)


def check_symbols(name: str, x: object, *, high: int | None = None) -> np.ndarray:
    """``x`` as a 1-D int64 array of symbols in ``[0, high)`` (``high`` default ``2**52``)."""
    if not isinstance(x, np.ndarray) or x.ndim != 1:
        raise ValueError(f"{name} must be a 1-D numpy array of non-negative integers, got "
                         f"{type(x).__name__} {getattr(x, 'shape', '')}")
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{name} must have an integer dtype, got {x.dtype}")
    if x.size == 0:
        raise ValueError(f"{name} must hold at least one token")
    bound = MAX_EXACT if high is None else int(high)
    bad = np.flatnonzero((x < 0) | (x >= bound))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name} must have values in [0, {bound}), got {x[i]} at index {i}")
    return x.astype(np.int64)


def with_lsh(model: Transformer, attention: str, n: int | None, lsh: LSHConfig | None,
             seed: int) -> Transformer:
    """``model`` (built with ema heads) as it is, or with every head turned into Algorithm 1.

    ``lsh`` defaults to :func:`integer_lsh` for ``n`` tokens; one of the two is required for anna.
    """
    if check_attention(attention) == "ema":
        if lsh is not None:
            raise ValueError("lsh is only used with attention='anna'")
        return model
    if lsh is None:
        if n is None:
            raise ValueError("attention='anna' needs n (the number of tokens, for Theorem 3.4's z and ell) or lsh")
        lsh = integer_lsh(n)
    if not isinstance(lsh, LSHConfig):
        raise ValueError(f"lsh must be an LSHConfig, got {lsh!r}")
    return model.with_attention("anna", lsh=lsh, seed=seed)


def columns(*cols: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A token-wise map reading the given residual columns."""
    index = list(cols)

    def read(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x[:, index])

    return read


def place(cols: Sequence[int], dim: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A head's output map W_h writing the attended vector into residual columns ``cols``."""
    index = list(cols)

    def write(attended: np.ndarray, positions: np.ndarray) -> np.ndarray:
        out = np.zeros((attended.shape[0], dim), dtype=np.float64)
        out[:, index] = attended
        return out

    return write
