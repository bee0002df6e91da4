"""Fan-in / fan-out tree arithmetic shared by the protocol library.

One family of trees serves every protocol: the radix tree of degree ``d`` over ``leaves`` leaves.
Level 0 holds the leaves ``0 .. leaves - 1``; level ``t`` holds ``ceil(leaves / d**t)`` nodes, node
``g`` of level ``t`` having the children ``g*d .. g*d + d - 1`` of level ``t - 1`` (those that
exist). The root is the single node of level ``depth = tree_depth(leaves, d)``, the smallest ``T``
with ``d**T >= leaves``. Aggregating up the tree (one level per round) takes ``depth`` rounds, and
so does a broadcast down it.

Nodes live on machines in one of two ways:

* in place (``first_helper=None``): node ``g`` of level ``t`` lives on leaf ``g * d**t``, its first
  descendant, so a machine is its own child 0 and only the ``d - 1`` other children send to it
  (broadcast, aggregate, splitter distribution: machines with room for the tree's traffic);
* on helpers (``first_helper=h``): levels ``1 .. depth`` live on fresh machines ``h, h + 1, ...``,
  level after level, and all ``d`` children send (prefix sums, whose leaves are full).

Leaves are numbered ``0 .. leaves - 1``; a protocol whose leaves are other machines maps the ids
itself (the sample sort roots its tree at the first empty machine).

Examples
--------
>>> tree = RadixTree(leaves=10, degree=3)
>>> tree.depth, [tree.level_size(t) for t in range(tree.depth + 1)]
(3, [10, 4, 2, 1])
>>> tree.links(1)            # (child machine, parent machine) pairs, level 0 -> level 1
(array([1, 2, 4, 5, 7, 8]), array([0, 0, 3, 3, 6, 6]))
>>> helpers = RadixTree(leaves=10, degree=3, first_helper=10)
>>> helpers.helper_count, helpers.machine(1, np.arange(4)).tolist(), helpers.machine(3, 0)
(7, [10, 11, 12, 13], 16)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["tree_depth", "RadixTree"]


def tree_depth(leaves: int, degree: int) -> int:
    """The smallest ``T >= 0`` with ``degree**T >= leaves``: rounds to aggregate ``leaves`` values
    with fan-in ``degree`` (or to inform ``leaves`` machines when each informed one tells
    ``degree - 1`` more per round).

    Examples
    --------
    >>> tree_depth(1, 2), tree_depth(2, 2), tree_depth(9, 3), tree_depth(10, 3)
    (0, 1, 2, 3)
    """
    if leaves < 1 or degree < 2:
        raise ValueError(f"a tree needs leaves >= 1 and degree >= 2, got leaves = {leaves}, degree = {degree}")
    depth, reach = 0, 1
    while reach < leaves:       # integer arithmetic: no log rounding
        reach *= degree
        depth += 1
    return depth


@dataclass(frozen=True)
class RadixTree:
    """The radix tree of ``degree`` over ``leaves`` leaves, in place or on helper machines.

    Parameters
    ----------
    leaves : int
        Number of leaves (>= 1), numbered ``0 .. leaves - 1``.
    degree : int
        Children per node (>= 2).
    first_helper : int or None
        None for the in-place tree; otherwise the machine hosting the first level-1 node.
    """

    leaves: int
    degree: int
    first_helper: int | None = None

    def __post_init__(self) -> None:
        tree_depth(self.leaves, self.degree)        # validates leaves and degree
        if self.first_helper is not None and self.first_helper < 0:
            raise ValueError(f"first_helper must be a machine id >= 0, got {self.first_helper}")

    @property
    def depth(self) -> int:
        return tree_depth(self.leaves, self.degree)

    def level_size(self, level: int) -> int:
        """Nodes at ``level``: ``ceil(leaves / degree**level)``."""
        return -(-self.leaves // self.degree ** level)

    @property
    def helper_count(self) -> int:
        """Machines hosting the levels above the leaves (0 in place)."""
        if self.first_helper is None:
            return 0
        return sum(self.level_size(t) for t in range(1, self.depth + 1))

    def _level_start(self, level: int) -> int:
        return self.first_helper + sum(self.level_size(t) for t in range(1, level))

    def machine(self, level: int, index):
        """Machine (leaf id in place) hosting node ``index`` (int or array) of ``level``."""
        if level == 0:
            return index
        if self.first_helper is None:
            return index * self.degree ** level
        return self._level_start(level) + index

    def node_of(self, machine: int, level: int) -> int | None:
        """The index of the ``level`` node hosted on ``machine``, or None if it hosts none."""
        if level == 0:
            return machine if 0 <= machine < self.leaves else None
        if self.first_helper is None:
            span = self.degree ** level
            return machine // span if 0 <= machine < self.leaves and machine % span == 0 else None
        index = machine - self._level_start(level)
        return index if 0 <= index < self.level_size(level) else None

    def children(self, level: int, index: int) -> range:
        """Indices (at ``level - 1``) of the children of node ``index`` of ``level``."""
        first = index * self.degree
        return range(first, min(first + self.degree, self.level_size(level - 1)))

    def parent_machine(self, level: int, index: int) -> int:
        """Machine hosting the parent (at ``level + 1``) of node ``index`` of ``level``."""
        return int(self.machine(level + 1, index // self.degree))

    def links(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        """Every edge between ``level - 1`` and ``level`` as ``(child machines, parent machines)``,
        in increasing child order (children of one parent are consecutive). In place, a node's
        edge to itself (child 0) is left out: it carries no message."""
        child = np.arange(self.level_size(level - 1), dtype=np.int64)
        parent = child // self.degree
        if self.first_helper is None:
            child = child[child % self.degree != 0]
            parent = child // self.degree
        return (np.asarray(self.machine(level - 1, child), dtype=np.int64),
                np.asarray(self.machine(level, parent), dtype=np.int64))
