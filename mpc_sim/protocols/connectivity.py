"""Connected components in ``O(log V)`` phases of 7 rounds: random-leader star contraction.

Input: ``n = 2E`` words, edge ``e`` being ``(words[2e], words[2e + 1])``, vertices ``0 .. V-1``
with ``V`` the protocol's field ``vertices`` (so isolated vertices exist and every machine knows
the output size), by default ``V = n / 2`` (as many vertices as edges). Self-loops and repeated
edges are allowed. Output: ``V`` words, word ``v`` the smallest vertex of ``v``'s component, on
the first ``ceil(V / s)`` machines.

Algorithm
---------
A parent pointer ``p(v)`` per vertex, initially ``p(v) = v``; the pointers always form *stars*
(every vertex points at its star's root, roots at themselves). Phase ``t``:

* every root flips a public coin ``leader(t, root)`` (a stable hash of the run's seed, ``t`` and
  the root: every machine can evaluate it, no message needed);
* every non-leader root ``r`` hooks onto ``m(r)``, the smallest leader root adjacent to its star
  (if any): ``p(r) = m(r)``; leader roots never move, so one pointer jump ``p(v) = p(p(v))``
  makes every tree a star again;
* a coordinator adds up the *joining pairs* (distinct ``(p(u), p(v))`` of edges between two
  stars, counted per arc bucket). None: the stars are the components, and this phase replaces
  every root by its star's smallest vertex (the last phase). At most ``(s - 1) / 2``: FINISH --
  this phase hooks nothing, the arc buckets send their pairs to the coordinator, which computes
  the components of the contracted graph locally and sends every moved root its component's
  smallest root (every root of a pair also starts the reverse pair, so at most ``J`` roots move:
  ``2 J <= s`` words); the next phase points the roots there (instead of hooking), and the one after
  is the last. (Without FINISH the last few pairs of stars take a geometric tail of phases.)

Bound on the phases. A star with a neighbouring star is absorbed in a phase with probability
``>= 1/4`` (it is a non-leader, a neighbour a leader), so the expected number ``N_t`` of such
stars satisfies ``E N_t <= N_0 (3/4)^t`` and ``P(some edge still joins two stars after t phases)
<= N_0 (3/4)^t`` (``N_0 <= min(V, 2E)``; FINISH only ends a run sooner). The protocol allots
``t_max = ceil(log(2 N_0 / max_failure) / log(4/3))`` phases and raises
:class:`~mpc_sim.errors.ProtocolError` if the coordinator still sees too many joining pairs for
a FINISH in phase ``t_max``: with probability ``>= 1 - max_failure`` the run ends within
:meth:`Connectivity.rounds_bound` (phase ``t_max + 2`` at the latest), and it is never silently
wrong. On random graphs FINISH comes after about ``log_{4/3}(n / s)`` phases: rounds grow
linearly in ``log n`` (about 100 at ``n = 2^16``, ``eps = 0.5``; ``benchmarks/bench_rounds.py``).

Primitives (all constant-round at constant ``eps``). Every hot spot (a vertex of huge degree, a
huge star) is handled by one-word keys sorted with a *sample sort*: sources sample their keys
with a public probability ``q`` (stable hashes of the key's index), a leader picks every
``r``-th sample as a splitter and spreads the splitters down an in-place radix tree
(:mod:`._trees`) of degree ``floor(s / K)``; the sources send each key to its bucket machine
(the number of splitters below it), which sorts it locally. Buckets then hold contiguous runs of
the global order, so a machine that asks a table machine once per distinct vertex (root) it
holds sends it at most ``Bv + K - 1`` asks in total (``K`` buckets). A bucket overflows its
``cap`` records only if some ``cap`` consecutive keys hold fewer than ``r`` samples:
probability ``<= N P(Bin(cap, q) < r)``; the leader overflows ``s`` words with probability
``<= exp(-N q h(s / N q))`` (Chernoff, ``h(x) = x ln x - x + 1``). :func:`sort_plan` picks
``(q, r)`` keeping both below ``max_failure / (4 (t_max + 2))``; the simulator's typed limit
errors catch the rest.

Machines have roles (contiguous id ranges): *edge machines* (``b = s/4`` input edges each),
*arc buckets* (arcs ``(source, arc id)`` sorted by the key ``source * n + arc``), *tables*
(``p``, the first and last arc bucket holding each vertex's arcs, the phase's candidate, a
pending FINISH target, for ``Bv`` consecutive vertices), *record buckets* (keys ``p(v) * V + v``
sorted per phase), a *leader* (the sorts' sampler) and a *coordinator*.

Rounds. Setup: round 1 moves edges to edge machines, which sample arc keys in round 2;
splitters reach the edge machines after ``Ta`` more rounds (``Ta = 0`` when all arcs fit one
bucket, else the splitter tree's depth, at least 1); the edge machines send arcs to buckets;
buckets send every arc's location to its edge machine, which tells each arc where its reverse
arc lies. Phase ``t`` starts at ``start = 5 + Ta`` (4 when ``Ta = 0``) plus ``t * L``,
``L = 4 + max(3, 1 + Tr)`` (``Tr`` likewise for the record sort)::

    j = 0     tables: push p(v) to the arc buckets holding v's arcs; sample record keys
    j = 1     arc buckets: send p(source) along every arc to its reverse arc; leader: splitters
    j = 2     arc buckets: per source the smallest leader root across a joining arc (only for
              non-leader roots) to the tables; their joining pairs' count to the coordinator
    j = 3     coordinator: STOP or FINISH to tables and arc buckets (or nothing)
    c         tables (c = max(3, 1 + Tr)): records (p(v) * V + v, candidate) to record buckets
    c + 1     buckets: sort; per root run (r, least candidate, least vertex) to r's table
    c + 2     tables: answer each ask: m(r) if r hooks, else r (after STOP: the star's minimum;
              after FINISH: r, and in the next phase the pending target)
    c + 3     buckets: (v, answer) to v's table, which sets p(v) at j = L (the next phase's 0)

After STOP the tables send the labels to the output machines. Hence (exactly, given the number
of phases ``P <= t_max + 3``) ``R = start + P * L``, and :meth:`Connectivity.rounds_bound` is
``start + (t_max + 3) L``.

Only the per-machine style is implemented (no ``batch_step``): every heavy step is numpy over a
machine's records, and the machine count is small (``O(n / s)``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache

import numpy as np

from ..config import MPCConfig
from ..errors import ConfigError, InputError, ProtocolError
from ..protocol import Protocol
from ..randomness import hash64, uniform01
from .toolkit import (INT_MAX, SearchedDefaultConfig, SortPlan, first_of_runs, pack_local, relayout_local, sort_plan,
                      spanned, splitter_roots as _splitter_roots, splitter_sends as _splitter_sends)

__all__ = ["Connectivity", "SortPlan", "components_reference", "graph_diameter", "sort_plan", "MAX_FAILURE"]

MAX_FAILURE = 1e-9
"""Probability bound of a run not ending within its round bound (or overflowing a sort)."""

INF = INT_MAX
_ARC_TAG, _RECORD_TAG, _LEADER_TAG = 11, 12, 13  # hash domains of the public coins
_STOP, _FINISH = 1, 2  # the coordinator's one-word messages


def components_reference(data: np.ndarray, vertices: int) -> np.ndarray:
    """Smallest vertex of every vertex's component, by plain numpy label propagation.

    Examples
    --------
    >>> components_reference(np.array([3, 1, 1, 4, 2, 2]), 6).tolist()
    [0, 1, 2, 1, 1, 5]
    """
    data = np.asarray(data, dtype=np.int64)
    u, v = data[0::2], data[1::2]
    label = np.arange(vertices, dtype=np.int64)
    while True:
        new = label.copy()
        np.minimum.at(new, u, label[v])
        np.minimum.at(new, v, label[u])
        new = new[new]
        if np.array_equal(new, label):
            return label
        label = new


def graph_diameter(data: np.ndarray, vertices: int) -> int:
    """The largest diameter of a connected component (networkx).

    Examples
    --------
    >>> graph_diameter(np.array([0, 1, 1, 2, 4, 5]), 6)
    2
    """
    import networkx as nx

    data = np.asarray(data, dtype=np.int64)
    graph = nx.Graph()
    graph.add_nodes_from(range(vertices))
    graph.add_edges_from(zip(data[0::2].tolist(), data[1::2].tolist()))
    return max(nx.diameter(graph.subgraph(c)) for c in nx.connected_components(graph))


# --------------------------------------------------------------------------------------------------
# The layout
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    """Layout and schedule, a function of the config and ``V`` (every machine computes it)."""

    n: int
    s: int
    machines: int
    V: int
    E: int
    b: int          # edges per edge machine
    Pe: int
    capA: int       # arcs per arc bucket
    arcs: SortPlan
    Bv: int         # vertices per table
    Pv: int
    capR: int       # records per record bucket
    records: SortPlan
    phases: int     # t_max: phase t_max must see no joining edge

    @cached_property
    def KA(self) -> int:
        return self.arcs.buckets

    @cached_property
    def KR(self) -> int:
        return self.records.buckets

    @cached_property
    def A0(self) -> int:
        return self.Pe

    @cached_property
    def T0(self) -> int:
        return self.Pe + self.KA

    @cached_property
    def R0(self) -> int:
        return self.T0 + self.Pv

    @cached_property
    def leader(self) -> int:
        return self.R0 + self.KR

    @cached_property
    def coordinator(self) -> int:
        return self.leader + 1

    @cached_property
    def classify_arcs(self) -> int:   # the round edge machines send arcs to buckets
        return 2 if self.arcs.trivial else 3 + self.arcs.rounds

    @cached_property
    def start(self) -> int:           # phase 0's first round
        return self.classify_arcs + 2

    @cached_property
    def classify(self) -> int:        # c: the phase round tables send records
        return max(3, 1 + self.records.rounds)

    @cached_property
    def length(self) -> int:          # L
        return self.classify + 4

    @cached_property
    def bound(self) -> int:
        return self.start + (self.phases + 3) * self.length

    def table(self, vertex):
        return self.T0 + vertex // self.Bv

    def table_vertices(self, machine: int) -> np.ndarray:
        j = machine - self.T0
        return np.arange(j * self.Bv, min(self.V, (j + 1) * self.Bv), dtype=np.int64)

    def edge_range(self, machine: int) -> tuple[int, int]:
        return machine * self.b, min(self.E, (machine + 1) * self.b)

    def problems(self) -> list[str]:
        found = []
        if self.Bv < 1:
            found.append(f"no room for table machines: Bv = (s - 2 - K_r - 3 max(K_a, K_r)) // 8 = {self.Bv} "
                         f"with K_a = {self.KA}, K_r = {self.KR}, s = {self.s}")
            return found
        if self.KA + self.Pv > self.s:
            found.append(f"the coordinator would send K_a + Pv = {self.KA + self.Pv} words > s = {self.s}")
        if self.coordinator + 1 > self.machines:
            found.append(f"needs {self.coordinator + 1} machines ({self.Pe} edge, {self.KA} arc bucket, {self.Pv} "
                         f"table, {self.KR} record bucket, a leader, a coordinator), the cluster has "
                         f"{self.machines} (raise machines_factor)")
        return found


def phase_budget(vertices: int, edges: int, max_failure: float) -> int:
    """``t_max = ceil(log(2 N_0 / max_failure) / log(4/3))``, ``N_0 = min(V, 2E)``: the phases
    after which some edge still joins two stars with probability at most ``max_failure / 2``.

    Examples
    --------
    >>> phase_budget(2**19, 2**19, 1e-9)
    121
    """
    n0 = max(1, min(vertices, 2 * edges))
    return max(1, math.ceil(math.log(2 * n0 / max_failure) / math.log(4 / 3)))


@lru_cache(maxsize=64)
def _plan(config: MPCConfig, vertices: int) -> _Plan | str:
    s, V, E, n = config.s, vertices, config.n // 2, config.n
    if s < 16:
        return f"connectivity needs s >= 16 words per machine, got s = {s}"
    phases = phase_budget(V, E, MAX_FAILURE)
    per_sort = MAX_FAILURE / (4 * (phases + 2))
    capA, capR = (s - 2) // 4, (s - 1) // 3
    arcs = sort_plan(2 * E, capA, s, per_sort)
    if isinstance(arcs, str):
        return "sorting the arcs: " + arcs
    b = min(s // 4, (s - arcs.buckets) // 2)        # room for the splitters beside the edges
    if b < 1:
        return f"s = {s} leaves no room for edges beside {arcs.buckets} splitter words"
    Pe = -(-E // b)
    records = sort_plan(V, capR, s, per_sort)
    if isinstance(records, str):
        return "sorting the records: " + records
    Bv = min((s - 2 - records.buckets - 3 * max(arcs.buckets, records.buckets)) // 8, (s - arcs.buckets) // 2)
    Pv = -(-V // Bv) if Bv >= 1 else 0
    return _Plan(n, s, config.machines, V, E, b, Pe, capA, replace(arcs, leaves=Pe), Bv, Pv, capR,
                 replace(records, leaves=max(Pv, 1)), phases)


def _splitters(samples: np.ndarray, spacing: int) -> np.ndarray:
    """``[count, every spacing-th sample in order]``: the leader's payload."""
    chosen = np.sort(samples)[spacing - 1::spacing]
    return np.r_[chosen.shape[0], chosen].astype(np.int64)


def _bucket_of(keys: np.ndarray, payload: np.ndarray | None) -> np.ndarray:
    if payload is None:
        return np.zeros(keys.shape[0], dtype=np.int64)
    return np.searchsorted(payload[1:], keys, side="left").astype(np.int64)


def _leaders(seed: int, phase: int, roots: np.ndarray) -> np.ndarray:
    return (hash64(seed, _LEADER_TAG, phase, roots) & np.uint64(1)).astype(bool)


@dataclass(frozen=True)
class Connectivity(SearchedDefaultConfig, Protocol):
    """Connected components of an edge list: the smallest vertex id of every vertex's component.

    Parameters
    ----------
    vertices : int or None
        ``V >= 1``; the input's vertex ids must lie in ``0 .. V-1``. ``None`` (the default) means
        ``V = max(1, n // 2)``: as many vertices as edges.
    finish : bool
        Whether the coordinator may FINISH (solve the contracted graph locally once its joining
        pairs fit ``(s - 1) / 2`` words); False runs pure star contraction to the end.

    Examples
    --------
    >>> from mpc_sim import MPCConfig, Simulator
    >>> edges = np.array([3, 1, 1, 4, 2, 2])           # 3-1, 1-4, a self-loop at 2
    >>> protocol = Connectivity(vertices=6)
    >>> cfg = protocol.default_config(6, 0.5)
    >>> run = Simulator(cfg).run(protocol, edges)
    >>> run.output.tolist(), run.trace.check()
    ([0, 1, 2, 1, 1, 5], [])
    >>> (run.trace.num_rounds - protocol.start_round(cfg)) % protocol.phase_length(cfg)
    0
    """

    summary = "connected components of an edge list (random-leader star contraction, sample sorts)"
    round_formula = ("R = start + P L <= start + (t_max + 3) L w.h.p.: start = 5 + Ta, L = 4 + max(3, 1 + Tr) "
                     "(7 when the splitter trees have depth <= 2), t_max = ceil(log(2 min(V, 2E) / 1e-9) / log(4/3))")
    """The round count as a formula (the listing prints it; :meth:`rounds_formula` fills in the numbers)."""

    vertices: int | None = None
    finish: bool = True
    name = "connectivity"

    def __post_init__(self) -> None:
        if not isinstance(self.finish, (bool, np.bool_)):
            raise ConfigError(f"connectivity: finish must be True or False, got {self.finish!r}")
        object.__setattr__(self, "finish", bool(self.finish))
        if self.vertices is None:
            return
        if isinstance(self.vertices, bool) or not isinstance(self.vertices, (int, np.integer)) or self.vertices < 1:
            raise ConfigError(f"connectivity: vertices must be an integer >= 1 or None, got {self.vertices!r}")
        object.__setattr__(self, "vertices", int(self.vertices))

    def vertex_count(self, n: int) -> int:
        """``V`` for an input of ``n`` words: the field, or ``max(1, n // 2)`` when it is None."""
        return max(1, n // 2) if self.vertices is None else self.vertices

    # --- declared facts ------------------------------------------------------------------------
    def _checked_plan(self, config: MPCConfig) -> _Plan:
        if config.n % 2:
            raise ConfigError(f"connectivity: the input is an edge list of 2 words per edge, but n = {config.n} is odd")
        plan = _plan(config, self.vertex_count(config.n))
        if isinstance(plan, str):
            raise ConfigError("connectivity: " + plan)
        problems = plan.problems()
        if problems:
            raise ConfigError("connectivity: " + "; ".join(problems))
        return plan

    def check_config(self, config: MPCConfig) -> None:
        self._checked_plan(config)

    def fanout_bound(self, config: MPCConfig) -> int:
        """Messages a machine sends in one round, the largest of: an input machine's relayout
        (``spanned(s, 2b)`` edge machines) and sample; the leader's and a tree node's splitter
        sends (``degree``); an edge machine's arcs (``K_a`` buckets) or reverse locations; an
        arc bucket's locations and asks, reverse values or partials (``Pe + Pv``, ``K_a``,
        ``Pv + 1``); a table's pushes and sample (``K_a + 1``), records (``K_r``), answers
        (``K_r``) or labels; a record bucket's asks or answers (``Pv``); the coordinator's STOP
        (``K_a + Pv``)."""
        plan = self._checked_plan(config)
        return max(spanned(config.s, 2 * plan.b) + 1, plan.arcs.degree, plan.records.degree,
                   min(plan.KA, 2 * plan.b), min(plan.Pe, plan.capA) + min(plan.Pv, plan.capA), min(plan.KA, plan.capA),
                   min(plan.Pv, plan.capA) + 1, plan.KA + 1, plan.KR, spanned(plan.Bv, config.s),
                   min(plan.Pv, plan.capR), plan.KA + plan.Pv)

    def rounds_bound(self, config: MPCConfig) -> int:
        """``start + (t_max + 3) L`` (see the module docstring): a bound that holds with
        probability ``>= 1 - MAX_FAILURE`` (otherwise the run raises, never ends later)."""
        return self._checked_plan(config).bound

    def rounds_formula(self, config: MPCConfig) -> str:
        """The bound as a formula with its numbers, e.g. ``start + (t_max + 3) x L = 7 + (121 + 3) x 7 = 875; ...``."""
        plan = self._checked_plan(config)
        return (f"start + (t_max + 3) x L = {plan.start} + ({plan.phases} + 3) x {plan.length} = {plan.bound}; "
                f"t_max = ceil(log(2 min(V, 2E) / {MAX_FAILURE:g}) / log(4/3)), L = 4 + max(3, 1 + Tr)")

    def start_round(self, config: MPCConfig) -> int:
        """The round phase 0 starts in: ``5 + Ta`` (4 when all arcs fit one bucket)."""
        return self._checked_plan(config).start

    def phase_length(self, config: MPCConfig) -> int:
        """``L = 4 + max(3, 1 + Tr)`` rounds per phase."""
        return self._checked_plan(config).length

    def phase_budget(self, config: MPCConfig) -> int:
        """``t_max``: the phases allotted before the last (see the module docstring)."""
        return self._checked_plan(config).phases

    def validate_input(self, config: MPCConfig, data: object) -> np.ndarray:
        words = super().validate_input(config, data)
        vertices = self.vertex_count(config.n)
        bad = np.flatnonzero((words < 0) | (words >= vertices))
        if bad.size:
            raise InputError(f"connectivity: word {int(bad[0])} (edge {int(bad[0]) // 2}) is vertex "
                             f"{int(words[bad[0]])}, outside 0 .. {vertices - 1}")
        return words

    def reference(self, data: np.ndarray) -> np.ndarray:
        return components_reference(data, self.vertex_count(np.asarray(data).shape[0]))

    def generate_input(self, config: MPCConfig, seed: int = 0) -> np.ndarray:
        """``n / 2`` edges with endpoints uniform over the ``V`` vertices."""
        return np.random.default_rng(seed).integers(0, self.vertex_count(config.n), size=config.n, dtype=np.int64)

    # --- per-machine style ---------------------------------------------------------------------
    def step(self, ctx, machine, memory, inbox):
        plan, r, seed = _plan(ctx.config, self.vertex_count(ctx.config.n)), ctx.round, ctx.seed
        if r == 1:
            return memory[:0], self._input_round(plan, seed, machine, memory)
        if machine == plan.coordinator:
            return self._coordinator(plan, r, memory, inbox, self.finish)
        if machine == plan.leader:
            return self._leader(plan, r, seed, inbox)
        if r >= plan.start and machine != plan.leader and memory.size == 0 and len(inbox) \
                and (r - plan.start) % plan.length == 1 and r > plan.start + 1:
            return inbox.words.copy(), []   # finished: output machines keep their labels
        if machine < plan.A0:
            return self._edge_machine(plan, r, seed, machine, memory, inbox)
        if machine < plan.T0:
            return self._arc_bucket(plan, r, seed, machine, memory, inbox)
        if machine < plan.R0:
            return self._table(plan, r, seed, machine, memory, inbox)
        if machine < plan.leader:
            return self._record_bucket(plan, r, memory, inbox)
        return memory, []

    # round 1: edges to edge machines (which sample arc keys to the leader in round 2)
    def _input_round(self, plan, seed, machine, memory):
        return relayout_local(machine, memory, plan.s, lambda w: (w // 2) // plan.b)

    def _leader(self, plan, r, seed, inbox):
        if r == 3 and not plan.arcs.trivial:
            payload = _splitters(inbox.words[inbox.words >= 0], plan.arcs.spacing)
            return inbox.words[:0], [(int(m), payload) for m in _splitter_roots(plan.arcs, 0)]
        if r >= plan.start and (r - plan.start) % plan.length == 1 and not plan.records.trivial and len(inbox):
            payload = _splitters(inbox.words, plan.records.spacing)
            return inbox.words[:0], [(int(m), payload) for m in _splitter_roots(plan.records, plan.T0)]
        return inbox.words[:0], []

    def _coordinator(self, plan, r, memory, inbox, finish):
        """``[f]`` once FINISH was sent in phase ``f``: phase ``f`` hooks nothing, phase ``f + 1``
        applies the coordinator's components of the joining pairs, phase ``f + 2`` is the last."""
        if r < plan.start:
            return memory, []
        phase, j = divmod(r - plan.start, plan.length)
        if j == 5 and memory.size and int(memory[0]) == phase:   # the joining pairs of the FINISH phase
            pairs = np.unique(inbox.words)
            a, b = pairs // plan.V, pairs % plan.V
            roots, index = np.unique(np.r_[a, b], return_inverse=True)
            label = components_reference(np.c_[index[:a.size], index[a.size:]].ravel(), roots.size)
            moved = label != np.arange(roots.size)
            return memory, pack_local(plan.table(roots[moved]), np.stack([roots[moved], roots[label[moved]]], axis=1))
        if j != 3:
            return memory, []
        joining = int(inbox.words.sum())
        finished_in = int(memory[0]) if memory.size else -10
        if joining == 0:
            code, memory = _STOP, memory[:0]
        elif phase == finished_in + 1:
            return memory, []                   # the components are applied in this phase
        elif phase == finished_in + 2:
            raise ProtocolError(f"connectivity: {joining} joining pairs after the components were applied", round=r)
        elif finish and joining <= (plan.s - 1) // 2:
            code, memory = _FINISH, np.array([phase], dtype=np.int64)
        elif phase >= plan.phases:
            raise ProtocolError(f"connectivity: {joining} joining pairs (> s / 2) in phase {phase} = t_max "
                                f"(probability <= {MAX_FAILURE:g}; rerun with another seed)", round=r)
        else:
            return memory, []
        word = np.array([code], dtype=np.int64)
        return memory, [(m, word) for m in range(plan.A0, plan.R0)]

    # edge machines: [edge words | payload of splitters] until the arcs leave; then reverse locations
    def _edge_machine(self, plan, r, seed, machine, memory, inbox):
        lo, hi = plan.edge_range(machine)
        if hi <= lo:
            return memory, []
        arc = 2 * lo + np.arange(2 * (hi - lo), dtype=np.int64)
        if r == 2:
            memory = inbox.words.copy()
            if r < plan.classify_arcs:  # sample arc keys (arc w's key: its source x_w, then w)
                picked = uniform01(seed, _ARC_TAG, arc) < plan.arcs.probability
                keys = memory[picked] * plan.n + arc[picked]
                if machine == 0:        # always a message: the round must not look silent
                    keys = np.r_[-1, keys]
                return memory, ([(plan.leader, keys)] if keys.size else [])
        elif 2 < r <= plan.classify_arcs and len(inbox):
            memory = np.r_[memory, inbox.words]
        if r <= plan.classify_arcs:
            edges = memory[:2 * (hi - lo)]
            payload = None if plan.arcs.trivial else memory[2 * (hi - lo):]
            if r < plan.classify_arcs:
                sends = _splitter_sends(plan.arcs, r - 3, 0, machine)
                return memory, [(m, payload) for m in sends]
            keys = edges * plan.n + arc
            return memory[:0], pack_local(plan.A0 + _bucket_of(keys, payload), keys)
        if r == plan.start:  # (arc, location) pairs: tell every arc where its reverse lies
            pairs = inbox.words.reshape(-1, 2)
            loc = np.empty(2 * (hi - lo), dtype=np.int64)
            loc[pairs[:, 0] - 2 * lo] = pairs[:, 1]
            reverse = loc.reshape(-1, 2)[:, ::-1].ravel()
            return memory[:0], pack_local(plan.A0 + loc // plan.capA, np.c_[loc % plan.capA, reverse])
        return memory, []

    # arc buckets: [count | sources | reverse locations | p of distinct sources (j = 1 .. 2)]
    def _arc_bucket(self, plan, r, seed, machine, memory, inbox):
        k = machine - plan.A0
        if r == plan.classify_arcs + 1:
            keys = np.sort(inbox.words)
            sources, arc = keys // plan.n, keys % plan.n
            locations = k * plan.capA + np.arange(keys.shape[0], dtype=np.int64)
            vertices = sources[first_of_runs(sources, np.ones(sources.shape[0], dtype=bool))]
            messages = pack_local((arc // 2) // plan.b, np.c_[arc, locations])
            messages += pack_local(plan.table(vertices), vertices)
            return np.r_[keys.shape[0], sources].astype(np.int64), messages
        if memory.size == 0 or r <= plan.start:
            return memory, []
        phase, j = divmod(r - plan.start, plan.length)
        count = int(memory[0])
        sources = memory[1:1 + count]
        starts = first_of_runs(sources, np.ones(count, dtype=bool))
        if j == 1:
            if phase == 0:
                pairs = inbox.words.reshape(-1, 2)
                reverse = np.empty(count, dtype=np.int64)
                reverse[pairs[:, 0]] = pairs[:, 1]
                parent = sources[starts]
            else:
                reverse = memory[1 + count:1 + 2 * count]
                parent = inbox.words.copy()
            per_arc = parent[np.cumsum(starts) - 1]
            messages = pack_local(plan.A0 + reverse // plan.capA, per_arc)
            return np.concatenate(([count], sources, reverse, parent)), messages
        if j == 2:
            reverse = memory[1 + count:1 + 2 * count]
            parent = memory[1 + 2 * count:]
            mine = parent[np.cumsum(starts) - 1]
            theirs = np.empty(count, dtype=np.int64)
            theirs[np.argsort(reverse, kind="stable")] = inbox.words
            joining = mine != theirs
            hooks = joining & ~_leaders(seed, phase, mine) & _leaders(seed, phase, theirs)
            candidate = np.where(hooks, theirs, INF)
            pairs = np.unique(mine[joining] * plan.V + theirs[joining])    # kept for a FINISH
            messages = [(plan.coordinator, np.array([pairs.size], dtype=np.int64))]
            if count:
                least = np.minimum.reduceat(candidate, np.flatnonzero(starts))
                vertices = sources[starts]
                some = least < INF
                messages = pack_local(plan.table(vertices[some]), np.stack([vertices[some], least[some]], axis=1)) + messages
            return np.concatenate((memory[:1 + 2 * count], pairs)), messages
        if j == 4:
            kept = memory[:1 + 2 * count]
            code = int(inbox.words[0]) if len(inbox) else 0
            if code == _STOP:
                return memory[:0], []
            pairs = memory[1 + 2 * count:]
            return kept, ([(plan.coordinator, pairs)] if code == _FINISH and pairs.size else [])
        return memory, []

    # tables: [stop | finish | p | first bucket | last bucket | candidate | pending] for my vertices,
    # then the splitters. finish: 1 in a FINISH phase (no hooks), 2 in the next (apply pending)
    def _table(self, plan, r, seed, machine, memory, inbox):
        if r < plan.start:
            return memory, []
        mine = plan.table_vertices(machine)
        nb, v0 = mine.shape[0], int(mine[0])
        phase, j = divmod(r - plan.start, plan.length)
        c = plan.classify
        none = np.full(nb, INF, dtype=np.int64)
        if r == plan.start:  # p(v) = v; first and last bucket holding v's arcs
            senders = np.repeat(inbox.sources, np.diff(inbox.offsets)) - plan.A0
            first = none.copy()
            last = np.full(nb, -1, dtype=np.int64)
            np.minimum.at(first, inbox.words - v0, senders)
            np.maximum.at(last, inbox.words - v0, senders)
            memory = np.concatenate(([0, 0], mine, first, last, none, none)).astype(np.int64)
            return memory, self._sample_records(plan, seed, phase, mine, mine)
        if memory.size == 0:
            return memory, []
        stop, finish = int(memory[0]), int(memory[1])
        body = memory[2:2 + 5 * nb].reshape(5, nb).copy()
        parent, first, last, candidate, pending = body
        payload = memory[2 + 5 * nb:]
        if j == 0:
            update = inbox.words.reshape(-1, 2)
            parent[update[:, 0] - v0] = update[:, 1]
            if stop:
                return memory[:0], pack_local(mine // plan.s, parent)
            if finish == 1:
                finish = 2
            else:
                finish, pending = 0, none
            spans = np.where(last >= 0, last - first + 1, 0)
            owner = np.repeat(np.arange(nb), spans)
            bucket = np.repeat(first, spans) + np.arange(owner.shape[0]) - np.repeat(np.cumsum(spans) - spans, spans)
            messages = pack_local(plan.A0 + bucket, parent[owner])
            messages += self._sample_records(plan, seed, phase, mine, parent)
            return np.concatenate(([0, finish], parent, first, last, none, pending)).astype(np.int64), messages
        messages = []
        for source, words in inbox:
            if source == plan.coordinator and words.shape[0] == 1:
                stop, finish = (1, finish) if int(words[0]) == _STOP else (stop, 1)
            elif source == plan.coordinator:    # the FINISH components: (root, representative)
                mapping = words.reshape(-1, 2)
                pending[mapping[:, 0] - v0] = mapping[:, 1]
            elif source == plan.leader or plan.T0 <= source < plan.R0:
                payload = words.copy()          # the splitters
            elif j == 3 and plan.A0 <= source < plan.T0:
                partial = words.reshape(-1, 2)
                np.minimum.at(candidate, partial[:, 0] - v0, partial[:, 1])
        if 2 <= j <= plan.records.rounds and not plan.records.trivial:
            for m in _splitter_sends(plan.records, j - 1, plan.T0, machine - plan.T0):
                messages.append((m, payload))
        if j == c:
            keys = parent * plan.V + mine
            buckets = _bucket_of(keys, None if plan.records.trivial else payload)
            messages += pack_local(plan.R0 + buckets, np.stack([keys, candidate], axis=1))
            payload = payload[:0]
        if j == c + 2:  # asks (root, least candidate, least vertex) from record buckets
            asks = inbox.words.reshape(-1, 3)
            askers = np.repeat(inbox.sources, np.diff(inbox.offsets) // 3)
            least, smallest = none.copy(), none.copy()
            np.minimum.at(least, asks[:, 0] - v0, asks[:, 1])
            np.minimum.at(smallest, asks[:, 0] - v0, asks[:, 2])
            if stop:
                answer = smallest
            elif finish == 1:
                answer = mine
            elif finish == 2:
                answer = np.where(pending < INF, pending, mine)
            else:
                answer = np.where(least < INF, least, mine)
            messages += pack_local(askers, answer[asks[:, 0] - v0])
        return np.concatenate(([stop, finish], parent, first, last, candidate, pending, payload)).astype(np.int64), \
            messages

    @staticmethod
    def _sample_records(plan, seed, phase, mine, parent):
        if plan.records.trivial:
            return []
        picked = uniform01(seed, _RECORD_TAG, phase, mine) < plan.records.probability
        return [(plan.leader, parent[picked] * plan.V + mine[picked])] if picked.any() else []

    # record buckets: sorted keys p(v) V + v between rounds c + 1 and c + 3
    def _record_bucket(self, plan, r, memory, inbox):
        if r < plan.start:
            return memory, []
        j = (r - plan.start) % plan.length
        c = plan.classify
        if j == c + 1 and len(inbox):
            records = inbox.words.reshape(-1, 2)
            records = records[np.argsort(records[:, 0], kind="stable")]
            roots, vertex = records[:, 0] // plan.V, records[:, 0] % plan.V
            starts = first_of_runs(roots, np.ones(roots.shape[0], dtype=bool))
            at = np.flatnonzero(starts)
            least = np.minimum.reduceat(records[:, 1], at)
            return records[:, 0].copy(), pack_local(plan.table(roots[at]), np.stack([roots[at], least, vertex[at]], axis=1))
        if j == c + 3 and memory.size:
            roots, vertex = memory // plan.V, memory % plan.V
            starts = first_of_runs(roots, np.ones(roots.shape[0], dtype=bool))
            answer = inbox.words[np.cumsum(starts) - 1]
            return memory[:0], pack_local(plan.table(vertex), np.stack([vertex, answer], axis=1))
        return memory, []
