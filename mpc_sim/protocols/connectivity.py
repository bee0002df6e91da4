"""Connected components in ``O(log V)`` hook blocks: min-root hooking and pointer jumping.

Input: ``n = 2E`` words, edge ``e`` being ``(words[2e], words[2e + 1])``, vertices ``0 .. V-1``
with ``V`` the protocol's field ``vertices`` (so isolated vertices exist and every machine knows
the output size), by default ``V = n / 2`` (as many vertices as edges). Self-loops and repeated edges are allowed. Output: ``V`` words, word ``v`` the
smallest vertex of ``v``'s component, on the first ``ceil(V / s)`` machines.

Algorithm
---------
A parent pointer ``p(v) <= v`` per vertex, initially ``p(v) = v``: a forest of *stars* (every
vertex points at its tree's root, the tree's smallest vertex). The protocol alternates blocks,
a coordinator choosing the next one from the "changed" flags (the rounds it costs are counted):

* **hook**: every vertex takes ``nm(v) = min(p(v), min over neighbours u of p(u))``; every root
  ``r`` takes ``m(r) = min nm(v)`` over its star and, if ``m(r) < r``, hooks: ``p(r) = m(r)``.
  Nothing hooked: stop. Otherwise
* **jump** (repeated until nothing changes): ``p(v) = p(p(v))``, which makes the trees stars again.

Bounds. (a) Hooks go to smaller roots, so every tree's root is its minimum and the final stars are
the components. (b) After two hook blocks every tree contains at least two of the trees of before:
a root that neither hooked nor was hooked onto had only neighbours whose roots hooked lower, so it
hooks in the next block. Hence at most ``2L + 1`` hook blocks, ``L = ceil(log2 V)``. (c) The
component minimum's tree grows by at least one hop per hook block, so also at most ``D + 1`` (``D``
the largest diameter of a component). (d) A hook block leaves trees of depth ``< V``, flattened by
``ceil(log2 V)`` jumps plus one that detects no change: at most ``L + 1`` jump blocks per hook.

Machines have roles (contiguous id ranges), every role keeping a header ``[block, first round]``:

* *arc machines* ``[0, Pa)``: every edge gives two arcs ``(u, v, 2e)``, ``(v, u, 2e + 1)``, and every
  vertex a self-loop edge ``E + v`` (so every vertex has arcs). Arcs are sorted twice by a bitonic
  block sort (:mod:`._blocks`): by ``(target, source, arc ^ 1)``, each arc noting its slot, which is
  where its reverse arc lands in the second sort, by ``(source, target, arc)``. Then each vertex's
  arcs are contiguous and every arc knows its reverse arc's slot; neighbour minima are a fixed
  permutation of slots (one word per arc, no addresses: both sides know the order).
* *table machines*: ``p`` for ``Bv`` consecutive vertices each, and the block's "changed" flag.
* *sort machines*: per vertex ``(p(v), value)`` sorted by the bitonic block sort, so all records of
  one root are contiguous: a hook takes the first value of each run; a jump fetches ``p(root)``
  once per run and machine.
* a *coordinator*: ORs the flags, broadcasts the next block.

Hot spots (a vertex of high degree, a root with a huge star) never meet one machine: a machine
asks a table machine once per distinct vertex (root) it holds, and the ones a table machine
serves form a contiguous run of sorted arcs (records), so it gets at most ``Bv + Pa - 1``
(``Bv + Ps - 1``) asks.

Rounds: ``1 + 2 Ta`` setup (distribute edges, two arc sorts; ``Ta = t(t+1)/2``, ``t = ceil(log2
Pa)``), ``8 + Ts`` per hook block, ``6 + Ts`` per jump block (``Ts`` the record sort's stages), one
output round. With ``H = min(D, 2L)``::

    R <= 2 + 2 Ta + (H + 1)(8 + Ts) + H (L + 1)(6 + Ts)

:meth:`Connectivity.rounds_for_diameter` is this bound, :meth:`Connectivity.rounds_bound` the
same with ``D = V - 1``, and :func:`graph_diameter` measures ``D``.

Requirements (``check_config``): ``n`` even, ``s >= 32`` (two sort blocks of ``Ba >= 4`` arcs of
4 words), ``Pa + Pv + Ps + 1 <= s`` (the broadcast), ``Bv = floor((s - 1 - 2 max(Pa, Ps)) / 3)
>= 1`` and ``Pa + Pv + Ps + 1 <= machines``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..config import MPCConfig
from ..errors import ConfigError, InputError
from ..protocol import Protocol
from ..state import ClusterState, MessageBatch
from ._blocks import (bitonic_stages, build_state, delivery_records, first_of_runs, inbox_records,
                      join_headers, pack_batch, pack_local, relayout_batch, relayout_local, smallest_config,
                      sort_round_batch, sort_round_local, spanned, split_headers)

__all__ = ["Connectivity", "components_reference", "graph_diameter"]

STOP, HOOK, JUMP = 0, 1, 2  # block codes broadcast by the coordinator


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
    """The largest diameter of a connected component (networkx): ``D`` in the round bound.

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


@dataclass(frozen=True)
class _Plan:
    """Layout and schedule derived from the config (every machine computes the same)."""

    n: int
    s: int
    machines: int
    V: int
    E: int
    b: int    # input edges per arc machine
    c: int    # vertices (self-loop edges) per arc machine
    Ba: int   # arc slots per arc machine: 2 (b + c)
    Pa: int
    Bv: int   # vertices per table machine
    Pv: int
    Bs: int   # records per sort machine
    Ps: int
    arc_stages: tuple
    sort_stages: tuple

    @property
    def table0(self) -> int:
        return self.Pa

    @property
    def sort0(self) -> int:
        return self.Pa + self.Pv

    @property
    def coordinator(self) -> int:
        return self.Pa + self.Pv + self.Ps

    @property
    def start(self) -> int:  # the first hook block's first round
        return 2 + 2 * len(self.arc_stages)

    def length(self, block: int) -> int:
        return (8 if block == HOOK else 6) + len(self.sort_stages)

    def bound(self, diameter: int) -> int:
        levels = (self.V - 1).bit_length()  # L = ceil(log2 V)
        hooks = min(diameter, 2 * levels)
        return self.start + (hooks + 1) * self.length(HOOK) + hooks * (levels + 1) * self.length(JUMP)

    def table(self, vertex: np.ndarray) -> np.ndarray:
        return self.table0 + vertex // self.Bv

    def table_vertices(self, machine: int) -> np.ndarray:
        j = machine - self.table0
        return np.arange(j * self.Bv, min(self.V, (j + 1) * self.Bv), dtype=np.int64)

    def table_sizes(self) -> np.ndarray:
        return np.diff(np.minimum(np.arange(self.Pv + 1) * self.Bv, self.V))

    def sort_vertices(self, k: int) -> np.ndarray:
        return np.arange(k * self.Bs, min(self.V, (k + 1) * self.Bs), dtype=np.int64)

    def problems(self) -> list[str]:
        found = []
        if self.coordinator + 1 > self.s:
            found.append(f"the coordinator would send Pa + Pv + Ps + 1 = {self.coordinator + 1} words > s = {self.s}")
        if self.Bv < 1:
            found.append(f"no room for table machines: Bv = (s - 1 - 2 max(Pa, Ps)) // 3 = {self.Bv} with "
                         f"Pa = {self.Pa}, Ps = {self.Ps}, s = {self.s}")
        if self.coordinator + 1 > self.machines:
            found.append(f"needs {self.coordinator + 1} machines ({self.Pa} arc, {self.Pv} table, {self.Ps} sort, "
                         f"1 coordinator), the cluster has {self.machines} (raise machines_factor)")
        return found


@lru_cache(maxsize=64)
def _plan(config: MPCConfig, vertices: int) -> _Plan | None:
    """The layout, or None if ``s < 32`` leaves no room for arc sort blocks."""
    s, V, E = config.s, vertices, config.n // 2
    if s < 32:
        return None
    Pa = max(1, -(-16 * (E + V) // s))
    while 16 * (-(-E // Pa) + -(-V // Pa)) > s:  # two sort blocks of Ba = 2(b + c) arcs of 4 words
        Pa += 1
    b, c = -(-E // Pa), -(-V // Pa)
    Bs = (s - 2) // 4  # header + two blocks of (root, value) records
    Ps = -(-V // Bs)
    Bv = (s - 1 - 2 * max(Pa, Ps)) // 3
    return _Plan(config.n, s, config.machines, V, E, b, c, 2 * (b + c), Pa, Bv, -(-V // max(Bv, 1)), Bs, Ps,
                 bitonic_stages(Pa), bitonic_stages(Ps))


def _by_target(arcs: np.ndarray):  # the first sort: where each arc's reverse will land
    return arcs[:, 1], arcs[:, 0], arcs[:, 2] ^ 1


def _by_source(arcs: np.ndarray):
    return arcs[:, 0], arcs[:, 1], arcs[:, 2]


def _by_root(records: np.ndarray):
    return records[:, 0], records[:, 1]


@dataclass(frozen=True)
class Connectivity(Protocol):
    """Connected components of an edge list: the smallest vertex id of every vertex's component.

    Parameters
    ----------
    vertices : int or None
        ``V >= 1``; the input's vertex ids must lie in ``0 .. V-1``. ``None`` (the default) means
        ``V = max(1, n // 2)``: as many vertices as edges.

    Examples
    --------
    >>> from mpc_sim import MPCConfig, Simulator
    >>> edges = np.array([3, 1, 1, 4, 2, 2])           # 3-1, 1-4, a self-loop at 2
    >>> protocol = Connectivity(vertices=6)
    >>> cfg = MPCConfig(n=6, eps=0.5, memory_factor=16, machines_factor=4)
    >>> run = Simulator(cfg).run(protocol, edges)
    >>> run.output.tolist(), run.trace.check()
    ([0, 1, 2, 1, 1, 5], [])
    >>> run.trace.num_rounds <= protocol.rounds_for_diameter(cfg, graph_diameter(edges, 6))
    True
    """

    summary = "connected components of an edge list"

    vertices: int | None = None
    name = "connectivity"

    def __post_init__(self) -> None:
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
        if plan is None:
            raise ConfigError(f"connectivity needs s >= 32 words per machine (two sort blocks of >= 4 arcs of "
                              f"4 words), got s = {config.s}")
        problems = plan.problems()
        if problems:
            raise ConfigError("connectivity: " + "; ".join(problems))
        return plan

    def check_config(self, config: MPCConfig) -> None:
        self._checked_plan(config)

    def fanout_bound(self, config: MPCConfig) -> int:
        """Messages a machine sends in one round, the largest of: the coordinator's broadcast to all
        ``Pa + Pv + Ps + 1`` role machines; an arc machine's asks, reverse-arc values or minima
        (``min(Ba, Pa or Pv)`` machines); a table's answers (one per asking machine) or records
        (``spanned(Bv, Bs)`` sort machines); a sort machine's asks or answers (``min(Bs, Pv)``);
        round 1's relayout (``spanned(s, 2b)`` arc machines); at most 2 output machines."""
        plan = self._checked_plan(config)
        return max(plan.coordinator + 1, min(plan.Ba, max(plan.Pa, plan.Pv)), max(plan.Pa, plan.Ps),
                   min(plan.Ps, spanned(plan.Bv, plan.Bs)), min(plan.Bs, plan.Pv),
                   min(plan.Pa, spanned(config.s, 2 * plan.b)), 2)

    def rounds_bound(self, config: MPCConfig) -> int:
        """The bound of :meth:`rounds_for_diameter` at ``D = V - 1``: ``O(log^2 V)`` blocks."""
        return self._checked_plan(config).bound(self.vertex_count(config.n) - 1)

    def rounds_for_diameter(self, config: MPCConfig, diameter: int) -> int:
        """``2 + 2 Ta + (H + 1)(8 + Ts) + H (L + 1)(6 + Ts)``, ``H = min(D, 2L)``, ``L = ceil(log2 V)``."""
        return self._checked_plan(config).bound(int(diameter))

    def default_config(self, n: int, eps: float) -> MPCConfig:
        """The smallest constants (from 1, 1, growing by 25%) under which this protocol runs."""
        return smallest_config(self, n, eps)

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
        plan, r = _plan(ctx.config, self.vertex_count(ctx.config.n)), ctx.round
        if r == 1:  # edges to arc machines, b per machine, in order
            return memory[:0], relayout_local(machine, memory, plan.s, lambda w: (w // 2) // plan.b)
        if machine < plan.Pa and r < plan.start:
            return self._arc_setup(plan, r, machine, memory, inbox)
        if machine < plan.Pa and r == plan.start:
            memory = self._arc_setup(plan, r, machine, memory, inbox)
        elif r < plan.start or machine > plan.coordinator:
            return memory, []
        elif memory.size == 0:
            if r > plan.start:  # finished: output machines find their labels in the inbox
                return inbox.words.copy(), []
            memory = np.array([HOOK, r], dtype=np.int64)  # the first block is a hook block
            if plan.table0 <= machine < plan.sort0:  # changed flag, then p(v) = v
                memory = np.r_[memory, 0, plan.table_vertices(machine)]
        block, first = int(memory[0]), int(memory[1])
        if r - first == plan.length(block):  # the coordinator's decision opens a new block
            block, first = int(inbox.words[0]), r
            if block == STOP:
                if plan.table0 <= machine < plan.sort0:
                    return memory[:0], relayout_local(machine - plan.table0, memory[3:], plan.Bv, lambda v: v // plan.s)
                return memory[:0], []
            memory = np.r_[block, first, memory[2:]]
        j = r - first
        if machine < plan.table0:
            return self._arc_step(plan, block, j, memory, inbox)
        if machine < plan.sort0:
            return self._table_step(plan, block, j, machine, memory, inbox)
        if machine < plan.coordinator:
            return self._sort_step(plan, block, j, machine, memory, inbox)
        if j == plan.length(block) - 1:  # coordinator: OR the flags, pick the next block
            changed = bool(inbox.words.any())
            decision = np.array([JUMP if changed else (STOP if block == HOOK else HOOK)])
            return memory, [(m, decision) for m in range(plan.coordinator + 1)]
        return memory, []

    def _arc_setup(self, plan, r, machine, memory, inbox):
        """Rounds 2 .. start on an arc machine: two block sorts; at ``start`` the header and arcs
        ``(source, reverse arc's slot)``; before it ``(memory, messages)``."""
        stages, Ta = plan.arc_stages, len(plan.arc_stages)
        if r <= 2 + Ta:  # first sort (by target); its last round also starts the second
            q = r - 2
            block = self._new_arcs(plan, machine, inbox.words) if q == 0 else memory.reshape(plan.Ba, 3)
            block, messages = sort_round_local(block, inbox.words if q else None, q, machine, plan.Pa, stages,
                                               _by_target)
            if q < Ta:
                return block.ravel(), messages
            slot = machine * plan.Ba + np.arange(plan.Ba)
            block = np.c_[block, np.where(block[:, 0] < plan.V, slot, -1)]  # my slot = my reverse's final slot
            block, messages = sort_round_local(block, None, 0, machine, plan.Pa, stages, _by_source)
            if Ta:
                return block.ravel(), messages
        else:  # second sort (by source)
            block, messages = sort_round_local(memory.reshape(plan.Ba, 4), inbox.words, r - 2 - Ta, machine,
                                               plan.Pa, stages, _by_source)
            if r < plan.start:
                return block.ravel(), messages
        return np.r_[HOOK, r, block[:, [0, 3]].ravel()]

    @staticmethod
    def _new_arcs(plan, machine, edge_words):
        """My arcs ``(source, target, arc id)``: input edges, my vertices' self-loops, padding."""
        edges = edge_words.reshape(-1, 2)
        ids = machine * plan.b + np.arange(edges.shape[0])
        mine = np.arange(machine * plan.c, min(plan.V, (machine + 1) * plan.c), dtype=np.int64)
        arcs = np.empty((plan.Ba, 3), dtype=np.int64)
        arcs[0:2 * ids.size:2] = np.c_[edges[:, 0], edges[:, 1], 2 * ids]
        arcs[1:2 * ids.size:2] = np.c_[edges[:, 1], edges[:, 0], 2 * ids + 1]
        loops = 2 * (plan.E + mine)
        arcs[2 * ids.size:2 * (ids.size + mine.size):2] = np.c_[mine, mine, loops]
        arcs[2 * ids.size + 1:2 * (ids.size + mine.size):2] = np.c_[mine, mine, loops + 1]
        arcs[2 * (ids.size + mine.size):] = (plan.V, plan.V, -1)  # padding, sorts last
        return arcs

    # arc machines, hook blocks: fetch p of my vertices, send it along reverse arcs, min per vertex
    def _arc_step(self, plan, block, j, memory, inbox):
        if block != HOOK or j not in (0, 2, 3):
            return memory, []
        arcs = memory[2:].reshape(plan.Ba, 2)
        source, reverse = arcs[:, 0], arcs[:, 1]
        real = source < plan.V
        starts = first_of_runs(source, real)
        vertices = source[starts]
        if j == 0:  # ask the table for p of my vertices
            return memory, pack_local(plan.table(vertices), vertices)
        if j == 2:  # answers arrived in the order asked; each arc sends its source's p to its reverse
            parent = inbox.words[np.cumsum(starts[real]) - 1]
            return memory, pack_local(reverse[real] // plan.Ba, parent)
        # neighbours' p arrived ordered by sending slot, i.e. by my arcs' reverse slots
        received = np.empty(int(real.sum()), dtype=np.int64)
        received[np.argsort(reverse[real])] = inbox.words
        partial = np.minimum.reduceat(received, np.flatnonzero(starts[real]))
        return memory, pack_local(plan.table(vertices), np.c_[vertices, partial])

    # table machines: [block, first round, changed flag | p of my vertices]
    def _table_step(self, plan, block, j, machine, memory, inbox):
        Ts = len(plan.sort_stages)
        header, parent = memory[:3].copy(), memory[3:].copy()
        mine = plan.table_vertices(machine)
        if j == 0:
            header[2] = 0
        if (block, j) in ((HOOK, 1), (JUMP, 2 + Ts)):  # answer every ask with p, in the order asked
            asks = inbox_records(inbox, 1)[:, 0]
            sources = np.repeat(inbox.sources, np.diff(inbox.offsets))
            return memory, pack_local(sources, parent[asks - mine[0]])
        if (block, j) == (HOOK, 4):  # nm(v) = min(p(v), neighbours' p); records (p(v), nm(v))
            partial = inbox_records(inbox, 2)
            nearest = parent.copy()
            np.minimum.at(nearest, partial[:, 0] - mine[0], partial[:, 1])
            return memory, pack_local(plan.sort0 + mine // plan.Bs, np.c_[parent, nearest])
        if (block, j) == (JUMP, 0):  # records (p(v), v): v is implicit in the layout
            return np.r_[header, parent], pack_local(plan.sort0 + mine // plan.Bs, parent)
        if (block, j) in ((HOOK, 6 + Ts), (JUMP, 4 + Ts)):  # hooks of my roots / p(p(v)) of my vertices
            update = inbox_records(inbox, 2)
            old = parent.copy()
            if block == HOOK:
                np.minimum.at(parent, update[:, 0] - mine[0], update[:, 1])
            else:
                parent[update[:, 0] - mine[0]] = update[:, 1]
            header[2] = int((parent != old).any())
            return np.r_[header, parent], [(plan.coordinator, header[2:3])]
        return np.r_[header, parent], []

    # sort machines: [block, first round | records (root, value) sorted by the block sort]
    def _sort_step(self, plan, block, j, machine, memory, inbox):
        Ts, k = len(plan.sort_stages), machine - plan.sort0
        begin = 5 if block == HOOK else 1
        header = memory[:2]
        if begin <= j <= begin + Ts:
            q = j - begin
            if q == 0:
                mine = plan.sort_vertices(k)
                received = inbox_records(inbox, 2 if block == HOOK else 1)
                records = np.full((plan.Bs, 2), plan.V, dtype=np.int64)
                records[:mine.size] = received if block == HOOK else np.c_[received[:, 0], mine]
            else:
                records = memory[2:].reshape(plan.Bs, 2)
            records, messages = sort_round_local(records, inbox.words if q else None, q, k, plan.Ps,
                                                 plan.sort_stages, _by_root)
            if q < Ts:
                return np.r_[header, records.ravel()], [(plan.sort0 + d, p) for d, p in messages]
            starts = first_of_runs(records[:, 0], records[:, 0] < plan.V)
            roots = records[starts, 0]
            if block == HOOK:  # each run's first value is its minimum: hook the root there
                return header.copy(), pack_local(plan.table(roots), np.c_[roots, records[starts, 1]])
            return np.r_[header, records.ravel()], pack_local(plan.table(roots), roots)
        if (block, j) == (JUMP, 3 + Ts):  # p(root) arrived per run, in the order asked
            records = memory[2:].reshape(plan.Bs, 2)
            real = records[:, 0] < plan.V
            grand = inbox.words[np.cumsum(first_of_runs(records[:, 0], real)[real]) - 1]
            return header.copy(), pack_local(plan.table(records[real, 1]), np.c_[records[real, 1], grand])
        return memory, []

    # --- batch style ---------------------------------------------------------------------------
    def batch_step(self, ctx, state, delivery):
        plan, r, machines = _plan(ctx.config, self.vertex_count(ctx.config.n)), ctx.round, ctx.config.machines
        Ts = len(plan.sort_stages)
        empty = MessageBatch.empty(np.int64)
        if r == 1:
            return ClusterState.empty(machines), relayout_batch(state.words, plan.s, lambda w: (w // 2) // plan.b)
        if r < plan.start:
            return self._batch_arc_sorts(plan, r, machines, state, delivery)
        sizes, offsets = state.sizes(), state.offsets
        records = None
        if r == plan.start:
            arcs = self._batch_arc_sorts(plan, r, machines, state, delivery)
            parent, flags = np.arange(plan.V, dtype=np.int64), np.zeros(plan.Pv, dtype=np.int64)
            block, first = HOOK, r
        else:
            if sizes[plan.coordinator] == 0:  # finished
                return delivery.inbox_state(), empty
            block, first = (int(w) for w in state.memory(plan.coordinator)[:2])
            arcs = state.words[:offsets[plan.Pa]].reshape(plan.Pa, 2 * plan.Ba + 2)[:, 2:].reshape(plan.Pa, plan.Ba, 2)
            headers, parent = split_headers(state.words[offsets[plan.table0]:offsets[plan.sort0]],
                                            plan.table_sizes(), 3)
            flags = headers[:, 2]
            if sizes[plan.sort0] > 2:
                records = (state.words[offsets[plan.sort0]:offsets[plan.coordinator]]
                           .reshape(plan.Ps, 2 * plan.Bs + 2)[:, 2:].reshape(plan.Ps, plan.Bs, 2))
            if r - first == plan.length(block):
                block, first = int(delivery.messages.words[0]), r
                if block == STOP:
                    return ClusterState.empty(machines), relayout_batch(parent, plan.Bv, lambda v: v // plan.s,
                                                                        plan.table0)
        j = r - first
        if j == 0:
            flags = np.zeros(plan.Pv, dtype=np.int64)
        batch = empty
        begin = 5 if block == HOOK else 1
        if block == HOOK and j == 0:
            batch = self._batch_fetch(plan, arcs)
        elif (block, j) in ((HOOK, 1), (JUMP, 2 + Ts)):
            table_of, askers, asks = delivery_records(delivery, 1)
            batch = pack_batch(table_of, askers, parent[asks[:, 0]])
        elif block == HOOK and j == 2:
            batch = self._batch_exchange(plan, arcs, delivery.messages.words)
        elif block == HOOK and j == 3:
            batch = self._batch_partials(plan, arcs, delivery.messages.words)
        elif (block, j) == (HOOK, 4):
            _, _, partial = delivery_records(delivery, 2)
            nearest = parent.copy()
            np.minimum.at(nearest, partial[:, 0], partial[:, 1])
            vertex = np.arange(plan.V)
            batch = pack_batch(plan.table(vertex), plan.sort0 + vertex // plan.Bs, np.c_[parent, nearest])
        elif (block, j) == (JUMP, 0):
            vertex = np.arange(plan.V)
            batch = pack_batch(plan.table(vertex), plan.sort0 + vertex // plan.Bs, parent)
        elif begin <= j <= begin + Ts:
            records, batch = self._batch_sort_round(plan, block, j - begin, records, delivery)
        elif (block, j) == (JUMP, 3 + Ts):
            real = records[:, :, 0] < plan.V
            grand = delivery.messages.words[np.cumsum(first_of_runs(records[:, :, 0], real)[real]) - 1]
            vertex = records[:, :, 1][real]
            batch = pack_batch(plan.sort0 + np.nonzero(real)[0], plan.table(vertex), np.c_[vertex, grand])
            records = None
        elif (block, j) in ((HOOK, 6 + Ts), (JUMP, 4 + Ts)):
            _, _, update = delivery_records(delivery, 2)
            old = parent
            parent = parent.copy()
            if block == HOOK:
                np.minimum.at(parent, update[:, 0], update[:, 1])
            else:
                parent[update[:, 0]] = update[:, 1]
            flags = (np.bincount(np.arange(plan.V) // plan.Bv, weights=parent != old, minlength=plan.Pv) > 0)
            flags = flags.astype(np.int64)
            batch = pack_batch(plan.table0 + np.arange(plan.Pv), np.full(plan.Pv, plan.coordinator), flags)
        elif j == plan.length(block) - 1:
            changed = bool(delivery.messages.words.any())
            decision = JUMP if changed else (STOP if block == HOOK else HOOK)
            receivers = np.arange(plan.coordinator + 1)
            batch = pack_batch(np.full(receivers.size, plan.coordinator), receivers, np.full(receivers.size, decision))
        return self._batch_state(plan, machines, block, first, arcs, flags, parent, records), batch

    @staticmethod
    def _batch_state(plan, machines, block, first, arcs, flags, parent, records):
        header = np.array([block, first], dtype=np.int64)
        arc_memory = np.c_[np.tile(header, (plan.Pa, 1)), arcs.reshape(plan.Pa, -1)]
        table_memory = join_headers(np.c_[np.tile(header, (plan.Pv, 1)), flags], parent, plan.table_sizes())
        parts = [(0, np.full(plan.Pa, 2 * plan.Ba + 2), arc_memory),
                 (plan.table0, plan.table_sizes() + 3, table_memory)]
        if records is None:
            parts.append((plan.sort0, np.full(plan.Ps + 1, 2), np.tile(header, plan.Ps + 1)))
        else:
            parts.append((plan.sort0, np.full(plan.Ps, 2 * plan.Bs + 2),
                          np.c_[np.tile(header, (plan.Ps, 1)), records.reshape(plan.Ps, -1)]))
            parts.append((plan.coordinator, [2], header))
        return build_state(machines, parts)

    def _batch_arc_sorts(self, plan, r, machines, state, delivery):
        """Setup rounds 2 .. start on the arc machines; at ``start`` the arcs (source, reverse slot)."""
        Ta = len(plan.arc_stages)
        if r <= 2 + Ta:
            q = r - 2
            blocks = (self._batch_new_arcs(plan, delivery.inbox_state().words) if q == 0
                      else state.words.reshape(plan.Pa, plan.Ba, 3))
            blocks, batch = sort_round_batch(blocks, q, plan.arc_stages, _by_target)
            if q == Ta:
                slot = np.arange(plan.Pa * plan.Ba).reshape(plan.Pa, plan.Ba)
                blocks = np.concatenate([blocks, np.where(blocks[:, :, :1] < plan.V, slot[:, :, None], -1)], axis=2)
                blocks, batch = sort_round_batch(blocks, 0, plan.arc_stages, _by_source)
        else:
            blocks, batch = sort_round_batch(state.words.reshape(plan.Pa, plan.Ba, 4), r - 2 - Ta, plan.arc_stages,
                                             _by_source)
        if r == plan.start:
            return blocks[:, :, [0, 3]].copy()
        return build_state(machines, [(0, np.full(plan.Pa, plan.Ba * blocks.shape[2]), blocks)]), batch

    @staticmethod
    def _batch_new_arcs(plan, edge_words):
        edges = edge_words.reshape(-1, 2)
        edge, vertex = np.arange(plan.E), np.arange(plan.V)
        edge_machine, vertex_machine = edge // plan.b, vertex // plan.c
        edges_on = np.bincount(edge_machine, minlength=plan.Pa)
        arcs = np.empty((plan.Pa, plan.Ba, 3), dtype=np.int64)
        arcs[:] = (plan.V, plan.V, -1)
        at = 2 * (edge - edge_machine * plan.b)
        arcs[edge_machine, at] = np.c_[edges[:, 0], edges[:, 1], 2 * edge]
        arcs[edge_machine, at + 1] = np.c_[edges[:, 1], edges[:, 0], 2 * edge + 1]
        at = 2 * edges_on[vertex_machine] + 2 * (vertex - vertex_machine * plan.c)
        loops = 2 * (plan.E + vertex)
        arcs[vertex_machine, at] = np.c_[vertex, vertex, loops]
        arcs[vertex_machine, at + 1] = np.c_[vertex, vertex, loops + 1]
        return arcs

    @staticmethod
    def _batch_fetch(plan, arcs):
        holder, slot = np.nonzero(first_of_runs(arcs[:, :, 0], arcs[:, :, 0] < plan.V))
        vertices = arcs[holder, slot, 0]
        return pack_batch(holder, plan.table(vertices), vertices)

    @staticmethod
    def _batch_exchange(plan, arcs, parents_in_order):
        real = arcs[:, :, 0] < plan.V
        parent = parents_in_order[np.cumsum(first_of_runs(arcs[:, :, 0], real)[real]) - 1]
        return pack_batch(np.nonzero(real)[0], arcs[:, :, 1][real] // plan.Ba, parent)

    @staticmethod
    def _batch_partials(plan, arcs, received_in_order):
        real = arcs[:, :, 0] < plan.V
        holder, reverse = np.nonzero(real)[0], arcs[:, :, 1][real]
        received = np.empty(reverse.size, dtype=np.int64)
        received[np.lexsort((reverse, holder))] = received_in_order
        starts = first_of_runs(arcs[:, :, 0], real)[real]
        partial = np.minimum.reduceat(received, np.flatnonzero(starts))
        vertices = arcs[:, :, 0][real][starts]
        return pack_batch(holder[starts], plan.table(vertices), np.c_[vertices, partial])

    @staticmethod
    def _batch_sort_round(plan, block, q, records, delivery):
        if q == 0:
            if block == HOOK:
                _, _, received = delivery_records(delivery, 2)
            else:
                received = np.c_[delivery.messages.words, np.arange(plan.V)]
            flat = np.full((plan.Ps * plan.Bs, 2), plan.V, dtype=np.int64)
            at = np.arange(plan.V)  # sort machine k holds vertices k Bs .. (k+1) Bs - 1 in order
            flat[at] = received
            records = flat.reshape(plan.Ps, plan.Bs, 2)
        records, batch = sort_round_batch(records, q, plan.sort_stages, _by_root, plan.sort0)
        if q < len(plan.sort_stages):
            return records, batch
        holder, slot = np.nonzero(first_of_runs(records[:, :, 0], records[:, :, 0] < plan.V))
        roots = records[holder, slot, 0]
        if block == HOOK:
            return None, pack_batch(plan.sort0 + holder, plan.table(roots), np.c_[roots, records[holder, slot, 1]])
        return records, pack_batch(plan.sort0 + holder, plan.table(roots), roots)
