"""Sample sort: the input sorted, spread ``s`` words per machine over the first ``ceil(n / s)`` machines.

One sampling level: ``5 + T`` rounds, ``T`` being the depth of the tree that spreads the
splitters (``T <= ceil(log_g(machines))``, O(1/eps) as in docs/theory.md section 1). One level suffices
when ``s**2 >~ 60 n`` (see below): for eps >= 1/2 with a constant ``memory_factor``. The O(1/eps)
sort for eps < 1/2 with constant factors needs several sampling levels; this module has one.

Elements are ordered by (value, input position), so duplicates are spread over buckets like
distinct values and buckets stay balanced on any input. Positions are never stored: an element's
position follows from where it sits until it is assigned its bucket.

The plan (:class:`SortPlan`, a function of ``n``, ``s`` and ``machines`` only) fixes ``k`` buckets
(machines ``0 .. k - 1``), a sample of ``S = k * r`` elements and a data load
``L = s - 2(k - 1)`` per data machine; the leader is machine ``I = ceil(n / s)`` (the first empty
one), the coordinator machine ``k``. Rounds:

====================  ==========================================================================
round                 what happens
====================  ==========================================================================
1                     every input machine sends the values at its sampled positions to the
                      leader. The sample is stratified and public: sample ``j`` is a uniform
                      position of the ``j``-th of ``S`` equal slices of the input, drawn from
                      the run's seed (:func:`sample_positions`, counter-based), so the leader
                      knows the positions without receiving them
2                     input machines move their words to ``D = ceil(n / L)`` data machines,
                      ``L`` each, in input order (room for the splitters); the leader sorts the
                      sample by (value, position), keeps every ``r``-th element as a splitter
                      (``k - 1`` of them, ``2(k - 1)`` words) and starts spreading them
2 .. T + 1            the splitters flow down the in-place radix tree of degree
                      ``g = floor(s / (2(k - 1))) + 1`` over machines ``0 .. max(D, I + 1) - 1``,
                      rooted at the leader
T + 2                 every data machine sends each element to its bucket: the number of
                      splitters below it
T + 3                 every bucket machine sends its size to the coordinator
T + 4                 the coordinator sends each bucket machine the size of the earlier buckets
T + 5                 bucket machines sort their bucket and send it to its final place
T + 6                 the final local computation (no messages)
====================  ==========================================================================

Round bound (exact): ``R = 5 + T`` with ``T = ceil(log_g(max(D, I + 1)))``; ``R = 0`` when
``n <= s`` (one machine sorts locally).

Requirement and failure probability. Every limit is met deterministically except one: a bucket
must hold at most ``s - 1`` words (its machine also receives one offset word). A bucket with more
would leave ``cap = s - 1`` consecutive elements (in sorted order) after a splitter holding fewer
than ``r`` sampled ones. Each element is sampled with probability at least ``1 / ceil(n / S)``,
independently across slices and negatively associated within one, so by a Chernoff bound and a
union bound over the ``S + 1`` places a bucket can start (:func:`overflow_bound`)::

    P(overflow) <= (S + 1) * exp(-(m - r - r ln(m / r))),   m = cap / ceil(n / S) - 1.

The plan takes the fewest rounds among the ``k`` whose bound is at most ``max_failure``
(default 1e-9); :meth:`SampleSort.check_config` refuses configs with no such ``k``, saying which
``memory_factor`` would do. Roughly the leader's ``S <= s`` samples must give each of the at most
``s`` words of a bucket about 60 chances, so ``s**2 >~ 60 n``: at eps = 1/2 ``memory_factor``
about 8 (``n`` up to 1e7), smaller for eps > 1/2, and growing with ``n`` for eps < 1/2 (one
sampling level cannot sort in O(1) phases there). :meth:`SampleSort.default_config` picks the
smallest factor that works. If a bucket does overflow anyway, the simulator raises its typed
limit error: never a silently wrong output.

Examples
--------
>>> from mpc_sim import MPCConfig, Simulator
>>> cfg = MPCConfig(n=1000, eps=0.75, memory_factor=2, machines_factor=4)   # s = 356, 23 machines
>>> data = np.random.default_rng(0).integers(-5, 5, 1000)                  # duplicate-heavy
>>> result = Simulator(cfg).run(SampleSort(), data, seed=1)
>>> bool((result.output == np.sort(data)).all()), result.trace.num_rounds, SampleSort().rounds_bound(cfg)
(True, 6, 6)
>>> [len(m) for m in result.state.to_list()][:4]
[356, 356, 288, 0]
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from ..config import MPCConfig, check_number
from ..errors import ConfigError
from ..protocol import Protocol
from ..randomness import uniform01
from ..state import ClusterState, MessageBatch, ragged_offsets
from .toolkit import RadixTree, concat_batches, concat_memories, sort_segments

__all__ = ["SampleSort", "SortPlan", "overflow_bound", "sample_positions", "bucket_ids"]


# --------------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------------
def overflow_bound(n: int, cap: int, samples: int, spacing: int) -> float:
    """Upper bound on the probability that some bucket exceeds ``cap`` elements.

    ``samples`` stratified samples of ``n`` elements, splitters every ``spacing``-th sample.

    Examples
    --------
    >>> overflow_bound(10**6, 7999, 7992, 8) < 1e-12, overflow_bound(10**6, 999, 1000, 8)
    (True, 1.0)
    """
    return float(_overflow_bounds(n, cap, np.array([samples]), np.array([spacing]))[0])


def _overflow_bounds(n: int, cap: int, samples: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    stratum = -(-n // samples)
    mean = cap / stratum - 1.0                  # a window's expected samples, minus its splitter's slice
    spacing = spacing.astype(np.float64)
    useful = mean > spacing
    ratio = np.where(useful, mean / np.maximum(spacing, 1.0), 1.0)
    exponent = np.where(useful, mean - spacing - spacing * np.log(ratio), 0.0)
    with np.errstate(over="ignore"):
        bound = (samples + 1.0) * np.exp(-exponent)
    return np.where(useful, np.minimum(bound, 1.0), 1.0)


@dataclass(frozen=True)
class SortPlan:
    """Sizes of one sample sort, fixed by ``(n, s, machines)``; ``buckets == 0`` means ``n <= s``
    (one machine sorts locally, 0 rounds)."""

    n: int
    s: int
    machines: int
    buckets: int            # k: bucket machines 0 .. k - 1
    spacing: int            # r: samples per bucket
    load: int               # L: words per data machine
    tree_degree: int        # g: the splitter tree's degree
    failure_bound: float    # bound on P(a bucket overflows)

    @property
    def trivial(self) -> bool:
        return self.buckets == 0

    @property
    def input_machines(self) -> int:
        return -(-self.n // self.s)

    @property
    def samples(self) -> int:
        return self.buckets * self.spacing

    @property
    def leader(self) -> int:
        return self.input_machines

    @property
    def coordinator(self) -> int:
        return self.buckets

    @property
    def data_machines(self) -> int:
        return -(-self.n // self.load)

    @property
    def splitter_words(self) -> int:
        return 2 * (self.buckets - 1)

    def tree(self) -> RadixTree:
        """The splitter tree over virtual ids ``(machine - leader) mod leaves``."""
        return RadixTree(max(self.data_machines, self.input_machines + 1), self.tree_degree)

    @property
    def classify_round(self) -> int:
        return 2 + self.tree().depth

    @property
    def rounds(self) -> int:
        return 0 if self.trivial else 5 + self.tree().depth

    def data_len(self, machine):
        """Words of data machine ``machine`` (int or array) after the move of round 2."""
        return np.clip(self.n - np.asarray(machine, dtype=np.int64) * self.load, 0, self.load)


def _depths(leaves: np.ndarray, degree: np.ndarray) -> np.ndarray:
    depth = np.zeros(leaves.shape[0], dtype=np.int64)
    reach = np.ones(leaves.shape[0], dtype=np.int64)
    while (short := reach < leaves).any():
        reach[short] *= degree[short]
        depth[short] += 1
    return depth


@functools.lru_cache(maxsize=512)
def _search_plan(n: int, s: int, machines: int, max_failure: float) -> SortPlan | str:
    """The plan with the fewest rounds (then the smallest bound) within ``max_failure``, or why
    there is none."""
    if n <= s:
        return SortPlan(n, s, machines, 0, 0, n, 2, 0.0)
    inputs = -(-n // s)
    if machines < inputs + 1:
        return (f"it needs an empty machine beyond the {inputs} input machines (the sample's leader), "
                f"and the cluster has {machines} machines")
    k_max = min(machines - 1, (s - 1) // 2 + 1)        # a coordinator beyond the buckets; L >= 1
    if k_max < 2:
        return f"s = {s} and {machines} machines leave no room for 2 buckets"
    k = np.arange(2, k_max + 1, dtype=np.int64)
    load = s - 2 * (k - 1)
    leaves = np.maximum(-(-n // load), inputs + 1)
    spacing = s // k
    fits = (leaves <= machines) & (spacing >= 1)
    if not fits.any():
        return f"the data needs more than the {machines} machines at every bucket count"
    bound = _overflow_bounds(n, s - 1, k * spacing, spacing)
    degree = s // (2 * (k - 1)) + 1
    depth = _depths(leaves, degree)
    feasible = np.flatnonzero(fits & (bound <= max_failure))
    if feasible.size == 0:
        best = float(bound[fits].min())
        return (f"its bound on the probability that a bucket overflows is at best {best:.3g} "
                f"> max_failure = {max_failure:g} (s = {s} is too small for n = {n}: roughly s**2 >= 60 n)")
    i = feasible[np.lexsort((bound[feasible], depth[feasible]))[0]]
    return SortPlan(n, s, machines, int(k[i]), int(spacing[i]), int(load[i]), int(degree[i]), float(bound[i]))


# --------------------------------------------------------------------------------------------------
# Sampling and bucketing (shared by both styles)
# --------------------------------------------------------------------------------------------------
def sample_positions(n: int, samples: int, seed: int, strata: np.ndarray | None = None) -> np.ndarray:
    """The sampled input positions: one uniform position in each of ``samples`` equal slices of
    ``0 .. n - 1`` (slice ``j`` is ``[j n // S, (j + 1) n // S)``), drawn from the run's seed with
    the counter-based :func:`~mpc_sim.randomness.uniform01` (round key 0: public randomness every
    machine can evaluate). ``strata`` restricts to some slices.

    Examples
    --------
    >>> p = sample_positions(100, 10, seed=3)
    >>> bool(((p // 10) == np.arange(10)).all())           # one position per slice, increasing
    True
    """
    j = np.arange(samples, dtype=np.int64) if strata is None else np.asarray(strata, dtype=np.int64)
    start, stop = j * n // samples, (j + 1) * n // samples
    offset = (uniform01(seed, 0, 0, j) * (stop - start)).astype(np.int64)
    return start + np.minimum(offset, stop - start - 1)


def bucket_ids(values: np.ndarray, positions: np.ndarray, splitter_values: np.ndarray,
               splitter_positions: np.ndarray, n: int) -> np.ndarray:
    """For each element (value, position), the number of splitters below it in (value, position)
    order: its bucket. Plain numpy (the batch style uses a numba kernel; tests compare them).

    Examples
    --------
    >>> bucket_ids(np.array([5, 7, 7, 9]), np.array([0, 1, 5, 2]), np.array([7, 7]), np.array([2, 4]), 10).tolist()
    [0, 0, 2, 2]
    """
    lo = np.searchsorted(splitter_values, values, side="left")
    hi = np.searchsorted(splitter_values, values, side="right")
    buckets = lo.astype(np.int64)
    tied = np.flatnonzero(hi > lo)
    if tied.size:
        # splitters equal in value are ordered by position: count those before the element's
        run_start = np.searchsorted(splitter_values, splitter_values, side="left")
        keys = run_start.astype(np.int64) * n + splitter_positions
        buckets[tied] = np.searchsorted(keys, lo[tied].astype(np.int64) * n + positions[tied], side="left")
    return buckets


@nb.njit(cache=True)
def _bucket_of(x, position, splitter_values, splitter_positions):  # pragma: no cover - compiled
    """:func:`bucket_ids` of one element, by binary searches."""
    lo, hi = 0, splitter_values.shape[0]
    while lo < hi:                              # first splitter value >= x
        mid = (lo + hi) >> 1
        if splitter_values[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    if lo < splitter_values.shape[0] and splitter_values[lo] == x:
        # ties: splitters of equal value are ordered by position; count those before the element
        run_end, hi = lo, splitter_values.shape[0]
        while run_end < hi:                     # first splitter value > x
            mid = (run_end + hi) >> 1
            if splitter_values[mid] <= x:
                run_end = mid + 1
            else:
                hi = mid
        hi = run_end
        while lo < hi:                          # first splitter of the run at a position >= the element's
            mid = (lo + hi) >> 1
            if splitter_positions[mid] < position:
                lo = mid + 1
            else:
                hi = mid
    return lo


@nb.njit(cache=True, parallel=True)
def _to_buckets_kernel(words, starts, data_len, first, load, splitter_values, splitter_positions, k, out):  # pragma: no cover
    """Machine ``m`` (global id ``first + m``) has data ``words[starts[m]:starts[m] + data_len[m]]``
    (positions ``(first + m) * load + t``). Writes it regrouped by bucket, stably, to
    ``out[m * load:]`` and returns the messages ``(src, dst, offsets)`` in (machine, bucket) order,
    ``src`` global. ``out`` first holds the bucket ids."""
    machines = data_len.shape[0]
    distinct = np.zeros(machines, dtype=np.int64)
    for m in nb.prange(machines):                         # bucket ids, and buckets per machine
        counts = np.zeros(k, dtype=np.int64)
        base = m * load
        position = (first + m) * load
        for t in range(data_len[m]):
            b = _bucket_of(words[starts[m] + t], position + t, splitter_values, splitter_positions)
            out[base + t] = b
            if counts[b] == 0:
                distinct[m] += 1
            counts[b] += 1
    first_message = np.zeros(machines + 1, dtype=np.int64)
    first_message[1:] = np.cumsum(distinct)
    messages = first_message[machines]
    src = np.empty(messages, dtype=np.int64)
    dst = np.empty(messages, dtype=np.int64)
    offsets = np.empty(messages + 1, dtype=np.int64)
    offsets[messages] = out.shape[0]
    for m in nb.prange(machines):                         # the words, grouped: machines write disjoint ranges
        base = m * load
        buckets = out[base:base + data_len[m]].copy()
        counts = np.zeros(k, dtype=np.int64)
        for t in range(buckets.shape[0]):
            counts[buckets[t]] += 1
        cursor = np.zeros(k, dtype=np.int64)
        j, start = first_message[m], base
        for b in range(k):
            if counts[b] > 0:
                src[j], dst[j], offsets[j] = first + m, b, start
                cursor[b] = start
                start += counts[b]
                j += 1
        for t in range(buckets.shape[0]):
            b = buckets[t]
            out[cursor[b]] = words[starts[m] + t]
            cursor[b] += 1
    return src, dst, offsets


# --------------------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SampleSort(Protocol):
    """Sort by one level of sampling: splitters by a fan-out tree, buckets, then rebalancing.

    Parameters
    ----------
    max_failure : float
        Largest accepted bound on the probability that a bucket overflows, in (0, 1]; 1 accepts
        every plan that fits the machines (experiments: an overflow then stops the run with the
        simulator's limit error).
    """

    summary = "sorting, by one level of sampling"

    max_failure: float = 1e-9
    name = "sort"

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_failure", check_number("max_failure", self.max_failure, low=0.0, high=1.0,
                                                             low_open=True, error=ConfigError))

    # --- declared facts ----------------------------------------------------------------------
    def plan(self, config: MPCConfig) -> SortPlan:
        """The sizes this protocol uses under ``config``; ConfigError when it cannot run."""
        found = _search_plan(config.n, config.s, config.machines, float(self.max_failure))
        if isinstance(found, str):
            raise ConfigError(f"sample sort cannot run with n = {config.n}, s = {config.s}, "
                              f"machines = {config.machines}: {found}{self._advice(config)}")
        return found

    def _advice(self, config: MPCConfig) -> str:
        factor = config.memory_factor
        for _ in range(80):
            factor *= 1.25
            bigger = MPCConfig(n=config.n, eps=config.eps, gamma=config.gamma, memory_factor=factor,
                               machines_factor=config.machines_factor)
            if not isinstance(_search_plan(bigger.n, bigger.s, bigger.machines, float(self.max_failure)), str):
                return f"; memory_factor >= {factor:.3g} would do"
        return ""

    def check_config(self, config: MPCConfig) -> None:
        self.plan(config)

    def rounds_bound(self, config: MPCConfig) -> int:
        """``5 + ceil(log_g(max(D, I + 1)))`` (exact; 0 when ``n <= s``), see the module docstring."""
        return self.plan(config).rounds

    def fanout_bound(self, config: MPCConfig) -> int:
        plan = self.plan(config)
        if plan.trivial:
            return 1
        return max(plan.buckets, plan.tree_degree - 1, -(-plan.s // plan.load) + 1, 2)

    def default_config(self, n: int, eps: float) -> MPCConfig:
        """``MPCConfig(n, eps)`` with the smallest ``memory_factor`` on a 1, 1.5, 2, 3, 4, 6, 8, ...
        grid that this protocol accepts."""
        factor = 1.0
        while True:
            config = MPCConfig(n=n, eps=eps, memory_factor=factor)
            if config.s >= n or not isinstance(
                    _search_plan(config.n, config.s, config.machines, float(self.max_failure)), str):
                return config
            factor = factor * 1.5 if math.log2(factor).is_integer() else factor * 4 / 3

    # --- per-machine style -------------------------------------------------------------------
    def step(self, ctx, machine, memory, inbox):
        plan = self.plan(ctx.config)
        if plan.trivial:
            return np.sort(memory), []
        r, classify = ctx.round, plan.classify_round
        if r == 1:
            return memory, self._send_sample(ctx, plan, machine, memory)
        if r == 2:
            if machine < plan.input_machines:
                return memory[:0], self._move_to_data_machines(plan, machine, memory)
            if machine == plan.leader:
                splitters = self._splitters(plan, inbox.words, ctx.seed)
                return splitters, self._tree_sends(plan, machine, r, splitters)
            return memory, []
        if r <= classify:
            # data arrives in round 2 and the leader keeps its splitters then: data first, splitters after
            held = np.concatenate([inbox.words, memory] if r == 3 else [memory, inbox.words])
            data = held[:plan.data_len(machine)]
            splitters = held[data.shape[0]:]
            if r < classify:
                return held, self._tree_sends(plan, machine, r, splitters)
            return held[:0], self._send_to_buckets(plan, machine, data, splitters)
        if r == classify + 1:
            bucket = inbox.words
            return bucket, ([(plan.coordinator, np.array([bucket.shape[0]]))] if machine < plan.buckets else [])
        if r == classify + 2:
            if machine != plan.coordinator:
                return memory, []
            counts = inbox.words                           # bucket sizes, in bucket order
            starts = np.cumsum(counts) - counts
            return memory[:0], [(b, starts[b:b + 1]) for b in range(plan.buckets)]
        if r == classify + 3:
            if machine >= plan.buckets:
                return memory, []
            return memory[:0], self._send_to_output(plan, int(inbox.words[0]), np.sort(memory))
        return inbox.words, []                             # the output machines keep what arrived

    def _send_sample(self, ctx, plan: SortPlan, machine: int, memory: np.ndarray) -> list:
        first = machine * plan.s
        if memory.size == 0:
            return []
        last = first + memory.shape[0] - 1

        def stratum(position: int) -> int:             # the slice holding a position
            return ((position + 1) * plan.samples - 1) // plan.n

        strata = np.arange(stratum(first), stratum(last) + 1)
        positions = sample_positions(plan.n, plan.samples, ctx.seed, strata)
        positions = positions[(positions >= first) & (positions <= last)]
        return [(plan.leader, memory[positions - first])] if positions.size else []

    def _move_to_data_machines(self, plan: SortPlan, machine: int, memory: np.ndarray) -> list:
        first, load = machine * plan.s, plan.load
        messages = []
        for target in range(first // load, (first + memory.shape[0] - 1) // load + 1):
            lo = max(first, target * load) - first
            hi = min(first + memory.shape[0], (target + 1) * load) - first
            messages.append((target, memory[lo:hi]))
        return messages

    @staticmethod
    def _splitters(plan: SortPlan, values: np.ndarray, seed: int) -> np.ndarray:
        """Every ``r``-th sampled element in (value, position) order: values, then positions."""
        positions = sample_positions(plan.n, plan.samples, seed)       # the order the values arrived in
        order = np.lexsort((positions, values))
        chosen = order[plan.spacing * np.arange(1, plan.buckets) - 1]
        return np.concatenate([values[chosen], positions[chosen]])

    def _tree_sends(self, plan: SortPlan, machine: int, r: int, splitters: np.ndarray) -> list:
        tree = plan.tree()
        level = tree.depth - r + 2                          # round 2 sends from the root's top level
        virtual = (machine - plan.leader) % tree.leaves
        node = tree.node_of(virtual, level) if machine < tree.leaves else None
        if node is None:
            return []
        children = [int(tree.machine(level - 1, c)) for c in tree.children(level, node) if c % tree.degree != 0]
        return [((child + plan.leader) % tree.leaves, splitters) for child in children]

    def _send_to_buckets(self, plan: SortPlan, machine: int, data: np.ndarray, splitters: np.ndarray) -> list:
        count = plan.buckets - 1
        positions = machine * plan.load + np.arange(data.shape[0])
        buckets = bucket_ids(data, positions, splitters[:count], splitters[count:], plan.n)
        order = np.argsort(buckets, kind="stable")
        targets, firsts = np.unique(buckets[order], return_index=True)
        pieces = np.split(data[order], firsts[1:])
        return [(int(b), piece) for b, piece in zip(targets, pieces)]

    @staticmethod
    def _send_to_output(plan: SortPlan, start: int, values: np.ndarray) -> list:
        s, stop = plan.s, start + values.shape[0]
        return [(target, values[max(start, target * s) - start:min(stop, (target + 1) * s) - start])
                for target in range(start // s, (stop - 1) // s + 1)] if values.size else []

    # --- batch style (block-local) -----------------------------------------------------------
    block_batch = True

    def batch_step(self, ctx, state, delivery):
        """The round on machines ``lo .. hi - 1`` (``lo = ctx.first_machine``; the whole cluster
        when run locally): vectorised, numba kernels for the heavy rounds, reading nothing outside
        the block. Every machine that spreads or uses the splitters holds its own copy of them."""
        plan = self.plan(ctx.config)
        if plan.trivial:
            return ClusterState(sort_segments(state.words, state.offsets), state.offsets.copy()), MessageBatch.empty()
        r, classify = ctx.round, plan.classify_round
        lo, hi = ctx.first_machine, ctx.first_machine + state.machines
        if r == 1:
            return state, self._sample_batch(plan, state, ctx.seed, lo, hi)
        if r == 2:
            return self._move_batch(plan, state, delivery, ctx.seed, lo, hi)
        if r <= classify:
            # data arrives in round 2 and the leader keeps its splitters then: data first, splitters after
            inbox = delivery.inbox_state()
            if r < classify:
                held = concat_memories(inbox, state) if r == 3 else concat_memories(state, inbox)
                return held, self._tree_batch(plan, r, held, lo, hi)
            return ClusterState.empty(state.machines), self._bucket_batch(plan, r, state, inbox, lo, hi)
        k = plan.buckets
        if r == classify + 1:
            buckets = delivery.inbox_state()
            senders = np.arange(lo, min(hi, k), dtype=np.int64)
            return buckets, MessageBatch.fixed_width(senders, np.full(senders.shape[0], plan.coordinator),
                                                     buckets.sizes()[:senders.shape[0], None])
        if r == classify + 2:
            if not lo <= plan.coordinator < hi:
                return state, MessageBatch.empty()
            counts = delivery.inbox(plan.coordinator - lo).words          # bucket sizes, in bucket order
            starts = np.cumsum(counts) - counts
            return state, MessageBatch.fixed_width(np.full(k, plan.coordinator), np.arange(k), starts[:, None])
        if r == classify + 3:
            return ClusterState.empty(state.machines), self._output_batch(plan, state, delivery.inbox_state().words, lo)
        return delivery.inbox_state(), MessageBatch.empty()

    @staticmethod
    def _sample_batch(plan: SortPlan, state: ClusterState, seed: int, lo: int, hi: int) -> MessageBatch:
        positions = sample_positions(plan.n, plan.samples, seed)
        machines = positions // plan.s
        mine = (machines >= lo) & (machines < hi)
        positions, machines = positions[mine], machines[mine]
        values = state.words[state.offsets[machines - lo] + positions - machines * plan.s]
        senders, firsts = np.unique(machines, return_index=True)
        return MessageBatch(senders, np.full(senders.shape[0], plan.leader, dtype=np.int64),
                            np.append(firsts, positions.shape[0]).astype(np.int64), values)

    def _move_batch(self, plan: SortPlan, state: ClusterState, delivery, seed: int, lo: int, hi: int):
        # the block's input machines hold words lo * s .. (one past its last input word), all of them
        n, first = plan.n, lo * plan.s
        last = max(first, min(hi * plan.s, n))
        cuts = np.union1d(np.arange(0, n, plan.s), np.arange(0, n, plan.load)).astype(np.int64)
        cuts = cuts[(cuts >= first) & (cuts < last)]
        moves = MessageBatch(cuts // plan.s, cuts // plan.load, np.append(cuts, last) - first, state.words)
        sizes = np.zeros(state.machines, dtype=np.int64)
        if not lo <= plan.leader < hi:
            return ClusterState(state.words[:0], ragged_offsets(sizes)), moves
        splitters = self._splitters(plan, delivery.inbox(plan.leader - lo).words, seed)
        sizes[plan.leader - lo] = splitters.shape[0]
        tree_sends = self._tree_sends_from(plan, 2, splitters, lo, hi)
        return ClusterState(splitters, ragged_offsets(sizes)), concat_batches([moves, tree_sends], np.int64)

    def _tree_batch(self, plan: SortPlan, r: int, held: ClusterState, lo: int, hi: int) -> MessageBatch:
        """Round ``r``'s splitter messages of the block's tree nodes (each holds, after its data,
        the splitters; any sender's copy serves, they are identical)."""
        parents = self._tree_links(plan, r)[1]
        inside = parents[(parents >= lo) & (parents < hi)]
        if inside.size == 0:
            return MessageBatch.empty()
        sender = int(inside[0])
        splitters = held.memory(sender - lo)[int(plan.data_len(sender)):]
        return self._tree_sends_from(plan, r, splitters, lo, hi)

    @staticmethod
    def _tree_links(plan: SortPlan, r: int) -> tuple[np.ndarray, np.ndarray]:
        tree = plan.tree()
        children, parents = tree.links(tree.depth - r + 2)        # round 2 sends from the root's top level
        return (children + plan.leader) % tree.leaves, (parents + plan.leader) % tree.leaves

    def _tree_sends_from(self, plan: SortPlan, r: int, splitters: np.ndarray, lo: int, hi: int) -> MessageBatch:
        children, parents = self._tree_links(plan, r)
        inside = (parents >= lo) & (parents < hi)
        children, parents = children[inside], parents[inside]
        order = np.argsort(parents, kind="stable")          # by sender, each sender's children in tree order
        return MessageBatch.fixed_width(parents[order], children[order],
                                        np.broadcast_to(splitters, (order.shape[0], splitters.shape[0])))

    @staticmethod
    def _bucket_batch(plan: SortPlan, r: int, state: ClusterState, inbox: ClusterState, lo: int,
                      hi: int) -> MessageBatch:
        """Every data machine of the block sends each element to its bucket. Data comes first in
        each machine's words: in its inbox if it arrived in the previous round (round 3), else in
        its kept memory; it is classified where it lies, without a copy. The splitters follow the
        data: the block's first machine's copy serves."""
        data_machines = max(0, min(hi, plan.data_machines) - lo)
        if data_machines == 0:
            return MessageBatch.empty()
        data = inbox if r == 3 else state
        parts = [inbox.memory(0), state.memory(0)]
        splitters = np.concatenate(parts if r == 3 else parts[::-1])[int(plan.data_len(lo)):]
        count = plan.buckets - 1
        data_len = plan.data_len(np.arange(lo, lo + data_machines))
        grouped = np.empty(int(data_len.sum()), dtype=np.int64)
        src, dst, offsets = _to_buckets_kernel(data.words, data.offsets[:data_machines], data_len, lo, plan.load,
                                               splitters[:count], splitters[count:], plan.buckets, grouped)
        return MessageBatch(src, dst, offsets, grouped)

    @staticmethod
    def _output_batch(plan: SortPlan, state: ClusterState, starts: np.ndarray, lo: int) -> MessageBatch:
        """The block's bucket machines (``lo ..``) sort their buckets and send them to their final
        places; ``starts`` holds each one's first output position, in machine order."""
        counts = state.sizes()[:starts.shape[0]]
        full = np.flatnonzero(counts > 0)
        if full.size == 0:
            return MessageBatch.empty()
        values = sort_segments(state.words, state.offsets)
        first, last = starts[full[0]], starts[full[-1]] + counts[full[-1]]
        grid = np.arange(-(-first // plan.s) * plan.s, last, plan.s, dtype=np.int64)
        cuts = np.union1d(starts[full], grid).astype(np.int64)
        senders = full[np.searchsorted(starts[full], cuts, side="right") - 1]
        offsets = state.offsets[senders] + cuts - starts[senders]
        return MessageBatch(senders + lo, cuts // plan.s, np.append(offsets, values.shape[0]), values)

    # --- input and output --------------------------------------------------------------------
    def reference(self, data: np.ndarray) -> np.ndarray:
        return np.sort(np.asarray(data, dtype=np.int64), kind="stable")

    def generate_input(self, config: MPCConfig, seed: int = 0) -> np.ndarray:
        info = np.iinfo(np.int64)
        return np.random.default_rng(seed).integers(info.min, info.max, size=config.n, dtype=np.int64, endpoint=True)

