"""Theorem 5.2: Match2 with one layer, one head and m = 1 (docs/theory.md §4-§5).

Construction
------------
Token ``i`` holds ``x_i`` in ``[M]``. The single head attends with

    Q(x_i) = (-x_i) mod M,    K(x_j) = x_j,    V ≡ 1,    r = 0 (exact match),

so query ``i`` matches exactly the keys ``j`` with ``x_i + x_j ≡ 0 (mod M)`` (``j = i`` included).
The attended value is the mean of ones over the matches: ``1`` if there is one, and, by the
empty-neighbourhood convention (docs/theory.md §2), the zero vector if there is none. ψ reads
``[attended > 1/2]``: the Match2 label. Residual stream ``d = 2`` (the token, the head's output).

With ``attention="anna"`` the head runs Algorithm 1 on the same 1-dimensional integer queries and
keys, E2LSH with Theorem 3.4's (z, ell) (:func:`reductions.constructions.integer_lsh`):
equal values collide in every table, distinct ones (at distance >= 1) rarely.
"""
from __future__ import annotations

import numpy as np

from anna.lsh import LSHConfig
from anna.transformer import Head, Layer, Transformer

from ._common import check_attention, check_symbols, with_lsh

__all__ = ["match2_transformer"]


def _check_modulus(modulus: object) -> int:
    if isinstance(modulus, (bool, np.bool_)) or not isinstance(modulus, (int, np.integer)) or modulus < 2:
        raise ValueError(f"modulus must be an integer >= 2, got {modulus!r}")
    if modulus > 2**52:
        raise ValueError(f"modulus must be at most 2**52 (exact in float64), got {modulus}")
    return int(modulus)


def match2_transformer(modulus: int, *, attention: str = "ema", n: int | None = None,
                       lsh: LSHConfig | None = None, seed: int = 0) -> Transformer:
    """The Theorem 5.2 transformer for Match2 modulo ``modulus``: 1 layer, 1 head, m = 1.

    Parameters
    ----------
    modulus : int
        ``M >= 2``; inputs are 1-D integer arrays with values in ``[0, M)``.
    attention : {"ema", "anna"}
        Exact-match head (r = 0), or Algorithm 1 with ``lsh``.
    n : int, optional
        Sequence length the LSH is sized for (Theorem 3.4); needed for ``anna`` without ``lsh``.
    lsh : LSHConfig, optional
        Overrides the theory's E2LSH configuration.
    seed : int
        Model seed (hashing seed of the anna head).

    Returns
    -------
    Transformer
        ``model(x)`` is the int64 label vector (``1`` where ``x_i`` has a partner).

    Examples
    --------
    >>> model = match2_transformer(5)
    >>> model(np.array([1, 4, 0, 2])).tolist()
    [1, 1, 1, 0]
    >>> r = model.report()
    >>> r.depth, r.max_heads, r.m
    (1, 1, 1)
    """
    modulus = _check_modulus(modulus)
    check_attention(attention)

    def embed(inputs: np.ndarray) -> np.ndarray:
        x = check_symbols("x", inputs, high=modulus)
        out = np.zeros((x.shape[0], 2), dtype=np.float64)
        out[:, 0] = x
        return out

    def query(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return np.mod(-x[:, :1], modulus)

    def key(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return x[:, :1].copy()

    def value(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return np.ones((x.shape[0], 1), dtype=np.float64)

    def output(attended: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return np.c_[np.zeros(attended.shape[0]), attended[:, 0]]

    def readout(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return (x[:, 1] > 0.5).astype(np.int64)

    head = Head("ema", query, key, value, output, dim=1, value_dim=1)
    model = Transformer(embed, (Layer((head,)),), readout, seed=seed, dim=2)
    return with_lsh(model, attention, n, lsh, seed)
