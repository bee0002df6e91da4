"""The plan of the ANNA -> MPC protocol: machines, trees, rounds and the failure bound.

A function of the model's sizes (:class:`~reductions.decompile.tokens.ModelSpec`), the number of
tokens ``n`` and the local memory ``s`` only, so every machine knows it. Roles (machine ids):

* token machines ``0 .. P - 1`` hold ``T`` consecutive tokens each (the residual rows);
* record machines ``P + b K + j`` (``j < K``): block ``j`` of one head's tables (``tau`` tables) for
  the tokens of token machine ``b``; they hash, build one record per distinct bucket and later add
  the bucket sums they get back;
* shard machines: one aggregation tree per table block, over the ``P`` token blocks, of degree
  ``F`` and depth ``D = ceil(log_F P)``; its level-``t`` node is spread over ``W_t`` machines, a
  bucket living on shard ``hash(seed, layer, t, table, code) mod W_t``.

Record machines of a token block form a relay tree with the token machine (a heap of degree ``f``
rooted at the token machine, depth ``D_r``), which carries the block's ``(q, k, v)`` down and the
heads' partial sums back. A layer takes ``2 (D_r + D)`` rounds; the protocol
``R = 2 + sum over layers of 2 (D_r + D)`` (one round to move the input onto the token machines,
one to move the output onto the first machines).

Memory. ``cap = floor(s / (2 w))`` records of ``w = 5 + m_v`` words per shard machine: it keeps
what it received (with the sender) and, during the down-pass, receives one answer of ``w - 1``
words per bucket it asked for. ``W_t = ceil(r M_t / cap)`` shards for at most ``M_t`` records
entering a level-``t`` node, so a shard expects at most ``cap / r`` records (``r``, the
oversampling, is chosen by the plan). Every limit is met deterministically except the records
one shard receives, a sum over distinct buckets of (children holding the bucket) <= ``c`` weighted
independent coin flips of probability ``1 / W_t``; by a Chernoff bound for such sums,

    P(shard receives more than cap) <= exp(-mu) (e mu / k)**k,   mu = M_t / (c W_t), k = (cap + 1) / c,

and 0 when ``M_t <= cap``. The plan's ``failure_bound`` adds this over every shard machine of every
layer; the plan takes the fewest rounds (then the fewest machines) whose bound is at most
``max_failure`` (default 1e-9). A shard that does overflow anyway makes the simulator raise its
receive-limit error: never a silently wrong output.

Examples
--------
>>> from reductions.decompile.tokens import HeadSpec, LayerSpec, ModelSpec
>>> spec = ModelSpec(4, (LayerSpec((HeadSpec("anna", 4, 4, 8),), False),), 2, np.dtype(np.float64))
>>> plan = make_anna_plan(spec, n=64, s=800)        # one head of 8 tables, m = m_v = 4
>>> plan.tokens_per_machine, plan.token_machines, plan.machines
(16, 4, 400)
>>> layer = plan.layers[0]
>>> (layer.relay_depth, layer.tree_degree, layer.tree_depth), plan.rounds, plan.failure_bound <= 1e-9
((1, 2, 2), 8, True)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mpc_sim.protocols.toolkit import tree_depth

from .errors import PlanError
from .tokens import ModelSpec

__all__ = ["TreePlan", "LayerPlan", "AnnaPlan", "make_anna_plan", "overflow_bound", "relay_depth",
           "OVERSAMPLING"]

OVERSAMPLING = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
"""The oversampling factors ``r`` the plan may choose, smallest first (shards expect at most
``cap / r`` records; a finer grid wastes fewer machines)."""


def overflow_bound(records: int, children: int, cap: int, shards: int) -> float:
    """Chernoff bound on P(one shard receives more than ``cap`` records) (see the module docstring).

    Examples
    --------
    >>> overflow_bound(10, 4, 20, 1)          # at most 10 records: never
    0.0
    >>> 0 < overflow_bound(4000, 4, 100, 320) < 1e-12
    True
    """
    if records <= cap:
        return 0.0
    weight = max(1, min(children, records))
    mu = records / (weight * shards)
    k = (cap + 1) / weight
    if mu >= k:
        return 1.0
    return float(min(1.0, math.exp(-mu + k * (1.0 + math.log(mu / k)))))


def relay_depth(nodes: int, degree: int) -> int:
    """Depth of the heap of ``nodes`` nodes (node 0 the root, children of ``p`` are
    ``p d + 1 .. p d + d``) of degree ``d``.

    Examples
    --------
    >>> relay_depth(1, 3), relay_depth(4, 3), relay_depth(5, 3), relay_depth(4, 1)
    (0, 1, 2, 3)
    """
    if nodes < 1 or degree < 1:
        raise ValueError(f"a heap needs nodes >= 1 and degree >= 1, got {nodes}, {degree}")
    depth, reach, width = 0, 1, 1
    while reach < nodes:
        width *= degree
        reach += width
        depth += 1
    return depth


def heap_depths(nodes: int, degree: int) -> np.ndarray:
    """Depth of every node of the heap (see :func:`relay_depth`)."""
    depth = np.zeros(nodes, dtype=np.int64)
    for node in range(1, nodes):
        depth[node] = depth[(node - 1) // degree] + 1
    return depth


@dataclass(frozen=True)
class TreePlan:
    """One aggregation tree: the buckets of tables ``first_table .. stop_table - 1`` of ``head``.

    ``widths[t - 1]`` is ``W_t``, the shards of every level-``t`` node; node ``g`` of level ``t``
    shard ``w`` is machine ``first_machine + level_offsets[t - 1] + g W_t + w``.
    """

    head: int
    first_table: int
    stop_table: int
    value_dim: int
    leaf_records: int
    cap: int
    widths: tuple[int, ...]
    level_nodes: tuple[int, ...]
    first_machine: int

    @property
    def record_width(self) -> int:
        """``table, code high, code low, asked, count, value sum``: ``5 + m_v`` words."""
        return 5 + self.value_dim

    @property
    def depth(self) -> int:
        return len(self.widths)

    @property
    def level_offsets(self) -> tuple[int, ...]:
        out, total = [], 0
        for nodes, width in zip(self.level_nodes, self.widths):
            out.append(total)
            total += nodes * width
        return tuple(out)

    @property
    def machines(self) -> int:
        return sum(n * w for n, w in zip(self.level_nodes, self.widths))

    def machine(self, level: int, node, shard):
        return self.first_machine + self.level_offsets[level - 1] + node * self.widths[level - 1] + shard


@dataclass(frozen=True)
class LayerPlan:
    """Sizes of one layer: relay tree (degree ``f``, depth ``D_r``), ``K`` record machines per
    token block, aggregation trees (degree ``F``, depth ``D``, oversampling ``r``)."""

    layer: int
    causal: bool
    relay_degree: int
    relay_depth: int
    record_heads: tuple[int, ...]          # head of record machine j
    record_tables: tuple[tuple[int, int], ...]   # (first, stop) tables of record machine j
    tree_degree: int
    tree_depth: int
    oversampling: float
    trees: tuple[TreePlan, ...]            # tree j serves record machine j (empty when D = 0)
    qkv_words: int
    partial_words: int
    failure_bound: float

    @property
    def record_machines(self) -> int:
        return len(self.record_heads)

    @property
    def rounds(self) -> int:
        """``2 (D_r + D)``: relay down, tree up, tree down, relay up."""
        return 2 * (self.relay_depth + self.tree_depth)

    @property
    def shard_machines(self) -> int:
        return sum(tree.machines for tree in self.trees)


@dataclass(frozen=True)
class AnnaPlan:
    """The whole protocol's plan (see the module docstring)."""

    n: int
    s: int
    tokens_per_machine: int
    token_machines: int
    output_dim: int
    layers: tuple[LayerPlan, ...]
    max_failure: float

    @property
    def rounds(self) -> int:
        """``R = 2 + sum_l 2 (D_r,l + D_l)`` (exact: the simulator's trace has this many)."""
        return 2 + sum(layer.rounds for layer in self.layers)

    def layer_start(self, layer: int) -> int:
        """The round in which token machines send layer ``layer``'s ``(q, k, v)``."""
        return 2 + sum(self.layers[l].rounds for l in range(layer))

    @property
    def failure_bound(self) -> float:
        return float(min(1.0, sum(layer.failure_bound for layer in self.layers)))

    @property
    def record_base(self) -> int:
        return self.token_machines

    @property
    def machines(self) -> int:
        """Machines the protocol addresses: token machines, then each layer's record and shard
        machines (every layer reuses the same ids), at least the input and output machines."""
        per_layer = max((self.token_machines * (1 + l.record_machines) + l.shard_machines for l in self.layers),
                        default=self.token_machines)
        return max(per_layer, -(-self.n * self.output_dim // self.s), -(-self.n // self.s), 1)

    def tokens(self, block: int) -> range:
        t = self.tokens_per_machine
        return range(block * t, min(self.n, (block + 1) * t))

    def to_dict(self) -> dict:
        return {
            "n": self.n, "s": self.s, "tokens_per_machine": self.tokens_per_machine,
            "token_machines": self.token_machines, "machines": self.machines, "rounds": self.rounds,
            "failure_bound": self.failure_bound,
            "layers": [{"relay_degree": l.relay_degree, "relay_depth": l.relay_depth,
                        "record_machines": l.record_machines, "tree_degree": l.tree_degree,
                        "tree_depth": l.tree_depth, "oversampling": l.oversampling,
                        "shard_machines": l.shard_machines, "rounds": l.rounds} for l in self.layers],
        }


def _split(total: int, parts: int) -> list[tuple[int, int]]:
    bounds = [(i * total) // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts)]


def _trees(spec, layer_index: int, t: int, p: int, s: int, degree: int, depth: int, r: float,
           record_heads, record_tables, first_machine: int) -> tuple[list[TreePlan], float]:
    trees, bound, machine = [], 0.0, first_machine
    for head, (first, stop) in zip(record_heads, record_tables):
        value_dim = spec.layers[layer_index].heads[head].value_dim
        cap = s // (2 * (5 + value_dim))
        leaf = 2 * t * (stop - first)
        nodes, widths = [], []
        for level in range(1, depth + 1):
            span = degree ** level
            count = -(-p // span)
            records = min(span, p) * leaf
            width = max(1, math.ceil(r * records / cap)) if records > cap else 1
            children = min(degree, -(-p // degree ** (level - 1)))
            bound += count * width * overflow_bound(records, children, cap, width)
            nodes.append(count)
            widths.append(width)
        tree = TreePlan(head, first, stop, value_dim, leaf, cap, tuple(widths), tuple(nodes), machine)
        machine += tree.machines
        trees.append(tree)
    return trees, bound


def _layer_plan(spec: ModelSpec, index: int, n: int, s: int, t: int, budget: float,
                oversampling: tuple[float, ...]) -> LayerPlan | str:
    """The plan of layer ``index`` with ``t`` tokens per machine, or why there is none."""
    layer = spec.layers[index]
    p = -(-n // t)
    qkv, partial = t * layer.qkv_words, t * layer.partial_words
    degree = min(s // max(qkv, 1), (s - t * spec.dim) // max(partial, 1), s // max(partial, 1) - 1)
    if degree < 1:
        return (f"layer {index}: a token machine's (q, k, v) ({qkv} words) or partial sums ({partial}) with its "
                f"rows ({t * spec.dim}) do not fit twice in s = {s}")
    record_heads, record_tables = [], []
    for h, head in enumerate(layer.heads):
        width = 5 + head.value_dim
        kept = t * (2 * head.dim + head.value_dim)
        tau = min(head.tables, min(s // width, (s - kept) // (width - 1)) // (2 * t))
        if tau < 1:
            return (f"layer {index} head {h}: records of one table for {t} tokens ({2 * t} x {width} words) do "
                    f"not fit in s = {s}")
        blocks = -(-head.tables // tau)
        for first, stop in _split(head.tables, blocks):
            record_heads.append(h)
            record_tables.append((first, stop))
    depth_r = relay_depth(len(record_heads) + 1, degree)
    first_shard = p * (1 + len(record_heads))
    if p == 1:
        return LayerPlan(index, layer.causal, degree, depth_r, tuple(record_heads), tuple(record_tables), 2, 0, 1.0,
                         (), layer.qkv_words, layer.partial_words, 0.0)
    caps = [s // (2 * (5 + layer.heads[h].value_dim)) for h in record_heads]
    if min(caps) < 2:
        return f"layer {index}: a shard machine holds fewer than 2 records (s = {s})"
    for depth in range(1, tree_depth(p, 2) + 1):
        degree_f = max(2, math.ceil(p ** (1.0 / depth) - 1e-9))
        while degree_f ** depth < p:
            degree_f += 1
        while degree_f > 2 and (degree_f - 1) ** depth >= p:
            degree_f -= 1
        for r in oversampling:
            trees, bound = _trees(spec, index, t, p, s, degree_f, depth, r, record_heads, record_tables, first_shard)
            if bound <= budget or budget >= 1.0:
                return LayerPlan(index, layer.causal, degree, depth_r, tuple(record_heads), tuple(record_tables),
                                 degree_f, depth, r, tuple(trees), layer.qkv_words, layer.partial_words, bound)
    return (f"layer {index}: no aggregation tree over {p} token machines meets the failure bound {budget:.1e} "
            f"(raise memory_factor)")


def make_anna_plan(spec: ModelSpec, n: int, s: int, *, max_failure: float = 1e-9,
                   tokens_per_machine: int | None = None, oversampling: tuple[float, ...] = OVERSAMPLING) -> AnnaPlan:
    """The plan with the fewest rounds, then the fewest machines, among ``T`` (tokens per token
    machine) a power of two or ``n`` (``tokens_per_machine`` fixes it) and the oversampling
    factors ``oversampling`` (tried in order). ``max_failure = 1`` accepts any bound (it is still
    reported): for experiments with shards that may overflow.

    Raises :class:`PlanError` (a ConfigError) when no ``T`` fits, saying why for the smallest.
    """
    if n < 1 or s < 1:
        raise PlanError(f"need n >= 1 and s >= 1, got n = {n}, s = {s}")
    if not (0.0 < max_failure <= 1.0):
        raise PlanError(f"max_failure must be in (0, 1], got {max_failure}")
    oversampling = tuple(float(r) for r in oversampling)
    if not oversampling or min(oversampling) < 1.0:
        raise PlanError(f"oversampling factors must be numbers >= 1, got {oversampling}")
    budget = max_failure / max(1, spec.depth) if max_failure < 1.0 else 1.0
    if tokens_per_machine is not None:
        candidates = [int(tokens_per_machine)]
        if candidates[0] < 1:
            raise PlanError(f"tokens_per_machine must be >= 1, got {tokens_per_machine}")
    else:
        candidates = sorted({min(n, 1 << i) for i in range(max(1, n).bit_length() + 1)})
    best, first_reason = None, None
    for t in candidates:
        reason = None
        if t > s or t * spec.dim > s or t * spec.output_dim > s:
            reason = (f"{t} tokens per machine: their input ({t}), rows ({t * spec.dim}) or outputs "
                      f"({t * spec.output_dim} words) do not fit in s = {s}")
        layers = []
        for index in range(spec.depth):
            if reason is not None:
                break
            layer = _layer_plan(spec, index, n, s, t, budget, oversampling)
            if isinstance(layer, str):
                reason = f"{t} tokens per machine: {layer}"
            else:
                layers.append(layer)
        if reason is not None:
            first_reason = first_reason or reason
            continue
        plan = AnnaPlan(n, s, t, -(-n // t), spec.output_dim, tuple(layers), max_failure)
        key = (plan.rounds, plan.machines)
        if best is None or key < (best.rounds, best.machines):
            best = plan
    if best is None:
        raise PlanError(f"no plan fits n = {n} tokens in s = {s} words: {first_reason}")
    return best
