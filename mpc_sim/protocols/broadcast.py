"""Broadcast: the value held by machine 0 reaches every machine through a fan-out tree.

The value is the first ``width`` words of the input (machine 0 holds them, since the input starts
``s`` words per machine from machine 0). In round 1 every machine drops the rest of its input;
then the value flows down the in-place radix tree of degree ``d = floor(s / width) + 1`` over all
machines: in each round every informed machine sends it to ``d - 1`` new ones, so sending takes
``(d - 1) * width <= s`` words and the informed set grows by a factor ``d`` per round.

Round bound (exact): ``R = ceil(log_d(machines))`` with ``d = floor(s / width) + 1``, i.e. the
smallest ``R`` with ``d**R >= machines`` (0 on a single machine).

Output convention: at the end **every** machine holds exactly the value (the point of a
broadcast; the one exception to the library's "output on the first machines" rule).
:meth:`Broadcast.output` checks that all copies agree and returns machine 0's copy, so the
output is ``data[:width]`` whatever the cluster.

Examples
--------
>>> from mpc_sim import MPCConfig, Simulator
>>> cfg = MPCConfig(n=16, eps=0.5)          # s = 4, 4 machines: a 2-word value has fan-out 2
>>> result = Simulator(cfg).run(Broadcast(width=2), np.arange(10, 26))
>>> result.output.tolist(), result.trace.num_rounds, Broadcast(width=2).rounds_bound(cfg)
([10, 11], 2, 2)
>>> [m.tolist() for m in result.state.to_list()]
[[10, 11], [10, 11], [10, 11], [10, 11]]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import MPCConfig
from ..errors import ConfigError, ProtocolError
from ..protocol import Protocol
from ..state import ClusterState, MessageBatch, ragged_offsets
from .toolkit import RadixTree, concat_memories

__all__ = ["Broadcast"]


@dataclass(frozen=True)
class Broadcast(Protocol):
    """Broadcast the first ``width`` input words (machine 0's) to every machine by a fan-out tree.

    Parameters
    ----------
    width : int
        Words broadcast (>= 1); the config needs ``width <= min(n, s)``.
    """

    summary = "machine 0's first words to every machine, by a fan-out tree"

    width: int = 1
    name = "broadcast"

    def __post_init__(self) -> None:
        if isinstance(self.width, bool) or not isinstance(self.width, (int, np.integer)) or self.width < 1:
            raise ConfigError(f"broadcast width must be an integer >= 1, got {self.width!r}")

    # --- declared facts ----------------------------------------------------------------------
    def tree(self, config: MPCConfig) -> RadixTree:
        """The fan-out tree: in place over all machines, degree ``floor(s / width) + 1``."""
        return RadixTree(config.machines, config.s // self.width + 1)

    def check_config(self, config: MPCConfig) -> None:
        if self.width > min(config.n, config.s):
            raise ConfigError(f"broadcast of width {self.width} needs n >= width and s >= width, "
                              f"got n = {config.n}, s = {config.s}")

    def rounds_bound(self, config: MPCConfig) -> int:
        """``ceil(log_d(machines))`` with ``d = floor(s / width) + 1`` (exact)."""
        return self.tree(config).depth

    def fanout_bound(self, config: MPCConfig) -> int:
        tree = self.tree(config)
        return max(1, min(tree.degree, config.machines) - 1)

    # --- the computation ---------------------------------------------------------------------
    def step(self, ctx, machine, memory, inbox):
        tree = self.tree(ctx.config)
        if ctx.round == 1:
            value = memory[:self.width] if machine == 0 else memory[:0]    # the rest of the input is dropped
        else:
            value = np.concatenate([memory, inbox.words])      # kept copy, or the copy that just arrived
        level = tree.depth - ctx.round + 1                      # nodes of this level send this round
        if level < 1:
            return value, []
        node = tree.node_of(machine, level)
        if node is None:
            return value, []
        children = [int(tree.machine(level - 1, c)) for c in tree.children(level, node)]
        return value, [(child, value) for child in children if child != machine]

    def batch_step(self, ctx, state, delivery):
        tree = self.tree(ctx.config)
        if ctx.round == 1:
            sizes = np.zeros(state.machines, dtype=np.int64)
            sizes[0] = self.width
            held = ClusterState(state.memory(0)[:self.width].copy(), ragged_offsets(sizes))
        else:
            held = concat_memories(state, delivery.inbox_state())
        level = tree.depth - ctx.round + 1
        if level < 1:
            return held, MessageBatch.empty()
        children, parents = tree.links(level)
        # every sender sends its own copy: gather each parent's words
        payloads = held.words[held.offsets[parents][:, None] + np.arange(self.width)]
        return held, MessageBatch.fixed_width(parents, children, payloads)

    # --- input and output --------------------------------------------------------------------
    def output(self, config: MPCConfig, state: ClusterState) -> np.ndarray:
        """Machine 0's copy, after checking every machine holds the same ``width`` words."""
        value = state.memory(0)
        sizes = state.sizes()
        if (sizes != self.width).any():
            machine = int(np.flatnonzero(sizes != self.width)[0])
            raise ProtocolError(f"broadcast ended with machine {machine} holding {int(sizes[machine])} words, "
                                f"not the {self.width}-word value")
        copies = state.words.reshape(-1, self.width)
        if (copies != value).any():
            machine = int(np.flatnonzero((copies != value).any(axis=1))[0])
            raise ProtocolError(f"broadcast ended with machine {machine} holding a different value than machine 0")
        return value.copy()

    def reference(self, data: np.ndarray) -> np.ndarray:
        return np.asarray(data, dtype=np.int64)[:self.width].copy()

    def generate_input(self, config: MPCConfig, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).integers(-2**62, 2**62, size=config.n, dtype=np.int64)
