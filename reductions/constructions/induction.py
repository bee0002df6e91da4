"""Theorem 5.4: induction heads (1-hop) in constant depth.

``hop_1(x)_p`` is the token right after the previous occurrence of ``x_p`` (⊥ if none). The
construction is the first three layers of :mod:`.khop` (``k = 1`` needs no doubling): 3 causal
layers, at most 2 heads per layer, ``m <= 3``, for every sequence length ``N``. docs/theory.md states
Theorem 5.4 with ``H = O(N^{δ/4})`` and ``m = O(N^{ε'})`` through a constant-round MPC algorithm
and Theorem 4.1; the direct construction needs only constant width. (Compiling
:class:`mpc_sim.protocols.khop.KHop` with ``k = 1`` instead is that route: one sample sort of
``O(1/eps)`` rounds finds ``find¹``, so the depth is constant in ``N`` for a fixed ``eps``, with
heads as wide as Theorem 4.1 makes them.)
"""
from __future__ import annotations

from anna.lsh import LSHConfig
from anna.transformer import Transformer

from .khop import khop_depth, khop_transformer

__all__ = ["induction_transformer", "INDUCTION_DEPTH"]

INDUCTION_DEPTH = khop_depth(1)
"""Layers of :func:`induction_transformer` (3, for every ``N``)."""


def induction_transformer(*, attention: str = "ema", n: int | None = None, lsh: LSHConfig | None = None,
                          seed: int = 0) -> Transformer:
    """The constant-depth induction-head transformer: ``model(x) = hop_1(x)`` (⊥ as ``-1``).

    Parameters are those of :func:`~reductions.constructions.khop.khop_transformer`.

    Examples
    --------
    >>> import numpy as np
    >>> model = induction_transformer()
    >>> model(np.array([0, 0, 1, 2, 1, 0, 1, 2, 0])).tolist()
    [-1, 0, -1, -1, 2, 1, 0, 1, 1]
    >>> model.report().depth == INDUCTION_DEPTH == 3, model.report().width <= 6
    (True, True)
    """
    return khop_transformer(1, attention=attention, n=n, lsh=lsh, seed=seed)
