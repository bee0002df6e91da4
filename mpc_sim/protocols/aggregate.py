"""Aggregate: the sum, minimum or maximum of all input words, by a fan-in tree, onto machine 0.

In round 1 every input machine reduces its words to one (the local step, in the same round);
then the partial results climb the in-place radix tree of degree ``s`` over the ``ceil(n / s)``
input machines: in each round every node that is not its parent's first child sends its one word
to the parent, which holds its own word plus at most ``s - 1`` received ones (``<= s``).

Round bound (exact): ``R = ceil(log_s(ceil(n / s)))``, the smallest ``R`` with
``s**R >= ceil(n / s)`` (0 when the input fits on one machine). Needs ``s >= 2`` unless
``n <= s``.

Words are int64; ``sum`` is taken modulo 2**64 (two's complement wraparound, exactly like
``numpy.sum`` on int64), which is associative and commutative, so the tree's order of additions
does not change the result.

Output: one word, on machine 0; every other machine ends empty.

Examples
--------
>>> from mpc_sim import MPCConfig, Simulator
>>> cfg = MPCConfig(n=100, eps=0.5)          # s = 10: 10 input machines, fan-in 10
>>> result = Simulator(cfg).run(Aggregate("max"), np.arange(100) % 37)
>>> result.output.tolist(), result.trace.num_rounds, Aggregate("max").rounds_bound(cfg)
([36], 1, 1)
>>> Simulator(cfg).run(Aggregate("sum"), np.full(100, 2**62)).output.tolist()   # wraps like numpy
[0]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import MPCConfig
from ..errors import ConfigError
from ..protocol import Protocol
from ..state import ClusterState, MessageBatch, ragged_offsets
from .toolkit import RadixTree, concat_memories

__all__ = ["Aggregate", "OPERATIONS"]

OPERATIONS: dict[str, np.ufunc] = {"sum": np.add, "min": np.minimum, "max": np.maximum}


@dataclass(frozen=True)
class Aggregate(Protocol):
    """Sum, min or max of all input words by a fan-in tree of degree ``s``; result on machine 0.

    Parameters
    ----------
    op : {"sum", "min", "max"}
        The reduction (``sum`` wraps modulo 2**64 like numpy).
    """

    summary = "sum, min or max of all words, by a fan-in tree"

    op: str = "sum"
    name = "aggregate"

    def __post_init__(self) -> None:
        if self.op not in OPERATIONS:
            raise ConfigError(f"aggregate op must be one of {sorted(OPERATIONS)}, got {self.op!r}")

    @property
    def ufunc(self) -> np.ufunc:
        return OPERATIONS[self.op]

    # --- declared facts ----------------------------------------------------------------------
    def tree(self, config: MPCConfig) -> RadixTree:
        """The fan-in tree: in place over the input machines, degree ``s`` (2 when ``s = 1``,
        which only runs when the input fits on one machine)."""
        return RadixTree(config.input_machines, max(2, config.s))

    def check_config(self, config: MPCConfig) -> None:
        if config.s < 2 and config.input_machines > 1:
            raise ConfigError(f"aggregate needs s >= 2 to combine values from {config.input_machines} "
                              f"machines (a parent holds its word plus a child's), got s = {config.s}")

    def rounds_bound(self, config: MPCConfig) -> int:
        """``ceil(log_s(ceil(n / s)))`` (exact)."""
        return self.tree(config).depth

    def fanout_bound(self, config: MPCConfig) -> int:
        return 1

    # --- the computation ---------------------------------------------------------------------
    def step(self, ctx, machine, memory, inbox):
        held = np.concatenate([memory, inbox.words])      # own partial result + the children's
        if held.size == 0:
            return held, []
        value = self.ufunc.reduce(held, keepdims=True)     # the local step: one word
        tree, level = self.tree(ctx.config), ctx.round       # level - 1 -> level edges carry this round
        if level <= tree.depth:
            node = tree.node_of(machine, level - 1)
            if node is not None and node % tree.degree != 0:    # not its parent's first child (= itself)
                return value[:0], [(tree.parent_machine(level - 1, node), value)]
        return value, []

    def batch_step(self, ctx, state, delivery):
        held = state if ctx.round == 1 else concat_memories(state, delivery.inbox_state())
        sizes = held.sizes()
        holders = np.flatnonzero(sizes > 0)
        values = np.zeros(state.machines, dtype=np.int64)
        values[holders] = self.ufunc.reduceat(held.words, held.offsets[holders])
        tree, level = self.tree(ctx.config), ctx.round
        keep = np.zeros(state.machines, dtype=bool)
        keep[holders] = True
        batch = MessageBatch.empty()
        if level <= tree.depth:
            children, parents = tree.links(level)
            keep[children] = False
            batch = MessageBatch.fixed_width(children, parents, values[children][:, None])
        return ClusterState(values[keep], ragged_offsets(keep.astype(np.int64))), batch

    # --- input and output --------------------------------------------------------------------
    def reference(self, data: np.ndarray) -> np.ndarray:
        return np.asarray([self.ufunc.reduce(np.asarray(data, dtype=np.int64))], dtype=np.int64)

    def generate_input(self, config: MPCConfig, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).integers(-10**9, 10**9, size=config.n, dtype=np.int64)
