"""The forward pass's vocabulary: embedding rows, a head's ``q, k, v``, finishing a layer.

:meth:`anna.transformer.Transformer.run` (one sequence), the decompiler's protocols
(:mod:`reductions.decompile`, a machine's block of tokens) and the batched experiment evaluator
(:mod:`anna.experiments.evaluate`, many sequences at once) all compute the token-wise part of the
forward pass with these functions, so the three agree by construction; only attention itself
differs between them (a kernel, MPC rounds, batched collision counts).

Arrays may carry leading batch axes: token vectors ``x`` have shape ``(..., N, d)`` and a
token-wise map sees them as one ``(rows, d)`` matrix (one BLAS call for the whole batch).
``positions`` are the tokens' 0-based positions, shape ``(N,)`` or ``x.shape[:-1]``; ``None``
means ``0 .. N-1`` in every sequence. Position-free maps (:class:`~.maps.Linear`,
:class:`~.maps.MLP`, :class:`~.maps.Placement`) never build them.

``checked=True`` validates every map's result as :func:`~.maps.apply_map` does (rank, one row per
token, columns, finite floats) and names the map that failed; the evaluator, which only runs
trained-mode models (weight matrices, shapes checked when the model was built), turns it off.

Examples
--------
>>> import numpy as np
>>> from anna.transformer import init_transformer
>>> model = init_transformer(vocab_size=5, dim=4, n_outputs=2, depth=1, max_len=8, seed=0)
>>> batch = np.array([[1, 2, 3], [4, 0, 1]])
>>> x = embed_tokens(model.embedding, batch)                      # (2 sequences, N = 3, d = 4)
>>> q, k, v = head_qkv(model.layers[0].heads[0], x)
>>> x.shape, q.shape
((2, 3, 4), (2, 3, 4))
>>> bool(np.array_equal(x[1], model.run(batch[1]).states[0]))
True
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numba
import numpy as np

from ..errors import InputError, ShapeError
from ..reference import normalize_rows
from .maps import MLP, Linear, Placement, TokenMap, apply_map, gelu

__all__ = ["embed_tokens", "tokenwise", "rowwise", "head_qkv", "finish_layer", "mlp_forward"]

_POSITION_FREE = (Linear, MLP, Placement)


def embed_tokens(embedding: Any, ids: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
    """``tokens[ids] + positions_table[positions]`` of a :class:`~.model.TokenEmbedding`.

    Parameters
    ----------
    embedding : TokenEmbedding
    ids : integer ndarray, shape (..., N)
        Token ids in ``[0, vocab_size)``.
    positions : integer ndarray, optional
        Positions of the tokens (shape ``(N,)`` or ``ids.shape``); ``None``: ``0 .. N-1``, the
        first ``N`` rows of the positional table.

    Raises
    ------
    InputError
        A token id outside the vocabulary, or a sequence (position) beyond ``max_len``.

    Examples
    --------
    >>> import numpy as np
    >>> from anna.transformer import TokenEmbedding
    >>> e = TokenEmbedding(np.eye(3), 10 * np.eye(3))
    >>> embed_tokens(e, np.array([[2, 0]])).tolist()
    [[[10.0, 0.0, 1.0], [1.0, 10.0, 0.0]]]
    >>> embed_tokens(e, np.array([2]), positions=np.array([2])).tolist()
    [[0.0, 0.0, 11.0]]
    """
    if ids.size and (ids.min() < 0 or ids.max() >= embedding.vocab_size):
        raise InputError(f"inputs must be token ids in [0, {embedding.vocab_size}), got values in "
                         f"[{ids.min()}, {ids.max()}]")
    x = embedding.tokens[ids]
    table = embedding.positions
    if table is None:
        return x
    if positions is None:
        n = ids.shape[-1]
        if n > embedding.max_len:
            raise InputError(f"inputs have length {n}, longer than max_len {embedding.max_len}")
        return x + table[:n]
    if positions.size and positions.max() >= embedding.max_len:
        raise InputError(f"position {int(positions.max())} is beyond the embedding's max_len {embedding.max_len}")
    return x + table[positions]


def rowwise(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """``fn`` of the rows of ``x`` (shape ``(..., N, d)``) as one ``(rows, d)`` matrix, reshaped back.

    Examples
    --------
    >>> import numpy as np
    >>> rowwise(lambda rows: rows[:, ::-1], np.arange(6.0).reshape(1, 3, 2))[0].tolist()
    [[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]]
    """
    if x.ndim == 2:
        return fn(x)
    y = fn(x.reshape(-1, x.shape[-1]))
    return y.reshape(*x.shape[:-1], y.shape[-1])


def _flat_positions(f: TokenMap, x: np.ndarray, positions: np.ndarray | None) -> np.ndarray | None:
    if isinstance(f, _POSITION_FREE):
        return positions if x.ndim == 2 else None
    if positions is None:
        positions = np.arange(x.shape[-2], dtype=np.int64)
    return positions if x.ndim == 2 else np.broadcast_to(positions, x.shape[:-1]).reshape(-1)


def tokenwise(name: str, f: TokenMap | MLP, x: np.ndarray, positions: np.ndarray | None = None,
              out_dim: int | None = None, *, checked: bool = True) -> np.ndarray:
    """A token-wise map ``f`` (Linear, MLP, Placement or callable ``f(x, positions)``) on ``x``.

    ``name`` and ``out_dim`` are used by the check (``checked=True``): the error names the map,
    and the result must have ``out_dim`` columns when it is given. An :class:`~.maps.MLP` runs
    through :func:`mlp_forward`.

    Examples
    --------
    >>> import numpy as np
    >>> from anna.transformer import Linear
    >>> tokenwise("value", Linear(2 * np.eye(2)), np.ones((3, 1, 2))).tolist()
    [[[2.0, 2.0]], [[2.0, 2.0]], [[2.0, 2.0]]]
    >>> tokenwise("value", lambda x, p: p[:, None] * 1.0, np.ones((2, 3, 1)))[1].ravel().tolist()
    [0.0, 1.0, 2.0]
    """
    flat = x if x.ndim == 2 else x.reshape(-1, x.shape[-1])
    flat_positions = _flat_positions(f, x, positions)
    fn = _mlp_map(f) if isinstance(f, MLP) else f
    y = apply_map(name, fn, flat, flat_positions, out_dim) if checked else fn(flat, flat_positions)
    return y if x.ndim == 2 else y.reshape(*x.shape[:-1], y.shape[-1])


def head_qkv(head: Any, x: np.ndarray, positions: np.ndarray | None = None, *,
             checked: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(q, k, v)`` of a :class:`~.model.Head` on ``x`` as the head attends to them: ``q, k``
    scaled to unit norm (``normalize``), then multiplied by a lowrank head's ``scale``; shapes
    ``(..., N, m)``, ``(..., N, m)``, ``(..., N, m_v)``."""
    q = tokenwise("query", head.query, x, positions, head.dim, checked=checked)
    k = tokenwise("key", head.key, x, positions, head.dim, checked=checked)
    v = tokenwise("value", head.value, x, positions, head.value_dim, checked=checked)
    if head.normalize:
        q, k = rowwise(normalize_rows, q), rowwise(normalize_rows, k)
    if head.scale != 1.0:
        q, k = head.scale * q, head.scale * k
    return q, k, v


def finish_layer(model: Any, layer: int, x: np.ndarray, attended: Sequence[np.ndarray],
                 positions: np.ndarray | None = None, *, checked: bool = True) -> np.ndarray:
    """The residual stream after layer ``layer`` of ``model`` from the layer's input ``x`` and
    every head's attention output (before ``W_h``), in the forward pass's order.

    ``update = 0; update += W_h(attended_h)`` head by head (a :class:`~.maps.Placement` adds its
    block in place), ``y = x + update``, then ``y + MLP(y)`` when the layer has an MLP.
    """
    spec = model.layers[layer]
    update = np.zeros_like(x)
    for h, (head, out) in enumerate(zip(spec.heads, attended)):
        if isinstance(head.output, Placement):   # a block of the stream: add it in place
            update[..., head.output.columns] += out
            continue
        contribution = tokenwise("output", head.output, out, positions, checked=checked)
        if checked and contribution.shape[-1] != model.dim:
            raise ShapeError(f"layer {layer} head {h} output must have d = {model.dim} columns, "
                             f"got shape {contribution.shape}")
        update += contribution
    x = x + update
    if spec.mlp is not None:
        x = x + tokenwise(f"layer {layer} mlp", spec.mlp, x, positions, model.dim, checked=checked)
    return x


@numba.njit(parallel=True, cache=True)
def _gelu_inplace_f32(h: np.ndarray) -> None:  # pragma: no cover - compiled
    """``h <- 0.5 h (1 + erf(h / √2))`` in float32, the same operations as :func:`~.maps.gelu`."""
    flat = h.reshape(-1)
    root2 = np.float32(math.sqrt(2.0))
    for i in numba.prange(flat.size):
        v = flat[i]
        flat[i] = np.float32(0.5) * v * (np.float32(1.0) + np.float32(math.erf(v / root2)))


def mlp_forward(mlp: MLP, y: np.ndarray) -> np.ndarray:
    """``mlp(y)`` bit for bit; float32 runs GeLU as one fused in-place pass (a hot spot of
    batched evaluation), other dtypes :func:`~.maps.gelu` as :class:`~.maps.MLP` does.

    Examples
    --------
    >>> import numpy as np
    >>> from anna.transformer import MLP, Linear
    >>> mlp = MLP(Linear(np.ones((2, 8), np.float32)), Linear(np.ones((8, 2), np.float32)))
    >>> y = np.array([[0.5, -1.0]], np.float32)
    >>> bool(np.array_equal(mlp_forward(mlp, y), mlp(y)))
    True
    """
    hidden = np.ascontiguousarray(mlp.hidden(y))
    if hidden.dtype != np.float32:
        return mlp.output(gelu(hidden))
    _gelu_inplace_f32(hidden)
    return mlp.output(hidden)


def _mlp_map(mlp: MLP) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
    return lambda y, positions=None: mlp_forward(mlp, y)
