"""Theorem 5.6: k-hop induction heads in depth O(log k), built directly and compiled from MPC.

The task (docs/theory.md §5, 0-based as in :mod:`anna.tasks.khop`): ``find¹(p) = r + 1`` for the last
``r < p`` with ``x_r = x_p`` (``-1`` if none), ``find^k = find¹ ∘ find^{k-1}``, ``hop_k(x)_p =
x[find^k(p)]`` or ``⊥`` (:data:`anna.tasks.BOTTOM`).

Direct construction (causal, averaging heads only)
--------------------------------------------------
The predecessor selects the latest earlier occurrence with a softmax positional bias; averaging
attention (exact match, or ANNA) cannot take a maximum, so the construction names that occurrence
exactly instead. Let ``c_p = |{r <= p : x_r = x_p}|`` be the *rank* of the occurrence at ``p``. The
previous occurrence of ``x_p`` is the unique ``r`` with ``(x_r, c_r) = (x_p, c_p - 1)``, so
``find¹(p)`` is the unique ``j`` whose predecessor carries that pair: one exact-match lookup on
2-dimensional integer keys. Ranks come from averages:

1. Layer 1 (2 heads). (a) query ``x_p``, key ``x_r``, value ``r``: the mean position ``μ_p`` of
   the occurrences of ``x_p`` up to ``p``; ``p`` is a first occurrence iff ``μ_p = p`` (else at
   least one of the ``c_p >= 2`` averaged positions is ``<= p - 1``, so ``μ_p <= p - 1/2``), read
   as ``first_p = [μ_p > p - 1/4]``. (b) query ``p - 1``, key
   ``r``, value ``(1, x_r)``: the previous token ``x_{p-1}`` (query ``-1`` at ``p = 0``: no key).
2. Layer 2 (2 heads), value ``first_r``. (c) query ``x_p``, key ``x_r``: exactly one of the
   ``c_p`` matches is a first occurrence, so the mean is ``1 / c_p``. (d) query ``x_{p-1}``, key
   ``x_r``: ``1 / (c_{p-1} + [x_p = x_{p-1}])`` (the causal window includes ``p`` itself).
3. Layer 3 (1 head, m = 2). Query ``(x_p, c_p - 1)``, key ``(x_{j-1}, c_{j-1})``, value
   ``(1, j, x_j)``: the single match is ``j = find¹(p)``, so the head delivers ``(1, find¹(p),
   hop_1(p))``; a first occurrence asks for rank 0, which no key has: the zero vector, i.e. ⊥.
4. Pointer doubling along the bits of ``k`` (2 heads, m = 1, value ``(valid, pointer, token)``):
   ``g`` holds ``find^{2^j}`` with its token, ``a`` holds ``find^{k mod 2^j}``. A layer computes
   ``g ← g ∘ g`` (query ``g(p)``, key position, value the target's ``g``) and, for a set bit,
   ``a ← g ∘ a`` (query ``a(p)``); ``a ← g`` for the lowest set bit is a token-wise copy in the
   layer's MLP. Pointers never exceed the querying position, so every layer is causal. A missing
   pointer queries ``-1``, which no position matches.

Depth ``L(k) = 3 + (bit_length(k) - 1) + [popcount(k) > 1] <= floor(log2 k) + 4`` for ``k >= 1``
(``L(0) = 0``: ψ reads the tokens), independent of ``N``; at most 2 heads per layer, ``m <= 3``
(value width), residual stream ``d = 18``. The predecessor's softmax construction has
``floor(log2 k) + 2`` layers.

ANNA. Every query and key is an integer vector, so ``attention="anna"`` swaps each head for
Algorithm 1 with E2LSH at Theorem 3.4's (z, ell) for ``n`` tokens
(:func:`~reductions.constructions.integer_lsh`). Layers 1 and 2 average over all equal keys, so
they need Algorithm 1's weights ``c_ij / sum_j c_ij`` uniform over a group of equal keys: true
when the keys of a group are equal vectors (they collide in the same tables), whatever the
queries. Queries may therefore sit anywhere within ``r`` of their keys, and the keys of a group
may move together (:func:`reductions.claims.jitter.jittered` with ``keys="value"``; Theorems 5.4
and 5.6 check it); keys moved one by one get unequal weights and the averages fail.

Compiled route. :func:`compiled_khop` compiles the pointer-doubling MPC protocol
(:class:`mpc_sim.protocols.khop.KHop`) with Theorem 4.1 (:func:`reductions.compile.compile_mpc`):
one layer per round, ``5 + T(P) + [P > 1] + 2J(k)`` layers where the block sort's ``T(P)`` grows
with ``N`` (``P`` working machines), so that route's depth is ``2 log2 k + O(log² N)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anna.lsh import LSHConfig
from anna.tasks import BOTTOM
from anna.transformer import Head, Layer, Transformer
from mpc_sim import MPCConfig
from mpc_sim.protocols.khop import KHop, doubling_steps

from ..compile import CompiledModel, compile_mpc
from ._common import check_attention, check_symbols, columns, place, with_lsh

__all__ = ["khop_transformer", "khop_depth", "predecessor_depth", "doubling_program", "Doubling",
           "compiled_khop", "compiled_khop_depth"]

# residual stream columns
_X, _MEAN, _PREV_OK, _PREV_X, _INV_COUNT, _INV_PREV_COUNT = 0, 1, 2, 3, 4, 5
_G, _A, _SCRATCH_G, _SCRATCH_A = (6, 7, 8), (9, 10, 11), (12, 13, 14), (15, 16, 17)
_DIM = 18
_NONE = -1.0  # a query no key equals (keys are positions, symbols and ranks, all >= 0)


def _check_k(k: object) -> int:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be an integer >= 0, got {k!r}")
    return int(k)


@dataclass(frozen=True)
class Doubling:
    """One pointer-doubling layer: ``copy`` sets ``a ← g`` (token-wise, old ``g``), ``g_req``
    computes ``g ← g ∘ g``, ``a_req`` computes ``a ← g ∘ a``."""

    copy: bool
    g_req: bool
    a_req: bool

    def __post_init__(self) -> None:
        if not all(isinstance(flag, bool) for flag in (self.copy, self.g_req, self.a_req)):
            raise ValueError(f"Doubling flags must be bools, got {self!r}")
        if self.copy and self.a_req:
            raise ValueError("a doubling layer copies a <- g only while a is the identity, never with a <- g o a")
        if not (self.g_req or self.a_req):
            raise ValueError("a doubling layer needs at least one lookup (g_req or a_req)")


def doubling_program(k: int) -> tuple[tuple[Doubling, ...], str]:
    """The doubling layers for ``k >= 1`` and the register (``"a"`` or ``"g"``) holding ``find^k``.

    Examples
    --------
    >>> layers, answer = doubling_program(3)
    >>> [(d.copy, d.g_req, d.a_req) for d in layers], answer
    ([(True, True, False), (False, False, True)], 'a')
    >>> len(doubling_program(8)[0]), doubling_program(8)[1]
    (3, 'g')
    """
    k = _check_k(k)
    if k < 1:
        raise ValueError(f"the doubling program needs k >= 1, got {k}")
    layers, answer = [], "a"
    for copy, g_req, a_req in doubling_steps(k):       # the protocol's program, one layer per step
        if g_req or a_req:
            layers.append(Doubling(copy, g_req, a_req))
        elif copy:  # top bit of a power of two: find^k is g itself, no layer needed
            answer = "g"
    return tuple(layers), answer


def khop_depth(k: int) -> int:
    """Layers of :func:`khop_transformer`: ``0`` for ``k = 0``, else ``3 + bit_length(k) - 1 +
    [popcount(k) > 1]``.

    Examples
    --------
    >>> [khop_depth(k) for k in (0, 1, 2, 3, 4, 7, 8, 64)]
    [0, 3, 4, 5, 5, 6, 6, 9]
    """
    k = _check_k(k)
    return 0 if k == 0 else 3 + len(doubling_program(k)[0])


def predecessor_depth(k: int) -> int:
    """The predecessor's softmax construction: ``floor(log2 k) + 2`` layers (``k >= 1``)."""
    k = _check_k(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return k.bit_length() + 1


# --- token-wise maps --------------------------------------------------------------------------
def _positions(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return positions.astype(np.float64)[:, None]


def _previous_position(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return np.where(positions > 0, positions - 1.0, _NONE)[:, None]


def _one_and_token(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return np.c_[np.ones(x.shape[0]), x[:, _X]]


def _first_occurrence(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return (x[:, _MEAN] > positions - 0.25).astype(np.float64)[:, None]


def _previous_token_query(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return np.where(x[:, _PREV_OK] > 0.5, x[:, _PREV_X], _NONE)[:, None]


def _rank(inverse: np.ndarray) -> np.ndarray:
    safe = np.where(inverse > 0, inverse, 1.0)
    return np.where(inverse > 0, np.rint(1.0 / safe), 0.0)


def _rank_query(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``(x_p, c_p - 1)``: the pair that the previous occurrence of ``x_p`` holds."""
    return np.c_[x[:, _X], _rank(x[:, _INV_COUNT]) - 1.0]


def _rank_key(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``(x_{j-1}, c_{j-1})`` at position ``j`` (``(-1, -1)`` at ``j = 0``)."""
    has_prev = x[:, _PREV_OK] > 0.5
    same = (x[:, _PREV_X] == x[:, _X]).astype(np.float64)
    rank = _rank(x[:, _INV_PREV_COUNT]) - same
    return np.where(has_prev[:, None], np.c_[x[:, _PREV_X], rank], _NONE)


def _one_position_token(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return np.c_[np.ones(x.shape[0]), positions.astype(np.float64), x[:, _X]]


def _pointer_query(register: tuple[int, int, int]):
    valid, pointer, _ = register

    def query(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return np.where(x[:, valid] > 0.5, x[:, pointer], _NONE)[:, None]

    return query


def _doubling_mlp(step: Doubling):
    """Residual update after a doubling layer: install the new registers, clear the scratch."""

    def mlp(y: np.ndarray, positions: np.ndarray) -> np.ndarray:
        target = y.copy()
        if step.copy:
            target[:, list(_A)] = y[:, list(_G)]
        if step.a_req:
            target[:, list(_A)] = y[:, list(_SCRATCH_A)]
        if step.g_req:
            target[:, list(_G)] = y[:, list(_SCRATCH_G)]
        target[:, list(_SCRATCH_G + _SCRATCH_A)] = 0.0
        return target - y

    return mlp


def _head(query, key, value, cols, dim: int, value_dim: int) -> Head:
    return Head("ema", query, key, value, place(cols, _DIM), dim=dim, value_dim=value_dim)


def khop_transformer(k: int, *, attention: str = "ema", n: int | None = None, lsh: LSHConfig | None = None,
                     seed: int = 0) -> Transformer:
    """The direct causal k-hop transformer (module docstring): depth :func:`khop_depth` ``(k)``.

    Parameters
    ----------
    k : int
        Number of hops, ``>= 0``.
    attention : {"ema", "anna"}
        Exact-match heads, or Algorithm 1 on the same integer queries and keys.
    n : int, optional
        Sequence length the LSH is sized for (Theorem 3.4); needed for ``anna`` without ``lsh``.
    lsh : LSHConfig, optional
        Overrides the theory's E2LSH configuration.
    seed : int
        Model seed (hashing seeds of anna heads).

    Returns
    -------
    Transformer
        ``model(x)`` for a 1-D array of non-negative integer symbols is ``hop_k(x)`` as int64,
        :data:`anna.tasks.BOTTOM` for ⊥.

    Examples
    --------
    >>> x = np.array([0, 0, 1, 2, 1, 0, 1, 2, 0])          # aabcbabca
    >>> khop_transformer(1)(x).tolist()
    [-1, 0, -1, -1, 2, 1, 0, 1, 1]
    >>> int(khop_transformer(2)(x)[8]), khop_transformer(2).report().depth
    (0, 4)
    """
    k = _check_k(k)
    check_attention(attention)

    def embed(inputs: np.ndarray) -> np.ndarray:
        tokens = check_symbols("x", inputs)
        out = np.zeros((tokens.shape[0], _DIM), dtype=np.float64)
        out[:, _X] = tokens
        return out

    layers: list[Layer] = []
    answer = (None, _X)
    if k >= 1:
        token = columns(_X)
        layers.append(Layer((
            _head(token, token, _positions, (_MEAN,), 1, 1),
            _head(_previous_position, _positions, _one_and_token, (_PREV_OK, _PREV_X), 1, 2),
        ), causal=True))
        layers.append(Layer((
            _head(token, token, _first_occurrence, (_INV_COUNT,), 1, 1),
            _head(_previous_token_query, token, _first_occurrence, (_INV_PREV_COUNT,), 1, 1),
        ), causal=True))
        layers.append(Layer((_head(_rank_query, _rank_key, _one_position_token, _G, 2, 3),), causal=True))
        program, register = doubling_program(k)
        g_value = columns(*_G)
        for step in program:
            heads = []
            if step.g_req:
                heads.append(_head(_pointer_query(_G), _positions, g_value, _SCRATCH_G, 1, 3))
            if step.a_req:
                heads.append(_head(_pointer_query(_A), _positions, g_value, _SCRATCH_A, 1, 3))
            layers.append(Layer(tuple(heads), mlp=_doubling_mlp(step), causal=True))
        valid, _, tok = _A if register == "a" else _G
        answer = (valid, tok)

    def readout(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        valid, tok = answer
        if valid is None:
            return np.rint(x[:, tok]).astype(np.int64)
        return np.where(x[:, valid] > 0.5, np.rint(x[:, tok]), BOTTOM).astype(np.int64)

    model = Transformer(embed, tuple(layers), readout, seed=seed, dim=_DIM)
    if not layers:  # k = 0: no heads to run on LSH
        return model
    return with_lsh(model, attention, n, lsh, seed)


# --- the compiled route -----------------------------------------------------------------------
def compiled_khop(k: int, n: int, *, eps: float = 0.5, attention: str = "ema", seed: int = 0,
                  config: MPCConfig | None = None) -> CompiledModel:
    """Theorem 4.1 applied to the pointer-doubling protocol :class:`~mpc_sim.protocols.khop.KHop`.

    ``config`` defaults to ``KHop(k).default_config(n, eps)``; the model's tokens are machines
    (:meth:`CompiledModel.tokens`), and ``model(x)`` is ``hop_k(x)`` with ⊥ as ``-1``.

    Examples
    --------
    >>> model = compiled_khop(2, 16)
    >>> model.report.depth == KHop(k=2).rounds_bound(KHop(k=2).default_config(16, 0.5))
    True
    """
    k = _check_k(k)
    protocol = KHop(k=k, bottom=BOTTOM)
    config = protocol.default_config(n, eps) if config is None else config
    return compile_mpc(protocol, config, seed=seed, attention=check_attention(attention))


def compiled_khop_depth(k: int, n: int, *, eps: float = 0.5) -> int:
    """Depth of :func:`compiled_khop` without building it: the protocol's round bound."""
    protocol = KHop(k=_check_k(k), bottom=BOTTOM)
    return protocol.rounds_bound(protocol.default_config(n, eps))
