"""3-SUM in a constant number of rounds: every triple of input blocks meets on one machine.

The task (docs/theory.md §5): do three entries at distinct positions sum to 0? Words are int64 with
``|x| <= 2**61``, so no sum of three overflows. The output is one word on machine 0: ``1`` if such
a triple exists, else ``0``.

Algorithm (block triples)
-------------------------
Cut the input, in position order, into ``g = ceil(n / b)`` blocks ``P_0 .. P_{g-1}`` of ``b``
words (``b = min(ceil(sqrt n), floor(s / 3))``). Every triple of positions ``i < j < k`` has a
block multiset ``{blk(i), blk(j), blk(k)}``; there are ``C(g + 2, 3)`` such multisets, and one *cell
machine* per multiset receives its (one to three distinct) blocks and checks them locally.

1. Round 1: the input machines send every word to its block machine (machine ``I`` holds ``P_I``).
2. Rounds 2 .. d + 1: each block is copied to the ``m = g(g+1)/2`` cells containing it down an
   ``f``-ary tree, ``f = floor(s / b)`` (a node holds ``b`` words and sends ``f b <= s``), of depth
   ``d = min{d >= 1 : f**d >= m}``; the root is the block machine, inner nodes are relay
   machines, and leaf ``u`` of block ``I``'s tree is the cell ``{I} ∪ pair_u`` (``pair_u`` the
   ``u``-th multiset of two blocks in colex order): every cell is a leaf of exactly one tree per
   distinct block it contains, so it receives each of its blocks once (at most ``3b <= s`` words).
3. Round d + 2: each cell answers whether its words hold a zero-sum triple (sort, two pointers;
   its words come from distinct positions, so any triple found is a real one), and the answers
   are ORed up the in-place radix tree of degree ``s`` over ``[machine 0, cell 0, cell 1, ...]``
   in ``e = min{e >= 1 : s**e >= C(g+2, 3) + 1}`` rounds (a node keeps one word and receives at
   most ``s - 1``).

Correctness: the OR over cells of "the cell's words contain a zero-sum triple" is the answer,
since every triple of positions lies in its own cell and every cell holds words of distinct
positions. Rounds (exact, data-independent): ``R = 1 + d + e``. With ``s = a n^eps`` and
``eps > 1/2`` the tree arity ``f ~ a n^(eps - 1/2)`` grows with ``n``, so ``d <= ~1 / (eps - 1/2)``
and ``e <= ~3 / (2 eps)``: ``O(1)`` rounds. Fan-out ``max(f, ceil(s / b) + 1) = Θ(n^(eps - 1/2))``.

Machines: ``g`` block machines, ``g * sum_{t=1}^{d-1} ceil(m / f**t)`` relays and ``C(g + 2, 3)``
cells, about ``n^(3/2) / 6`` (:meth:`ThreeSum.default_config`), i.e. ``γ = eps + 1/2``: the
price of checking every block triple instead of sorting first and pruning the block triples
that cannot straddle zero (the idea of Hajiaghayi et al. 2019, ``O(g^2)`` cells; not implemented
here). Local work over all cells is ``O(n^{5/2})``. With the default ``s = 4 n^eps`` the rounds stay
below :func:`rounds_limit` ``(eps) = 1 + ceil(1 / (eps - 1/2)) + ceil(3 / (2 eps))`` for every ``n``
(the tests check ``n = 2 .. 2^60``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numba as nb
import numpy as np

from ..config import MPCConfig
from ..errors import ConfigError, InputError
from ..protocol import Protocol
from ..state import ClusterState, MessageBatch, ragged_offsets
from .toolkit import pack_batch, relayout_batch, relayout_local

__all__ = ["ThreeSum", "ThreeSumPlan", "three_sum_reference", "has_zero_triple", "cell_of_leaf", "rounds_limit",
           "VALUE_BOUND"]

VALUE_BOUND = 2**61
"""Input words must satisfy ``|x| <= VALUE_BOUND`` (three of them sum without overflow)."""


# --- reference and the local check --------------------------------------------------------------
def three_sum_reference(x: np.ndarray) -> int:
    """``1`` if three entries at distinct positions of ``x`` sum to 0, else ``0``; plain numpy.

    For every pair ``i < j`` it counts the entries equal to ``-(x_i + x_j)`` and discounts ``i``
    and ``j`` themselves: ``O(n^2 log n)``, straight from the definition.

    Examples
    --------
    >>> three_sum_reference(np.array([5, -1, 7, -4, 3])), three_sum_reference(np.array([0, 0]))
    (1, 0)
    """
    x = np.asarray(x, dtype=np.int64)
    ordered = np.sort(x)
    for i in range(x.shape[0] - 1):
        others = x[i + 1:]
        target = -(x[i] + others)
        hits = np.searchsorted(ordered, target, side="right") - np.searchsorted(ordered, target, side="left")
        hits = hits - (x[i] == target) - (others == target)
        if (hits > 0).any():
            return 1
    return 0


@nb.njit(cache=True)
def _sorted_has_triple(v):  # pragma: no cover - compiled
    """Two pointers over a sorted segment: a zero-sum triple at distinct indices?"""
    n = v.shape[0]
    for a in range(n - 2):
        lo, hi = a + 1, n - 1
        while lo < hi:
            total = v[a] + v[lo] + v[hi]
            if total == 0:
                return True
            if total < 0:
                lo += 1
            else:
                hi -= 1
    return False


@nb.njit(cache=True)
def _segments_have_triple(words, offsets, out):  # pragma: no cover - compiled
    for i in range(offsets.shape[0] - 1):
        out[i] = 1 if _sorted_has_triple(np.sort(words[offsets[i]:offsets[i + 1]])) else 0


def has_zero_triple(values: np.ndarray) -> bool:
    """Whether ``values`` (int64, ``|v| <= 2**61``) hold a zero-sum triple at distinct indices
    (numba: sort, then two pointers per first element, ``O(len^2)``).

    Examples
    --------
    >>> has_zero_triple(np.array([3, -1, -2])), has_zero_triple(np.array([1, 2, 3]))
    (True, False)
    """
    return bool(_sorted_has_triple(np.sort(np.asarray(values, dtype=np.int64))))


def _segments_bits(words: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    out = np.zeros(offsets.shape[0] - 1, dtype=np.int64)
    _segments_have_triple(np.ascontiguousarray(words, dtype=np.int64), np.ascontiguousarray(offsets), out)
    return out


# --- block triples --------------------------------------------------------------------------------
def _pair_of_leaf(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``u``-th multiset ``{J <= K}`` in colex order (rank ``J + K (K + 1) / 2``)."""
    u = np.asarray(u, dtype=np.int64)
    k = ((np.sqrt(8.0 * u + 1.0) - 1.0) // 2).astype(np.int64)
    k -= (k * (k + 1) // 2 > u)                  # guard the float square root
    k += ((k + 1) * (k + 2) // 2 <= u)
    return u - k * (k + 1) // 2, k


def _triple_rank(i: np.ndarray, j: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Colex rank of the multiset ``i <= j <= k`` (the combination ``i < j+1 < k+2``)."""
    return i + (j + 1) * j // 2 + (k + 2) * (k + 1) * k // 6


def cell_of_leaf(block: np.ndarray | int, leaf: np.ndarray | int) -> np.ndarray:
    """The cell (multiset rank) that leaf ``leaf`` of block ``block``'s copy tree feeds:
    ``{block} ∪ pair_leaf``.

    Examples
    --------
    >>> cell_of_leaf(0, np.arange(3)).tolist()      # {0,0,0}, {0,0,1}, {0,1,1}
    [0, 1, 2]
    """
    block = np.asarray(block, dtype=np.int64)
    j, k = _pair_of_leaf(leaf)
    block, j, k = np.broadcast_arrays(block, j, k)
    triple = np.sort(np.stack([block, j, k]), axis=0)
    return _triple_rank(triple[0], triple[1], triple[2])


@dataclass(frozen=True)
class ThreeSumPlan:
    """Sizes and machine ranges, a function of ``(n, s)`` only (module docstring)."""

    n: int
    s: int
    block: int          # b
    arity: int          # f
    blocks: int         # g
    leaves: int         # m = g (g + 1) / 2 cells per block tree
    depth: int          # d
    widths: tuple       # w_t = ceil(m / f**t), t = 0 .. d
    relay_base: tuple   # first machine of the relays of level t (t = 1 .. d - 1; index 0 unused)
    cell_base: int
    cells: int          # C(g + 2, 3)
    or_depth: int       # e

    def __post_init__(self) -> None:
        # the memory argument of the module docstring: a cell holds 3 blocks, a tree node sends f
        if not (1 <= self.block and 3 * self.block <= self.s and self.arity * self.block <= self.s
                and self.arity >= 2 and self.arity ** self.depth >= self.leaves):
            raise ConfigError(f"threesum: inconsistent plan for n = {self.n}, s = {self.s}: block {self.block}, "
                              f"arity {self.arity}, depth {self.depth}, leaves {self.leaves}")

    @property
    def rounds(self) -> int:
        return 1 + self.depth + self.or_depth

    @property
    def machines_needed(self) -> int:
        return self.cell_base + self.cells

    @property
    def input_fanout(self) -> int:
        return min(self.blocks, -(-self.s // self.block) + 1)

    @property
    def fanout(self) -> int:
        return max(self.arity, self.input_fanout, 1)

    def block_length(self, block: np.ndarray | int) -> np.ndarray:
        return np.minimum(self.block, self.n - np.asarray(block, dtype=np.int64) * self.block)

    def node(self, machine: int) -> tuple[int, int, int] | None:
        """``(level, block, index)`` of a tree node (root: ``(d, I, 0)``), or None."""
        if machine < self.blocks:
            return self.depth, machine, 0
        for t in range(1, self.depth):
            offset = machine - self.relay_base[t]
            if 0 <= offset < self.blocks * self.widths[t]:
                return t, offset // self.widths[t], offset % self.widths[t]
        return None

    def children(self, level: int, block: np.ndarray | int, index: np.ndarray | int) -> np.ndarray:
        """Machines of the children of the level-``level`` nodes ``index`` of the trees of
        ``block`` (scalar or one per node), one row per node, ``-1`` padding rows of fewer than
        ``f`` children."""
        index = np.atleast_1d(np.asarray(index, dtype=np.int64))
        block = np.broadcast_to(np.asarray(block, dtype=np.int64), index.shape)[:, None]
        child = index[:, None] * self.arity + np.arange(self.arity)[None, :]
        real = child < self.widths[level - 1]
        safe = np.where(real, child, 0)
        if level == 1:
            ids = self.cell_base + cell_of_leaf(block, safe)
        else:
            ids = self.relay_base[level - 1] + block * self.widths[level - 1] + safe
        return np.where(real, ids, -1)

    def virtual(self, machine: int) -> int | None:
        """Index in the OR tree: 0 for machine 0, ``1 + c`` for cell ``c``."""
        if machine == 0:
            return 0
        c = machine - self.cell_base
        return c + 1 if 0 <= c < self.cells else None

    def machine_of_virtual(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.int64)
        return np.where(v == 0, 0, self.cell_base + v - 1)


def _smallest_power(base: int, at_least: int) -> int:
    """``min{t >= 1 : base**t >= at_least}`` (``base >= 2``)."""
    t, reach = 1, base
    while reach < at_least:
        reach *= base
        t += 1
    return t


def rounds_limit(eps: float) -> int:
    """An ``n``-independent bound on the rounds under :meth:`ThreeSum.default_config` ``(n, eps)``
    for ``1/2 < eps < 1``: ``1 + ceil(1 / (eps - 1/2)) + ceil(3 / (2 eps))`` (copy trees of arity
    about ``4 n^(eps - 1/2)`` over ``n / 2`` leaves, an OR tree of degree ``s`` over ``n^{3/2} / 6``
    cells). Checked against :meth:`ThreeSum.rounds_bound` for ``n = 2 .. 2^60`` by the tests.

    Examples
    --------
    >>> rounds_limit(0.75), rounds_limit(0.6)
    (7, 14)
    """
    if not 0.5 < eps < 1.0:
        raise ConfigError(f"threesum has O(1) rounds only for 1/2 < eps < 1, got eps = {eps}")
    return 1 + math.ceil(1.0 / (eps - 0.5) - 1e-9) + math.ceil(1.5 / eps - 1e-9)


@lru_cache(maxsize=256)
def _plan(n: int, s: int) -> ThreeSumPlan:
    block = max(1, min(math.isqrt(n - 1) + 1 if n > 1 else 1, s // 3))
    arity = s // block
    blocks = -(-n // block)
    leaves = blocks * (blocks + 1) // 2
    depth = _smallest_power(max(arity, 2), leaves)
    widths = tuple(-(-leaves // arity**t) for t in range(depth + 1))
    relay_base, next_id = [0], blocks
    for t in range(1, depth):
        relay_base.append(next_id)
        next_id += blocks * widths[t]
    cells = (blocks + 2) * (blocks + 1) * blocks // 6
    or_depth = _smallest_power(max(s, 2), cells + 1)
    return ThreeSumPlan(n, s, block, arity, blocks, leaves, depth, widths, tuple(relay_base), next_id, cells,
                        or_depth)


@dataclass(frozen=True)
class ThreeSum(Protocol):
    """3-SUM by block triples in ``1 + d + e`` rounds (module docstring).

    Examples
    --------
    >>> from mpc_sim import Simulator
    >>> protocol = ThreeSum()
    >>> cfg = protocol.default_config(64, 0.75)
    >>> x = np.arange(1, 65) * 3
    >>> x[[5, 40, 60]] = (7, 11, -18)
    >>> run = Simulator(cfg).run(protocol, x)
    >>> run.output.tolist(), run.trace.num_rounds == protocol.rounds_bound(cfg), run.trace.check()
    ([1], True, [])
    """

    summary = "3-SUM: is there a triple summing to 0?"

    name = "threesum"

    # --- declared facts ----------------------------------------------------------------------
    def plan(self, config: MPCConfig) -> ThreeSumPlan:
        """The sizes this protocol uses under ``config``."""
        return _plan(config.n, config.s)

    def check_config(self, config: MPCConfig) -> None:
        if config.s < 3:
            raise ConfigError(f"threesum needs s >= 3 words per machine (a cell holds three blocks), got s = {config.s}")
        plan = self.plan(config)
        if plan.machines_needed > config.machines:
            raise ConfigError(f"threesum needs {plan.machines_needed} machines ({plan.blocks} blocks of {plan.block} "
                              f"words, {plan.cells} cells, copy trees of arity {plan.arity}) but the cluster has "
                              f"{config.machines}; see ThreeSum.default_config")

    def rounds_bound(self, config: MPCConfig) -> int:
        """``1 + d + e`` (exact), see the module docstring."""
        return self.plan(config).rounds

    def fanout_bound(self, config: MPCConfig) -> int:
        return self.plan(config).fanout

    def default_config(self, n: int, eps: float, memory_factor: float = 4.0) -> MPCConfig:
        """``s = ceil(memory_factor * n**eps)`` and the smallest ``machines_factor`` (at ``gamma = 0``)
        giving a machine to every block, relay and cell: about ``n^{3/2} / 6`` machines, i.e. a
        factor about ``n^{eps + 1/2} / 6`` (the protocol's extra machines, ``gamma = eps + 1/2``)."""
        probe = MPCConfig(n=n, eps=eps, memory_factor=memory_factor)
        needed = _plan(n, probe.s).machines_needed
        factor = max(1.0, needed / float(n) ** (1.0 - eps))
        config = MPCConfig(n=n, eps=eps, memory_factor=memory_factor, machines_factor=factor)
        while config.machines < needed:  # floating point: nudge the factor up until it holds
            factor *= 1 + 1e-12
            config = MPCConfig(n=n, eps=eps, memory_factor=memory_factor, machines_factor=factor)
        return config

    # --- input and output ----------------------------------------------------------------------
    def validate_input(self, config: MPCConfig, data: object) -> np.ndarray:
        words = super().validate_input(config, data)
        bad = np.flatnonzero(np.abs(words) > VALUE_BOUND) if words.size else np.zeros(0, dtype=np.int64)
        if bad.size or (words == np.iinfo(np.int64).min).any():
            i = int(bad[0]) if bad.size else int(np.flatnonzero(words == np.iinfo(np.int64).min)[0])
            raise InputError(f"threesum: word {i} is {int(words[i])}; words must satisfy |x| <= 2**61")
        return words

    def reference(self, data: np.ndarray) -> np.ndarray:
        return np.array([three_sum_reference(data)], dtype=np.int64)

    def generate_input(self, config: MPCConfig, seed: int = 0) -> np.ndarray:
        """Uniform words in ``[-n^3, n^3]`` (rarely a solution), and for odd seeds a planted triple."""
        rng = np.random.default_rng(seed)
        bound = min(VALUE_BOUND // 2, config.n ** 3)
        x = rng.integers(-bound, bound + 1, size=config.n, dtype=np.int64)
        if seed % 2 and config.n >= 3:
            a, b = rng.integers(-bound, bound + 1, size=2)
            x[rng.choice(config.n, size=3, replace=False)] = (a, b, -(a + b))
        return x

    # --- per-machine style ---------------------------------------------------------------------
    def step(self, ctx, machine, memory, inbox):
        plan, r = self.plan(ctx.config), ctx.round
        if r == 1:
            return memory[:0], relayout_local(machine, memory, plan.s, lambda i: i // plan.block)
        if r <= plan.depth + 1:
            node = plan.node(machine)
            level = plan.depth - r + 2
            if node is None or node[0] != level:
                return memory, []
            _, block, index = node
            children = plan.children(level, block, index)[0]
            return memory[:0], [(int(c), inbox.words) for c in np.sort(children[children >= 0])]
        v = plan.virtual(machine)
        if v is None:
            return memory, []
        level = r - plan.depth - 1
        if r == plan.depth + 2:
            acc = 0 if v == 0 else int(has_zero_triple(inbox.words))
        else:
            acc = int(np.concatenate([memory, inbox.words]).max(initial=0))
        s = plan.s
        if v % s ** (level - 1):
            return memory[:0], []
        if level <= plan.or_depth and v % s ** level:
            return memory[:0], [(int(plan.machine_of_virtual(v - v % s ** level)), np.array([acc]))]
        return np.array([acc], dtype=np.int64), []

    # --- batch style ---------------------------------------------------------------------------
    def batch_step(self, ctx, state, delivery):
        plan, r, machines = self.plan(ctx.config), ctx.round, ctx.config.machines
        if r == 1:
            return ClusterState.empty(machines), relayout_batch(state.words, plan.s, lambda i: i // plan.block)
        if r <= plan.depth + 1:
            return ClusterState.empty(machines), self._tree_batch(plan, plan.depth - r + 2, delivery)
        return self._or_round(plan, r, machines, state, delivery)

    @staticmethod
    def _tree_batch(plan: ThreeSumPlan, level: int, delivery) -> MessageBatch:
        inbox = delivery.inbox_state()
        width = plan.widths[level]
        blocks = np.repeat(np.arange(plan.blocks, dtype=np.int64), width)
        index = np.tile(np.arange(width, dtype=np.int64), plan.blocks)
        senders = blocks if level == plan.depth else plan.relay_base[level] + blocks * width + index
        children = plan.children(level, blocks, index)
        src = np.repeat(senders, plan.arity).reshape(-1, plan.arity)
        keep = children >= 0
        order = np.argsort(np.where(keep, children, np.iinfo(np.int64).max), axis=1, kind="stable")
        children = np.take_along_axis(children, order, axis=1)
        keep = np.take_along_axis(keep, order, axis=1)
        src, dst = src[keep], children[keep]
        starts, lengths = inbox.offsets[src], np.diff(inbox.offsets)[src]
        total = int(lengths.sum())
        first = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
        words = inbox.words[first + np.arange(total)]
        return MessageBatch(src, dst, ragged_offsets(lengths), words)

    @staticmethod
    def _or_round(plan: ThreeSumPlan, r: int, machines: int, state: ClusterState, delivery):
        level = r - plan.depth - 1
        v = np.arange(plan.cells + 1, dtype=np.int64)
        ids = plan.machine_of_virtual(v)
        if r == plan.depth + 2:
            inbox = delivery.inbox_state()
            acc = np.zeros(v.shape[0], dtype=np.int64)
            acc[1:] = _cells_bits(inbox, ids[1:])
        else:
            held = np.zeros(machines, dtype=np.int64)
            for part in (state, delivery.inbox_state()):
                owner = np.repeat(np.arange(machines), part.sizes())
                np.maximum.at(held, owner, part.words)
            acc = held[ids]
        s = plan.s
        active = v % s ** (level - 1) == 0
        sends = active & (v % s ** level != 0) if level <= plan.or_depth else np.zeros_like(active)
        keeps = active & ~sends
        batch = MessageBatch.empty(np.int64)
        if sends.any():
            parents = v[sends] - v[sends] % s ** level
            batch = pack_batch(ids[sends], plan.machine_of_virtual(parents), acc[sends][:, None])
        sizes = np.zeros(machines, dtype=np.int64)
        sizes[ids[keeps]] = 1
        kept_ids = ids[keeps]
        order = np.argsort(kept_ids, kind="stable")
        return ClusterState(acc[keeps][order].copy(), ragged_offsets(sizes)), batch


def _cells_bits(inbox: ClusterState, cell_ids: np.ndarray) -> np.ndarray:
    """The local check of every cell, from its inbox (its blocks)."""
    starts, stops = inbox.offsets[cell_ids], inbox.offsets[cell_ids + 1]
    lengths = stops - starts
    gather = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(int(lengths.sum()))
    return _segments_bits(inbox.words[gather], ragged_offsets(lengths))
