"""The ANNA-transformer (docs/theory.md §2): heads of kind ``anna | ema | softmax | lowrank | collision``.

Forward pass, exactly
---------------------
For raw ``inputs``::

    X_0 = embed(inputs)                              # (N, d); positions P = np.arange(N)
    for layer l = 1..L:
        Y   = X_{l-1} + Σ_h  W_h( attn_h( Q_h(X_{l-1}, P), K_h(X_{l-1}, P), V_h(X_{l-1}, P) ), P )
        X_l = Y + MLP_l(Y, P)       if layer l has an MLP, else X_l = Y
    outputs = ψ(X_L, P)

- ``embed`` is a :class:`TokenEmbedding` (``tokens[inputs] + positions[:N]``, trained mode) or any
  callable of the raw input (theory mode).
- ``Q_h, K_h, V_h, W_h, MLP_l, ψ`` are token-wise maps: a :class:`Linear` (``x @ W + b``; a bare
  matrix means ``b = 0``) or a callable ``f(x, positions)``; a trained MLP is
  ``GeLU(x W1 + b1) W2 + b2`` (exact erf GeLU, hidden ``4d`` by :func:`init_transformer`).
- ``attn_h`` is the head's attention: ``softmax(β q kᵀ) v``, exact-match attention, Algorithm 1
  (:func:`anna.attention.anna_attention` with the head's LSHConfig and seed), low-rank
  ``φ(q)(φ(k)ᵀ v) / φ(q)(φ(k)ᵀ 1)``, or collision attention ``Σ_j p_ij v_j / Σ_j p_ij`` with
  ``p_ij = (1 − θ_ij/π)^z`` (what Algorithm 1 with hyperplane tables of ``z`` functions computes
  in expectation, :func:`anna.reference.collision_attention`); over ``j <= i`` only when the layer
  is causal. With
  ``normalize=True`` (the paper's surrogate) ``q`` and ``k`` are scaled to unit norm first; an
  ``anna`` head then hashes the unit vectors.
- The heads of a layer all read ``X_{l-1}`` (parallel heads); the sum over heads is accumulated in
  head order into a zero matrix, then added to ``X_{l-1}``.

The token-wise steps (embedding, a head's ``q, k, v``, ``W_h`` + MLP) live once, in
:mod:`anna.transformer.forward`, batched over leading axes: :meth:`Transformer.run`, the batched
experiment evaluator and the decompiler's protocols all call them.

There are no layer norms. An ``anna`` head without its own seed hashes with
``derive_head_seed(model.seed, l - 1, h)`` (layers and heads 0-indexed).

Trained mode means every map is a weight matrix: such a model can be saved (``.npz`` + ``.json``)
and loaded bit-exactly. Theory mode (any callable) runs the same forward pass but cannot be saved.
"""
from .maps import MLP, Linear, Placement, TokenFunction, TokenMap, gelu
from .model import (
    FEATURE_MAPS,
    ForwardTrace,
    Head,
    Layer,
    TokenEmbedding,
    Transformer,
    derive_head_seed,
    init_transformer,
)
from .report import HEAD_KINDS, ResourceReport
from .serialize import load_transformer, save_transformer

__all__ = [
    "FEATURE_MAPS",
    "HEAD_KINDS",
    "ForwardTrace",
    "Head",
    "Layer",
    "Linear",
    "MLP",
    "Placement",
    "ResourceReport",
    "TokenEmbedding",
    "TokenFunction",
    "TokenMap",
    "Transformer",
    "derive_head_seed",
    "gelu",
    "init_transformer",
    "load_transformer",
    "save_transformer",
]
