"""Connected components by min-label propagation with shortcutting, hot spots handled by sorting.

Input: ``n = 2E`` words, edge ``e`` being ``(u_e, v_e) = (words[2e], words[2e + 1])``, vertices
``0 .. V-1`` with ``V`` the protocol's field ``vertices`` (so isolated vertices exist and the
output size is known to every machine). Self-loops and repeated edges are allowed. Output: ``V``
words, word ``v`` the smallest vertex of ``v``'s component, on the first ``ceil(V / s)`` machines.

Algorithm
---------
Labels start as ``ℓ(v) = v``; one *iteration* does

1. propagation: ``ℓ'(v) = min(ℓ(v), min over neighbours u of ℓ(u))``;
2. shortcut (pointer jumping): ``ℓ''(v) = ℓ'(ℓ'(v))``;
3. stop when no label changed (decided by a coordinator and broadcast back, rounds counted).

Labels only decrease and ``ℓ(w) <= w``; after ``t`` iterations ``ℓ(v)`` is at most the smallest
vertex within distance ``t`` of ``v`` (the shortcut never increases it), so labels are final after
``D`` iterations, ``D`` the largest diameter of a component, and the ``D + 1``-st changes nothing:
**at most D + 1 <= V iterations**. At a fixed point labels are constant on components and the
component minimum ``m`` keeps ``ℓ(m) = m``. Shortcutting makes far fewer iterations typical
(a path of ``V`` increasing ids needs ``O(log V)``).

Machines have roles (contiguous id ranges):

* *arc machines* ``[0, Pa)``: every edge gives two arcs ``(u, v, 2e)``, ``(v, u, 2e + 1)``, and every
  vertex a self-loop edge ``E + v`` (so every vertex has arcs). Arcs are sorted twice by a bitonic
  block sort (:mod:`._blocks`): by ``(target, source, arc ^ 1)``, where each arc notes its slot,
  which is where its reverse arc lands in the second sort, by ``(source, target, arc)``. Then each
  vertex's arcs are contiguous and every arc knows its reverse arc's slot.
* *table machines*: ``ℓ`` for ``Bv`` consecutive vertices each.
* *sort machines*: the shortcut's requests ``(ℓ'(v), v)``, sorted by the bitonic block sort.
* one *coordinator* ORs the "changed" flags and broadcasts the decision.

Hot spots (a vertex of high degree, a label shared by many vertices) never meet a single
machine: a machine asks the table once per distinct vertex (or label) it holds, and the ones a
table machine serves form a contiguous run of sorted arcs (requests), so it gets at most
``Bv + Pa - 1`` (``Bv + Ps - 1``) asks. Reverse arcs make propagation a fixed permutation of
slots (one word per arc, no addresses: both sides know the order).

Rounds: ``1 + 2 Ta`` setup (distribute edges, two arc sorts; ``Ta = t(t+1)/2``, ``t =
ceil(log2 Pa)``), ``I (10 + Ts)`` for ``I`` iterations (``Ts`` the request sort's stages), and one
output round::

    R = 2 + 2 Ta + I (10 + Ts),   I <= D + 1 <= V

:meth:`Connectivity.rounds_bound` uses ``I = V``; :meth:`Connectivity.rounds_for_diameter` the
bound ``D + 1`` for a graph of known diameter, and :func:`graph_diameter` measures ``D``.

Requirements (``check_config``): ``n`` even, ``s >= 32`` (a machine holds two sort blocks of
``Ba >= 4`` arcs of 4 words), ``Pa + Pv <= s`` (the coordinator's broadcast), ``2 Bv + Ps <= s``,
and ``Pa + Pv + Ps + 1 <= machines``.
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
                      sort_round_batch, sort_round_local, split_headers)

__all__ = ["Connectivity", "components_reference", "graph_diameter"]


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
    """The largest diameter of a connected component (networkx), ``D`` in the round bound.

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
    Bs: int   # requests per sort machine
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
    def start(self) -> int:  # round of the first iteration's first step
        return 2 + 2 * len(self.arc_stages)

    @property
    def iteration_length(self) -> int:
        return 10 + len(self.sort_stages)

    def rounds(self, iterations: int) -> int:
        return self.start + iterations * self.iteration_length

    def table(self, vertex: np.ndarray) -> np.ndarray:
        return self.table0 + vertex // self.Bv

    def table_vertices(self, machine: int) -> np.ndarray:
        j = machine - self.table0
        return np.arange(j * self.Bv, min(self.V, (j + 1) * self.Bv), dtype=np.int64)

    def table_sizes(self) -> np.ndarray:
        return np.diff(np.minimum(np.arange(self.Pv + 1) * self.Bv, self.V))

    def problems(self) -> list[str]:
        found = []
        if self.Pa + self.Pv > self.s:
            found.append(f"the coordinator would send Pa + Pv = {self.Pa} + {self.Pv} words > s = {self.s}")
        if self.Bv < 1 or 2 * self.Bv + self.Ps > self.s:
            found.append(f"table machines do not fit: Bv = {self.Bv}, Ps = {self.Ps}, s = {self.s}")
        need = self.coordinator + 1
        if need > self.machines:
            found.append(f"needs {need} machines ({self.Pa} arc, {self.Pv} table, {self.Ps} sort, 1 coordinator), "
                         f"the cluster has {self.machines} (raise machines_factor)")
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
    Bv = (s - 2 * Pa - 1) // 3
    Bs = s // 4
    return _Plan(config.n, s, config.machines, V, E, b, c, 2 * (b + c), Pa, Bv, -(-V // max(Bv, 1)), Bs,
                 -(-V // Bs), bitonic_stages(Pa), bitonic_stages(-(-V // Bs)))


def _by_target(arcs: np.ndarray):  # the first sort: where each arc's reverse will land
    return arcs[:, 1], arcs[:, 0], arcs[:, 2] ^ 1


def _by_source(arcs: np.ndarray):
    return arcs[:, 0], arcs[:, 1], arcs[:, 2]


def _by_label(requests: np.ndarray):
    return requests[:, 0], requests[:, 1]


@dataclass(frozen=True)
class Connectivity(Protocol):
    """Connected components of an edge list: the smallest vertex id of every vertex's component.

    Parameters
    ----------
    vertices : int
        ``V >= 1``; the input's vertex ids must lie in ``0 .. V-1``.

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

    vertices: int
    name = "connectivity"

    def __post_init__(self) -> None:
        if isinstance(self.vertices, bool) or not isinstance(self.vertices, (int, np.integer)) or self.vertices < 1:
            raise ConfigError(f"connectivity: vertices must be an integer >= 1, got {self.vertices!r}")
        object.__setattr__(self, "vertices", int(self.vertices))

    # --- declared facts ------------------------------------------------------------------------
    def _checked_plan(self, config: MPCConfig) -> _Plan:
        if config.n % 2:
            raise ConfigError(f"connectivity: the input is an edge list of 2 words per edge, but n = {config.n} is odd")
        plan = _plan(config, self.vertices)
        if plan is None:
            raise ConfigError(f"connectivity needs s >= 32 words per machine (two sort blocks of >= 4 arcs of "
                              f"4 words), got s = {config.s}")
        problems = plan.problems()
        if problems:
            raise ConfigError("connectivity: " + "; ".join(problems))
        return plan

    def check_config(self, config: MPCConfig) -> None:
        self._checked_plan(config)

    def rounds_bound(self, config: MPCConfig) -> int:
        """``2 + 2 Ta + V (10 + Ts)``: the schedule with the worst case of ``V`` iterations."""
        return self._checked_plan(config).rounds(self.vertices)

    def rounds_for_diameter(self, config: MPCConfig, diameter: int) -> int:
        """``2 + 2 Ta + (D + 1)(10 + Ts)``: the bound for graphs whose components have diameter <= D."""
        return self._checked_plan(config).rounds(min(int(diameter) + 1, self.vertices))

    def iterations(self, config: MPCConfig, rounds: int) -> int:
        """How many iterations a run of ``rounds`` rounds made."""
        plan = self._checked_plan(config)
        return (rounds - plan.start) // plan.iteration_length

    def default_config(self, n: int, eps: float) -> MPCConfig:
        """The smallest constants (from 1, 1, growing by 25%) under which this protocol runs."""
        return smallest_config(self, n, eps)

    def validate_input(self, config: MPCConfig, data: object) -> np.ndarray:
        words = super().validate_input(config, data)
        bad = np.flatnonzero((words < 0) | (words >= self.vertices))
        if bad.size:
            raise InputError(f"connectivity: word {int(bad[0])} (edge {int(bad[0]) // 2}) is vertex "
                             f"{int(words[bad[0]])}, outside 0 .. {self.vertices - 1}")
        return words

    def reference(self, data: np.ndarray) -> np.ndarray:
        return components_reference(data, self.vertices)

    def generate_input(self, config: MPCConfig, seed: int = 0) -> np.ndarray:
        """``n / 2`` edges with endpoints uniform over the ``V`` vertices."""
        return np.random.default_rng(seed).integers(0, self.vertices, size=config.n, dtype=np.int64)

    # --- per-machine style ---------------------------------------------------------------------
    def step(self, ctx, machine, memory, inbox):
        plan, r = _plan(ctx.config, self.vertices), ctx.round
        if r == 1:  # edges to arc machines, b per machine, in order
            return memory[:0], relayout_local(machine, memory, plan.s, lambda w: (w // 2) // plan.b)
        if machine < plan.Pa:
            return self._arc_step(plan, r, machine, memory, inbox)
        if r < plan.start:
            return memory, []
        j = (r - plan.start) % plan.iteration_length
        first_iteration = r - plan.start < plan.iteration_length
        if machine < plan.sort0:
            return self._table_step(plan, j, first_iteration, machine, memory, inbox)
        if machine < plan.coordinator:
            return self._sort_step(plan, j, machine, memory, inbox)
        if machine == plan.coordinator and j == 9 + len(plan.sort_stages):
            decision = np.array([int(inbox.words.any())])
            return memory[:0], [(m, decision) for m in range(plan.sort0)]
        return memory, []

    # arc machines: setup sorts, then label fetch, reverse-arc exchange, partial minima
    def _arc_step(self, plan, r, machine, memory, inbox):
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
        elif r <= plan.start:  # second sort (by source)
            block, messages = sort_round_local(memory.reshape(plan.Ba, 4), inbox.words, r - 2 - Ta, machine,
                                               plan.Pa, stages, _by_source)
            if r < plan.start:
                return block.ravel(), messages
        j = (r - plan.start) % plan.iteration_length
        if r == plan.start:  # arcs final: (source, reverse arc's slot)
            arcs = block[:, [0, 3]].copy()
        elif j == 0:  # the coordinator's decision
            if not inbox.words[0]:
                return memory[:0], []
            arcs = memory.reshape(plan.Ba, 2)
        elif j == 1 and memory.size == 0:  # finished: the labels are my output
            return inbox.words.copy(), []
        else:
            arcs = memory.reshape(plan.Ba, 2)
        source, reverse = arcs[:, 0], arcs[:, 1]
        real = source < plan.V
        starts = first_of_runs(source, real)
        vertices = source[starts]
        if j == 0:  # ask the table for the labels of my vertices
            return arcs.ravel(), pack_local(plan.table(vertices), vertices)
        if j == 2:  # labels arrived in the order asked; each arc sends its source's label to its reverse
            label = inbox.words[np.cumsum(starts[real]) - 1]
            return arcs.ravel(), pack_local(reverse[real] // plan.Ba, label)
        if j == 3:  # neighbours' labels arrived, ordered by sending slot = my arcs' reverse slots
            received = np.empty(int(real.sum()), dtype=np.int64)
            received[np.argsort(reverse[real])] = inbox.words
            partial = np.minimum.reduceat(received, np.flatnonzero(starts[real]))
            return arcs.ravel(), pack_local(plan.table(vertices), np.c_[vertices, partial])
        return arcs.ravel(), []

    @staticmethod
    def _new_arcs(plan, machine, edge_words):
        """My arcs ``(source, target, arc id)``: input edges, my vertices' self-loops, padding."""
        edges = edge_words.reshape(-1, 2)
        ids = machine * plan.b + np.arange(edges.shape[0])
        mine = np.arange(machine * plan.c, min(plan.V, (machine + 1) * plan.c), dtype=np.int64)
        loops = plan.E + mine
        arcs = np.full((plan.Ba, 3), plan.V, dtype=np.int64)
        arcs[:, 2] = -1
        made = np.r_[np.c_[edges[:, 0], edges[:, 1], 2 * ids], np.c_[edges[:, 1], edges[:, 0], 2 * ids + 1],
                     np.c_[mine, mine, 2 * loops], np.c_[mine, mine, 2 * loops + 1]]
        order = np.r_[np.arange(edges.shape[0]) * 2, np.arange(edges.shape[0]) * 2 + 1,
                      2 * edges.shape[0] + np.arange(mine.size) * 2, 2 * edges.shape[0] + np.arange(mine.size) * 2 + 1]
        arcs[order] = made
        return arcs

    # table machines: [changed flag | labels of my vertices]
    def _table_step(self, plan, j, first_iteration, machine, memory, inbox):
        Ts = len(plan.sort_stages)
        mine = plan.table_vertices(machine)
        if j == 0:
            if first_iteration or memory.size == 0:
                return memory, []
            if inbox.words[0]:
                return np.r_[0, memory[1:]], []
            return memory[:0], relayout_local(machine - plan.table0, memory[1:], plan.Bv, lambda v: v // plan.s)
        if j == 1 and first_iteration:
            memory = np.r_[0, mine]  # ℓ(v) = v
        if memory.size == 0:
            return memory, []
        flag, label = memory[0], memory[1:].copy()
        if j in (1, 6 + Ts):  # answer every ask with the labels, in the order asked
            asks = inbox_records(inbox, 1)[:, 0]
            sources = np.repeat(inbox.sources, np.diff(inbox.offsets))
            return memory, pack_local(sources, label[asks - mine[0]])
        if j == 4:  # propagation: ℓ' = min(ℓ, neighbours' labels); then ask ℓ'(ℓ'(v)) via the sort
            partial = inbox_records(inbox, 2)
            old = label.copy()
            np.minimum.at(label, partial[:, 0] - mine[0], partial[:, 1])
            flag = int(flag or (label < old).any())
            return np.r_[flag, label], pack_local(plan.sort0 + mine // plan.Bs, label)
        if j == 8 + Ts:  # shortcut answers ℓ''(v); report whether anything changed
            answer = inbox_records(inbox, 2)
            old = label.copy()
            label[answer[:, 0] - mine[0]] = answer[:, 1]
            flag = int(flag or (label < old).any())
            return np.r_[flag, label], [(plan.coordinator, np.array([flag]))]
        return memory, []

    # sort machines: sort (ℓ'(v), v) by label, fetch each distinct label's label, answer v
    def _sort_step(self, plan, j, machine, memory, inbox):
        Ts, k = len(plan.sort_stages), machine - plan.sort0
        if 5 <= j <= 5 + Ts:
            q = j - 5
            if q == 0:
                mine = np.arange(k * plan.Bs, min(plan.V, (k + 1) * plan.Bs), dtype=np.int64)
                block = np.full((plan.Bs, 2), plan.V, dtype=np.int64)
                block[:mine.size] = np.c_[inbox.words, mine]
            else:
                block = memory.reshape(plan.Bs, 2)
            block, messages = sort_round_local(block, inbox.words if q else None, q, k, plan.Ps, plan.sort_stages,
                                               _by_label)
            if q < Ts:
                return block.ravel(), [(plan.sort0 + d, p) for d, p in messages]
            keys = block[first_of_runs(block[:, 0], block[:, 1] < plan.V), 0]
            return block.ravel(), pack_local(plan.table(keys), keys)
        if j == 7 + Ts:
            block = memory.reshape(plan.Bs, 2)
            real = block[:, 1] < plan.V
            starts = first_of_runs(block[:, 0], real)
            shortcut = inbox.words[np.cumsum(starts[real]) - 1]
            return memory[:0], pack_local(plan.table(block[real, 1]), np.c_[block[real, 1], shortcut])
        return memory, []

    # --- batch style ---------------------------------------------------------------------------
    def batch_step(self, ctx, state, delivery):
        plan, r, machines = _plan(ctx.config, self.vertices), ctx.round, ctx.config.machines
        Ta, Ts = len(plan.arc_stages), len(plan.sort_stages)
        if r == 1:
            return ClusterState.empty(machines), relayout_batch(state.words, plan.s, lambda w: (w // 2) // plan.b)
        if r < plan.start:
            return self._batch_arc_sorts(plan, r, machines, state, delivery)
        j = (r - plan.start) % plan.iteration_length
        first_iteration = r - plan.start < plan.iteration_length
        offsets = state.offsets
        table_words = state.words[offsets[plan.table0]:offsets[plan.sort0]]
        sort_words = state.words[offsets[plan.sort0]:offsets[plan.coordinator]]
        if r == plan.start:  # the last arc sort round: arcs (source, reverse slot) are final
            arcs = self._batch_arc_sorts(plan, r, machines, state, delivery)
        else:
            arc_words = state.words[:offsets[plan.Pa]]
            arcs = arc_words.reshape(plan.Pa, plan.Ba, 2) if arc_words.size else None
        flags = labels = blocks = None
        if table_words.size:
            headers, labels = split_headers(table_words, plan.table_sizes(), 1)
            flags = headers[:, 0]
        if sort_words.size:
            blocks = sort_words.reshape(plan.Ps, plan.Bs, 2)
        batch = MessageBatch.empty(np.int64)
        if arcs is None and j == 1 and not first_iteration:  # finished: labels are the output
            return delivery.inbox_state(), batch
        if j == 0:
            if not first_iteration:
                if not delivery.messages.words[0]:
                    return ClusterState.empty(machines), relayout_batch(labels, plan.Bv, lambda v: v // plan.s,
                                                                        plan.table0)
                flags = np.zeros(plan.Pv, dtype=np.int64)
            batch = self._batch_fetch_labels(plan, arcs)
        elif j in (1, 6 + Ts):
            if j == 1 and first_iteration:
                flags, labels = np.zeros(plan.Pv, dtype=np.int64), np.arange(plan.V, dtype=np.int64)
            askers_table, askers, asks = delivery_records(delivery, 1)
            batch = pack_batch(askers_table, askers, labels[asks[:, 0]])
        elif j == 2:
            batch = self._batch_exchange(plan, arcs, delivery.messages.words)
        elif j == 3:
            batch = self._batch_partials(plan, arcs, delivery.messages.words)
        elif j == 4:
            _, _, partial = delivery_records(delivery, 2)
            old = labels
            labels = labels.copy()
            np.minimum.at(labels, partial[:, 0], partial[:, 1])
            flags = flags | self._changed(plan, labels < old)
            vertex = np.arange(plan.V)
            batch = pack_batch(plan.table(vertex), plan.sort0 + vertex // plan.Bs, labels)
        elif 5 <= j <= 5 + Ts:
            q = j - 5
            if q == 0:
                blocks = np.full((plan.Ps * plan.Bs, 2), plan.V, dtype=np.int64)
                blocks[:plan.V] = np.c_[delivery.messages.words, np.arange(plan.V)]
                blocks = blocks.reshape(plan.Ps, plan.Bs, 2)
            blocks, batch = sort_round_batch(blocks, q, plan.sort_stages, _by_label, plan.sort0)
            if q == Ts:
                starts = first_of_runs(blocks[:, :, 0], blocks[:, :, 1] < plan.V)
                holder, slot = np.nonzero(starts)
                keys = blocks[holder, slot, 0]
                batch = pack_batch(plan.sort0 + holder, plan.table(keys), keys)
        elif j == 7 + Ts:
            real = blocks[:, :, 1] < plan.V
            starts = first_of_runs(blocks[:, :, 0], real)
            shortcut = delivery.messages.words[np.cumsum(starts[real]) - 1]
            holder = np.nonzero(real)[0]
            vertex = blocks[:, :, 1][real]
            batch = pack_batch(plan.sort0 + holder, plan.table(vertex), np.c_[vertex, shortcut])
            blocks = None
        elif j == 8 + Ts:
            _, _, answer = delivery_records(delivery, 2)
            old = labels
            labels = labels.copy()
            labels[answer[:, 0]] = answer[:, 1]
            flags = flags | self._changed(plan, labels < old)
            batch = pack_batch(plan.table0 + np.arange(plan.Pv), np.full(plan.Pv, plan.coordinator), flags)
        elif j == 9 + Ts:
            decision = int(delivery.messages.words.any())
            receivers = np.arange(plan.sort0)
            batch = pack_batch(np.full(receivers.size, plan.coordinator), receivers, np.full(receivers.size, decision))

        parts = [(0, np.full(plan.Pa, 2 * plan.Ba), arcs)]
        if labels is not None:
            parts.append((plan.table0, plan.table_sizes() + 1, join_headers(flags[:, None], labels, plan.table_sizes())))
        if blocks is not None:
            parts.append((plan.sort0, np.full(plan.Ps, 2 * plan.Bs), blocks))
        return build_state(machines, parts), batch

    def _batch_arc_sorts(self, plan, r, machines, state, delivery):
        """Setup rounds 2 .. start on the arc machines; at ``start`` (with no stages) the arcs."""
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
        edge = np.arange(plan.E)
        vertex = np.arange(plan.V)
        edge_machine, vertex_machine = edge // plan.b, vertex // plan.c
        edges_on = np.bincount(edge_machine, minlength=plan.Pa)
        arcs = np.full((plan.Pa, plan.Ba, 3), plan.V, dtype=np.int64)
        arcs[:, :, 2] = -1
        at = 2 * (edge - edge_machine * plan.b)
        arcs[edge_machine, at] = np.c_[edges[:, 0], edges[:, 1], 2 * edge]
        arcs[edge_machine, at + 1] = np.c_[edges[:, 1], edges[:, 0], 2 * edge + 1]
        at = 2 * edges_on[vertex_machine] + 2 * (vertex - vertex_machine * plan.c)
        loop = plan.E + vertex
        arcs[vertex_machine, at] = np.c_[vertex, vertex, 2 * loop]
        arcs[vertex_machine, at + 1] = np.c_[vertex, vertex, 2 * loop + 1]
        return arcs

    @staticmethod
    def _batch_fetch_labels(plan, arcs):
        holder, slot = np.nonzero(first_of_runs(arcs[:, :, 0], arcs[:, :, 0] < plan.V))
        vertices = arcs[holder, slot, 0]
        return pack_batch(holder, plan.table(vertices), vertices)

    @staticmethod
    def _batch_exchange(plan, arcs, labels_in_order):
        real = arcs[:, :, 0] < plan.V
        starts = first_of_runs(arcs[:, :, 0], real)
        label = labels_in_order[np.cumsum(starts[real]) - 1]
        return pack_batch(np.nonzero(real)[0], arcs[:, :, 1][real] // plan.Ba, label)

    @staticmethod
    def _batch_partials(plan, arcs, received_in_order):
        real = arcs[:, :, 0] < plan.V
        holder = np.nonzero(real)[0]
        reverse = arcs[:, :, 1][real]
        received = np.empty(reverse.size, dtype=np.int64)
        received[np.lexsort((reverse, holder))] = received_in_order
        starts = first_of_runs(arcs[:, :, 0], real)[real]
        partial = np.minimum.reduceat(received, np.flatnonzero(starts))
        vertices = arcs[:, :, 0][real][starts]
        return pack_batch(holder[starts], plan.table(vertices), np.c_[vertices, partial])

    @staticmethod
    def _changed(plan, decreased):
        return np.bincount(np.arange(plan.V) // plan.Bv, weights=decreased, minlength=plan.Pv).astype(np.int64) > 0
