"""Training through the hash tables: attention computed by sampled hyperplane tables (Algorithm 1).

A softmax (or collision) surrogate is trained for the attention the tables compute *on average*;
Algorithm 1 with few tables computes one random draw of it, with the variance of ``ℓ`` trials
(docs/reproduction.md: the induction model that best fits its surrogate transfers worst). Here each
training step draws fresh hyperplanes and runs the tables themselves, so the weights are trained for
the draw-to-draw variance that evaluation sees::

    bits_i  = [q̂_i · r_ut >= 0]          r_ut ~ N(0, I_m), table u = 1..ℓ, function t = 1..z
    c_ij    = Σ_u [bits_i(u) = bits_j(u)] (z bits per table; j <= i when causal)
    out_i   = Σ_j c_ij v_j / Σ_j c_ij      (0 where query i collides with no key)

which is exactly :func:`anna.attention.anna_attention` with :class:`anna.lsh.Hyperplane` tables. A
table's bucket is the one-hot row of its ``z`` bits (``2**z`` columns), so ``c = P_q P_kᵀ`` with
``P`` the ``ℓ`` one-hot rows side by side. The bits have no gradient; training uses the soft bits
``σ(q̂·r / τ)`` (whose bucket rows are the products of ``σ`` and ``1 − σ``): with
``straight_through`` the forward pass is the hard one and the gradient the soft one's (a
straight-through estimator), otherwise the soft rows are used in both (a relaxation that tends to
the tables as ``τ → 0``).

The hyperplanes come from a buffer the trainer refills before every step from a generator seeded
with ``(seed, step)`` (:func:`noise_seed`), so a resumed run draws the same tables, and a captured
CUDA graph reads them from a fixed address.

Examples
--------
>>> HashedTraining(z=2, tables=(32, 4)).columns(1)
16
>>> HashedTraining(z=0, tables=(4,))
Traceback (most recent call last):
...
anna.errors.ParameterError: HashedTraining needs 1 <= z <= 8, got z=0
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError
from ._torch import require_torch
from .data import chunk_seed

__all__ = ["HashedTraining", "hashed_attention", "noise_seed", "soft_buckets"]

MAX_Z = 8
"""Largest number of hyperplanes per table (2**z one-hot columns per table)."""


@dataclass(frozen=True)
class HashedTraining:
    """Train every attention head through ``tables[l]`` sampled hyperplane tables of ``z`` functions.

    Parameters
    ----------
    z : int
        Hyperplanes per table (1..8).
    tables : tuple of int
        ``ℓ`` of each layer, one entry per layer.
    tau : float
        Temperature of the soft bits ``σ(q̂·r / τ)`` (``q̂·r`` is a standard normal for a random ``r``).
    straight_through : bool
        Hard tables in the forward pass, the soft ones' gradient (default); otherwise soft in both.
    """

    z: int
    tables: tuple[int, ...]
    tau: float = 0.25
    straight_through: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.z, bool) or not isinstance(self.z, (int, np.integer)) or not 1 <= self.z <= MAX_Z:
            raise ParameterError(f"HashedTraining needs 1 <= z <= {MAX_Z}, got z={self.z!r}")
        tables = tuple(self.tables) if isinstance(self.tables, (tuple, list)) else (self.tables,)
        if not tables or any(isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 1 for t in tables):
            raise ParameterError(f"tables must be positive table counts, one per layer, got {self.tables!r}")
        object.__setattr__(self, "tables", tuple(int(t) for t in tables))
        object.__setattr__(self, "z", int(self.z))
        if isinstance(self.tau, bool) or not isinstance(self.tau, (int, float)) or not (
                math.isfinite(self.tau) and self.tau > 0):
            raise ParameterError(f"tau must be a positive finite number, got {self.tau!r}")
        if not isinstance(self.straight_through, (bool, np.bool_)):
            raise ParameterError(f"straight_through must be a bool, got {self.straight_through!r}")

    def columns(self, layer: int) -> int:
        """One-hot columns of a head of ``layer``: ``tables[layer] * 2**z``."""
        return self.tables[layer] * 2**self.z

    def planes(self, layer: int, dim: int) -> int:
        """Random numbers one head of ``layer`` with query width ``dim`` needs per step."""
        return dim * self.tables[layer] * self.z


def noise_seed(seed: int, step: int) -> int:
    """The generator seed of the hyperplanes of training step ``step`` of a run seeded ``seed``.

    Examples
    --------
    >>> noise_seed(0, 5) == noise_seed(0, 5) != noise_seed(0, 6)
    True
    """
    return chunk_seed(seed, step, salt=0x68617368)


def soft_buckets(projections, z: int, tau: float, straight_through: bool):
    """One-hot bucket rows ``(..., ℓ * 2**z)`` of projections ``(..., ℓ * z)`` (see the module docstring).

    Bucket ``b`` of a table is the bit pattern ``Σ_t bit_t 2**t``; a soft row is a probability
    distribution over its table's ``2**z`` buckets.

    Examples
    --------
    >>> import torch
    >>> soft_buckets(torch.tensor([[0.5, -1.0]]), z=2, tau=0.1, straight_through=True).tolist()
    [[0.0, 1.0, 0.0, 0.0]]
    """
    torch = require_torch()
    shape = projections.shape[:-1]
    ell = projections.shape[-1] // z
    a = projections.reshape(*shape, ell, z)
    soft = torch.sigmoid(a / tau)
    if straight_through:
        bits = (a >= 0).to(a.dtype) + (soft - soft.detach())
    else:
        bits = soft
    rows = torch.ones(*shape, ell, 1, dtype=a.dtype, device=a.device)
    for t in range(z):
        bit = bits[..., t:t + 1]
        rows = torch.cat([rows * (1.0 - bit), rows * bit], dim=-1)
    return rows.reshape(*shape, ell * 2**z)


def hashed_attention(q, k, v, planes, z: int, tau: float, straight_through: bool, causal_mask=None,
                     normalized: bool = False):
    """Algorithm 1 with the hyperplanes ``planes`` (m, ℓ * z) on batched rows ``(B, N, m)``.

    ``causal_mask`` is ``True`` where a key may not be seen. Queries that collide with no key get
    the zero row (as :func:`anna.attention.anna_attention`). Queries and keys are scaled to unit
    norm (the scale of the soft bits) unless ``normalized`` says they already are.
    """
    torch = require_torch()
    if not normalized:
        functional = torch.nn.functional
        q = functional.normalize(q, dim=-1, eps=1e-12)
        k = functional.normalize(k, dim=-1, eps=1e-12)
    rows_q = soft_buckets(q @ planes, z, tau, straight_through)
    rows_k = soft_buckets(k @ planes, z, tau, straight_through)
    counts = rows_q @ rows_k.transpose(-1, -2)
    if causal_mask is not None:
        counts = counts.masked_fill(causal_mask, 0.0)
    total = counts.sum(dim=-1, keepdim=True)
    return (counts @ v) / torch.where(total > 0, total, torch.ones_like(total))
