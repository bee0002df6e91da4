"""Prefix sums: inclusive prefix sums of the input in input order, spread exactly like the input.

The input machines are full (``s`` words each), so they cannot host tree nodes: the tree's inner
nodes live on empty helper machines (a radix tree of degree ``s`` over the ``I = ceil(n / s)``
input machines, levels 1..T on machines ``I, I + 1, ...``). Every node, leaf or helper, works the
same way with one trick that keeps memory within ``s``:

* up-sweep: a node with values ``v_0 .. v_{c-1}`` (its input words, or its children's totals)
  computes ``P_j = v_0 + ... + v_j``, sends the total ``P_{c-1}`` to its parent and keeps only
  ``P_j - P_{c-1}`` for ``j < c - 1`` (``c - 1`` words: the last one is implied);
* down-sweep: the node receives ``X``, the inclusive prefix sum at its last value, and then
  ``X + (P_j - P_{c-1})`` is the inclusive prefix sum at value ``j``; it sends these to its children
  (helpers) or keeps them as its output (leaves). The root's ``X`` is its own total.

A leaf thus holds ``s - 1`` words plus the one word it receives, and a helper at most ``s``.
Arithmetic is modulo 2**64 (int64 wraparound, exactly like ``numpy.cumsum``).

Round bound (exact): ``R = 2 * ceil(log_s(I))`` with ``I = ceil(n / s)`` (``T`` rounds up, the root
answering in round ``T + 1``, ``T - 1`` more down; 0 when the input fits on one machine).
Requirement: ``s >= 2`` and ``ceil(I / s) + ceil(I / s**2) + ... + 1`` empty helper machines
beyond the input's (raise ``machines_factor`` when the input fills the cluster);
:meth:`PrefixSum.default_config` picks such a config.

Examples
--------
>>> from mpc_sim import MPCConfig, Simulator
>>> cfg = MPCConfig(n=10, eps=0.5, machines_factor=2)    # s = 4: 3 input machines, 1 helper
>>> result = Simulator(cfg).run(PrefixSum(), np.arange(1, 11))
>>> result.output.tolist()
[1, 3, 6, 10, 15, 21, 28, 36, 45, 55]
>>> result.trace.num_rounds, PrefixSum().rounds_bound(cfg), [len(m) for m in result.state.to_list()]
(2, 2, [4, 4, 2, 0, 0, 0, 0])
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from ..config import MPCConfig
from ..errors import ConfigError
from ..protocol import Protocol
from ..state import ClusterState, MessageBatch, ragged_offsets
from .toolkit import RadixTree

__all__ = ["PrefixSum"]


def _relative_prefixes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(P_j - P_{c-1} for j < c - 1, [P_{c-1}])``: what a node keeps, what it sends up."""
    sums = np.cumsum(values)
    total = sums[-1:]
    return sums[:-1] - total, total


def _ends(relative: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Inclusive prefix sums at every value of a node, given ``x`` (the one at its last value)."""
    return np.concatenate([relative + x, x])


@dataclass(frozen=True)
class PrefixSum(Protocol):
    """Inclusive prefix sums (int64, wrapping) by an up- and down-sweep over helper machines."""

    summary = "inclusive prefix sums, by an up- and down-sweep"

    name = "prefix-sum"

    # --- declared facts ----------------------------------------------------------------------
    def tree(self, config: MPCConfig) -> RadixTree:
        """Leaves = the input machines; inner nodes on helpers from machine ``ceil(n / s)``."""
        return RadixTree(config.input_machines, max(2, config.s), first_helper=config.input_machines)

    def check_config(self, config: MPCConfig) -> None:
        inputs = config.input_machines
        if inputs == 1:
            return
        if config.s < 2:
            raise ConfigError(f"prefix-sum needs s >= 2 to combine {inputs} machines' totals, got s = {config.s}")
        helpers = self.tree(config).helper_count
        if inputs + helpers > config.machines:
            raise ConfigError(
                f"prefix-sum needs {helpers} empty helper machine(s) beyond the {inputs} input machines, "
                f"but the cluster has {config.machines - inputs} (raise machines_factor to at least "
                f"{math.ceil(1000 * (inputs + helpers) / config.n ** (1 + config.gamma - config.eps)) / 1000:g}, "
                f"or memory_factor)")

    def rounds_bound(self, config: MPCConfig) -> int:
        """``2 * ceil(log_s(ceil(n / s)))`` (exact)."""
        return 2 * self.tree(config).depth

    def fanout_bound(self, config: MPCConfig) -> int:
        return max(1, min(config.s, config.input_machines))

    def default_config(self, n: int, eps: float) -> MPCConfig:
        """``MPCConfig(n, eps)`` with the smallest ``machines_factor`` (on a fine grid) that leaves
        room for the helper machines."""
        for factor in (1.0, 1.01, 1.02, 1.05, 1.1, 1.2, 1.5, 2.0, 3.0, 4.0):
            config = MPCConfig(n=n, eps=eps, machines_factor=factor)
            try:
                self.check_config(config)
            except ConfigError:
                continue
            return config
        return MPCConfig(n=n, eps=eps)

    # --- the computation ---------------------------------------------------------------------
    def _helper_level(self, tree: RadixTree, machine: int) -> tuple[int, int] | None:
        for level in range(1, tree.depth + 1):
            node = tree.node_of(machine, level)
            if node is not None:
                return level, node
        return None

    def _to_children(self, tree: RadixTree, level: int, node: int, ends: np.ndarray) -> list:
        children = tree.children(level, node)
        return [(int(tree.machine(level - 1, c)), ends[j:j + 1]) for j, c in enumerate(children)]

    def step(self, ctx, machine, memory, inbox):
        tree = self.tree(ctx.config)
        depth, r = tree.depth, ctx.round
        if machine < tree.leaves:                               # an input machine
            if r == 1 and depth == 0:
                return np.cumsum(memory), []                    # the whole input is here
            if r == 1:
                relative, total = _relative_prefixes(memory)
                return relative, [(tree.parent_machine(0, machine), total)]
            if r == 2 * depth + 1:
                return _ends(memory, inbox.words), []           # X + relative prefixes: the output
            return memory, []
        role = self._helper_level(tree, machine)
        if role is None:
            return memory, []
        level, node = role
        if r == level + 1:                                      # the children's totals arrived
            relative, total = _relative_prefixes(inbox.words)
            if level < depth:
                return relative, [(tree.parent_machine(level, node), total)]
            return memory[:0], self._to_children(tree, level, node, _ends(relative, total))   # root: X = total
        if r == 2 * depth - level + 1:                          # X arrived from the parent
            return memory[:0], self._to_children(tree, level, node, _ends(memory, inbox.words))
        return memory, []

    def batch_step(self, ctx, state, delivery):
        tree = self.tree(ctx.config)
        depth, r = tree.depth, ctx.round
        if r == 1:
            return self._leaves_up(tree, state)
        if r == 2 * depth + 1:                                   # the leaves' final step
            return self._down(tree, state, delivery), MessageBatch.empty()
        level = r - 1 if r <= depth + 1 else 2 * depth - r + 1
        if r <= depth:
            return self._helpers_up(tree, level, state, delivery)
        if r == depth + 1:                                       # the root answers at once
            first = int(tree.machine(depth, 0))
            sums = np.cumsum(delivery.inbox(first).words)
            children = tree.machine(depth - 1, np.arange(sums.shape[0]))
            return state, MessageBatch.fixed_width(np.full(sums.shape[0], first), children, sums[:, None])
        return self._helpers_down(tree, level, state, delivery)

    # --- batch pieces: every node of one level at once ------------------------------------------
    def _leaves_up(self, tree: RadixTree, state: ClusterState):
        if tree.depth == 0:
            return ClusterState(np.cumsum(state.words), state.offsets.copy()), MessageBatch.empty()
        relative, totals = _segmented_relative_prefixes(state.words, state.offsets[:tree.leaves + 1])
        sizes = state.sizes()
        sizes[:tree.leaves] -= 1
        leaves = np.arange(tree.leaves, dtype=np.int64)
        parents = tree.machine(1, leaves // tree.degree)
        return ClusterState(relative, ragged_offsets(sizes)), MessageBatch.fixed_width(leaves, parents, totals[:, None])

    def _helpers_up(self, tree: RadixTree, level: int, state: ClusterState, delivery):
        first, count = int(tree.machine(level, 0)), tree.level_size(level)
        word_offsets = delivery.word_offsets()[first:first + count + 1]
        values = delivery.messages.words[word_offsets[0]:word_offsets[-1]]
        relative, totals = _segmented_relative_prefixes(values, word_offsets - word_offsets[0])
        new_state = _splice(state, first, first + count, relative, np.diff(word_offsets) - 1)
        helpers = np.arange(first, first + count, dtype=np.int64)
        parents = tree.machine(level + 1, np.arange(count) // tree.degree)
        return new_state, MessageBatch.fixed_width(helpers, parents, totals[:, None])

    def _helpers_down(self, tree: RadixTree, level: int, state: ClusterState, delivery):
        first, count = int(tree.machine(level, 0)), tree.level_size(level)
        ends = self._ends_of_level(first, count, state, delivery)
        children = tree.machine(level - 1, np.arange(ends.shape[0]))
        sizes = state.sizes()[first:first + count] + 1           # children per helper
        senders = np.repeat(np.arange(first, first + count, dtype=np.int64), sizes)
        new_state = _splice(state, first, first + count, ends[:0], np.zeros(count, dtype=np.int64))
        return new_state, MessageBatch.fixed_width(senders, children, ends[:, None])

    def _down(self, tree: RadixTree, state: ClusterState, delivery) -> ClusterState:
        ends = self._ends_of_level(0, tree.leaves, state, delivery)
        return _splice(state, 0, tree.leaves, ends, state.sizes()[:tree.leaves] + 1)

    @staticmethod
    def _ends_of_level(first: int, count: int, state: ClusterState, delivery) -> np.ndarray:
        """``_ends`` of the machines ``first .. first + count - 1`` at once: each keeps its relative
        prefixes and has just received its one-word ``X``."""
        word_offsets = delivery.word_offsets()
        x = delivery.messages.words[word_offsets[first]:word_offsets[first + count]]
        offsets = state.offsets[first:first + count + 1]
        ends = np.empty(offsets[-1] - offsets[0] + count, dtype=np.int64)
        _ends_kernel(state.words, offsets, x, ends)
        return ends

    # --- input and output --------------------------------------------------------------------
    def reference(self, data: np.ndarray) -> np.ndarray:
        return np.cumsum(np.asarray(data, dtype=np.int64))

    def generate_input(self, config: MPCConfig, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).integers(-10**9, 10**9, size=config.n, dtype=np.int64)


@nb.njit(cache=True)
def _relative_prefixes_kernel(values, offsets, relative, totals):  # pragma: no cover - compiled
    for i in range(offsets.shape[0] - 1):
        lo, hi, out = offsets[i], offsets[i + 1], offsets[i] - i
        running = 0
        for j in range(lo, hi):
            running += values[j]                  # int64: wraps modulo 2**64
            if j < hi - 1:
                relative[out + j - lo] = running
        totals[i] = running
        for j in range(out, out + hi - lo - 1):
            relative[j] -= running


def _segmented_relative_prefixes(values: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_relative_prefixes` of every (non-empty) segment, concatenated; and the totals."""
    segments = offsets.shape[0] - 1
    relative = np.empty(values.shape[0] - segments, dtype=np.int64)
    totals = np.empty(segments, dtype=np.int64)
    _relative_prefixes_kernel(values, offsets, relative, totals)
    return relative, totals


@nb.njit(cache=True)
def _ends_kernel(relative, offsets, x, ends):  # pragma: no cover - compiled
    for i in range(offsets.shape[0] - 1):
        out = offsets[i] - offsets[0] + i
        for j in range(offsets[i], offsets[i + 1]):
            ends[out + j - offsets[i]] = relative[j] + x[i]
        ends[out + offsets[i + 1] - offsets[i]] = x[i]


def _splice(state: ClusterState, first: int, stop: int, words: np.ndarray, sizes: np.ndarray) -> ClusterState:
    """``state`` with the memories of machines ``first .. stop - 1`` replaced (``words`` in order)."""
    lo, hi = state.offsets[first], state.offsets[stop]
    new_sizes = state.sizes()
    new_sizes[first:stop] = sizes
    if lo > 0 or hi < state.words.shape[0]:
        words = np.concatenate([state.words[:lo], words, state.words[hi:]])
    return ClusterState(words, ragged_offsets(new_sizes))
