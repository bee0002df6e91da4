"""Match2 (docs/theory.md §5) in ``2 + 2 ceil(log_f P)`` rounds: OR a residue bitmap up a tree, send it back.

``label_i = 1`` iff some ``j`` (``j = i`` allowed) has ``x_i + x_j ≡ 0 (mod M)``; words are any
int64 values, taken modulo ``M`` (``x mod M`` in ``0 .. M-1``, negative words included). A label
depends only on the set ``R`` of residues present: ``label_i = [(-x_i) mod M ∈ R]``.

Algorithm
---------
``R`` is a bitmap of ``W = ceil(M / 64)`` words (64 residues per word). The input machines are
full (``s`` words each), so round 1 moves the words to *working machines*, ``B = floor(s / 2)``
per machine (``P = ceil(n / B)``), each keeping ``(-x) mod M`` for its positions. Every working
machine builds the bitmap of its residues; bitmaps are ORed up the ``f``-ary tree on machine ids
(level ``l``: machine ``m`` with ``m mod f^l != 0 = m mod f^(l-1)`` sends to ``m - (m mod f^l)``),
``f = floor((s - B) / W)``, so a machine holds at most ``B + f W <= s`` words; machine 0 then has
``R`` and it goes back down the same tree. Each machine labels its positions and one round moves
the labels to the output layout (``s`` per machine).

Rounds: ``R = 2 + 2 d`` with ``d = ceil(log_f P)`` (``d = 0`` when ``P = 1``). For ``s = a n^eps``
and ``M = O(s)`` this is ``O(1 / eps)``, independent of ``n`` at fixed ``eps``.

Requirements (``check_config``): ``s >= 2``; ``f >= 2`` when ``P > 1`` (i.e. ``M <= 64 floor(
(s - floor(s/2)) / 2)``, about ``16 s``), ``W <= s - floor(s/2)`` when ``P = 1``; ``P <= machines``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..config import MPCConfig
from ..errors import ConfigError
from ..protocol import Protocol
from ..state import ClusterState, MessageBatch
from .toolkit import (SearchedDefaultConfig, build_state, join_headers, pack_batch, relayout_batch, relayout_local,
                      spanned, split_headers)

__all__ = ["Match2", "match2_reference"]

_BITS = 64


def match2_reference(x: np.ndarray, modulus: int) -> np.ndarray:
    """Match2 labels in plain numpy: ``[(-x_i) mod M ∈ {x_j mod M}]``.

    Examples
    --------
    >>> match2_reference(np.array([1, 4, 0, 2, -2]), 5).tolist()     # -2 ≡ 3 pairs with 2
    [1, 1, 1, 1, 1]
    >>> match2_reference(np.array([1, 2]), 5).tolist()
    [0, 0]
    """
    residues = np.asarray(x, dtype=np.int64) % modulus
    return np.isin((-residues) % modulus, residues).astype(np.int64)


@dataclass(frozen=True)
class _Plan:
    n: int
    s: int
    machines: int
    modulus: int
    B: int
    P: int
    W: int
    fan_in: int
    depth: int

    @property
    def rounds(self) -> int:
        return 2 + 2 * self.depth

    def home(self, position: np.ndarray) -> np.ndarray:
        return position // self.B

    def up_level(self, r: int) -> int:
        """The tree level whose bitmaps are sent up in round ``r`` (0 if none)."""
        return r - 1 if 2 <= r <= 1 + self.depth else 0

    def down_level(self, r: int) -> int:
        """The tree level whose bitmaps are sent down in round ``r`` (0 if none)."""
        return 2 * self.depth + 2 - r if 2 + self.depth <= r <= 1 + 2 * self.depth else 0


@lru_cache(maxsize=64)
def _plan(config: MPCConfig, modulus: int) -> _Plan:
    B = config.s // 2
    P = -(-config.n // max(B, 1))
    W = -(-modulus // _BITS)
    fan_in = (config.s - B) // W
    depth, reach = 0, 1
    while reach < P and fan_in >= 2:
        depth, reach = depth + 1, reach * fan_in
    return _Plan(config.n, config.s, config.machines, modulus, B, P, W, fan_in, depth)


def _bitmap(residues: np.ndarray, words: int) -> np.ndarray:
    bits = np.zeros(words, dtype=np.uint64)
    np.bitwise_or.at(bits, residues // _BITS, np.left_shift(np.uint64(1), (residues % _BITS).astype(np.uint64)))
    return bits.view(np.int64)


def _has(bitmap: np.ndarray, residues: np.ndarray) -> np.ndarray:
    """1 where ``residues`` are set in ``bitmap`` (int64 words holding 64 residues each), else 0."""
    words = bitmap.view(np.uint64)[residues // _BITS]
    return ((words >> (residues % _BITS).astype(np.uint64)) & np.uint64(1)).astype(np.int64)


def _children(plan: _Plan, parents: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
    """(parent, child) pairs of tree ``level``: child ``m + c f^(level-1)``, ``c = 1 .. f-1``, below ``P``."""
    step = plan.fan_in ** (level - 1)
    children = (parents[:, None] + step * np.arange(1, plan.fan_in)[None, :]).ravel()
    parent_of = np.repeat(parents, plan.fan_in - 1)
    keep = children < plan.P
    return parent_of[keep], children[keep]


@dataclass(frozen=True)
class Match2(SearchedDefaultConfig, Protocol):
    """Match2 labels (module docstring for the algorithm and its round bound).

    Parameters
    ----------
    modulus : int
        ``M >= 1``; default 37, the paper's Match2 experiment (THEORY §6).

    Examples
    --------
    >>> from mpc_sim import MPCConfig, Simulator
    >>> cfg = MPCConfig(n=8, eps=0.5, memory_factor=2, machines_factor=4)
    >>> run = Simulator(cfg).run(Match2(modulus=5), np.array([1, 4, 0, 2, 2, 7, -1, 9]))
    >>> run.output.tolist()                     # residues 1 4 0 2 2 2 4 4: nothing pairs with 2
    [1, 1, 1, 0, 0, 0, 1, 1]
    >>> run.trace.num_rounds == Match2(modulus=5).rounds_bound(cfg), run.trace.check()
    (True, [])
    """

    summary = "Match2 labels (pairs summing to 0 mod M)"

    modulus: int = 37
    name = "match2"

    def __post_init__(self) -> None:
        if isinstance(self.modulus, bool) or not isinstance(self.modulus, (int, np.integer)) or self.modulus < 1:
            raise ConfigError(f"match2: modulus must be an integer >= 1, got {self.modulus!r}")
        object.__setattr__(self, "modulus", int(self.modulus))

    # --- declared facts ------------------------------------------------------------------------
    def rounds_bound(self, config: MPCConfig) -> int:
        """``2 + 2 ceil(log_f P)`` (module docstring): exactly the rounds the schedule takes."""
        return _plan(config, self.modulus).rounds

    def fanout_bound(self, config: MPCConfig) -> int:
        """Messages a machine sends in one round: its words' working machines (round 1), ``f - 1``
        children (going down the tree), or at most 2 output machines."""
        plan = _plan(config, self.modulus)
        return max(min(plan.P, spanned(config.s, plan.B)), plan.fan_in - 1 if plan.depth else 1, 2)

    def check_config(self, config: MPCConfig) -> None:
        plan = _plan(config, self.modulus)
        if config.s < 2:
            raise ConfigError(f"match2 needs s >= 2 words per machine, got s = {config.s}")
        if plan.P > 1 and plan.fan_in < 2:
            raise ConfigError(f"match2: a bitmap of M = {self.modulus} residues takes W = {plan.W} words, so the tree "
                              f"fan-in floor((s - s//2) / W) = {plan.fan_in} < 2 at s = {config.s}; "
                              f"M may be at most {_BITS * ((config.s - plan.B) // 2)}")
        if plan.P == 1 and plan.fan_in < 1:
            raise ConfigError(f"match2: a bitmap of W = {plan.W} words does not fit next to the data at s = {config.s}")
        if plan.P > config.machines:
            raise ConfigError(f"match2 needs {plan.P} working machines of B = s // 2 = {plan.B} words for "
                              f"n = {config.n}, but the cluster has {config.machines} (raise machines_factor)")

    def reference(self, data: np.ndarray) -> np.ndarray:
        return match2_reference(data, self.modulus)

    def generate_input(self, config: MPCConfig, seed: int = 0) -> np.ndarray:
        """Words uniform over ``0 .. M-1``."""
        return np.random.default_rng(seed).integers(0, self.modulus, size=config.n, dtype=np.int64)

    # --- per-machine style ---------------------------------------------------------------------
    def step(self, ctx, machine, memory, inbox):
        plan, r = _plan(ctx.config, self.modulus), ctx.round
        if r == 1:
            return memory[:0], relayout_local(machine, memory, plan.s, plan.home)
        if r == plan.rounds + 1:  # the labels have arrived
            return inbox.words.copy(), []
        if machine >= plan.P:
            return memory, []
        if r == 2:  # my wanted residues (-x) mod M, then the bitmap of my residues x mod M
            residues = inbox.words % self.modulus
            wanted, bitmap = (-residues) % self.modulus, _bitmap(residues, plan.W)
        else:
            bitmap, wanted = memory[:plan.W], memory[plan.W:]
            for _, received in inbox:  # children's bitmaps (going up) or the answer (going down)
                bitmap = bitmap | received
        messages = []
        if plan.up_level(r):
            level = plan.up_level(r)
            if machine % plan.fan_in ** (level - 1) == 0 and machine % plan.fan_in ** level:
                messages = [(machine - machine % plan.fan_in ** level, bitmap)]
        elif plan.down_level(r):
            level = plan.down_level(r)
            if machine % plan.fan_in ** level == 0:
                _, children = _children(plan, np.array([machine]), level)
                messages = [(int(child), bitmap) for child in children]
        else:  # r == rounds: every machine has R
            return memory[:0], relayout_local(machine, _has(bitmap, wanted), plan.B, lambda i: i // plan.s)
        return np.r_[bitmap, wanted], messages

    # --- batch style ---------------------------------------------------------------------------
    def batch_step(self, ctx, state, delivery):
        plan, r, machines = _plan(ctx.config, self.modulus), ctx.round, ctx.config.machines
        if r == 1:
            return ClusterState.empty(machines), relayout_batch(state.words, plan.s, plan.home)
        if r == plan.rounds + 1:
            return delivery.inbox_state(), MessageBatch.empty(np.int64)
        sizes = np.diff(np.minimum(np.arange(plan.P + 1) * plan.B, plan.n))
        owner = np.repeat(np.arange(plan.P), sizes)
        if r == 2:
            residues = delivery.inbox_state().words % self.modulus
            wanted = (-residues) % self.modulus
            bits = np.zeros((plan.P, plan.W), dtype=np.uint64)
            np.bitwise_or.at(bits, (owner, residues // _BITS),
                             np.left_shift(np.uint64(1), (residues % _BITS).astype(np.uint64)))
            bitmaps = bits.view(np.int64)
        else:
            bitmaps, wanted = split_headers(state.words, sizes, plan.W)
            received = delivery.messages
            if received.num_messages:
                np.bitwise_or.at(bitmaps, received.dst, received.words.reshape(-1, plan.W))
        ids = np.arange(plan.P)
        if plan.up_level(r):
            level = plan.up_level(r)
            senders = ids[(ids % plan.fan_in ** (level - 1) == 0) & (ids % plan.fan_in ** level != 0)]
            batch = pack_batch(senders, senders - senders % plan.fan_in ** level, bitmaps[senders])
        elif plan.down_level(r):
            level = plan.down_level(r)
            parents, children = _children(plan, ids[ids % plan.fan_in ** level == 0], level)
            batch = pack_batch(parents, children, bitmaps[parents])
        else:
            labels = _has_rows(bitmaps, owner, wanted)
            return ClusterState.empty(machines), relayout_batch(labels, plan.B, lambda i: i // plan.s)
        return build_state(machines, [(0, sizes + plan.W, join_headers(bitmaps, wanted, sizes))]), batch


def _has_rows(bitmaps: np.ndarray, rows: np.ndarray, residues: np.ndarray) -> np.ndarray:
    """:func:`_has` with one bitmap per row of ``bitmaps``, position ``i`` looked up in row ``rows[i]``."""
    words = bitmaps.view(np.uint64)[rows, residues // _BITS]
    return ((words >> (residues % _BITS).astype(np.uint64)) & np.uint64(1)).astype(np.int64)
