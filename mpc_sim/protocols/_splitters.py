"""Sample-sort splitters shared by the graph protocols: the plan (sampling probability, spacing,
bucket count, failure bound) and the in-place splitter tree.

Keys (one word each, or ``width`` words compared lexicographically) are sampled independently
with a public probability ``q``; a leader keeps every ``r``-th sample in key order as a
splitter and spreads ``[count, splitters]`` down the in-place radix tree (:mod:`._trees`) over
the source machines; every source sends each key to its bucket, the number of splitters below
it. A bucket overflows its ``cap`` keys only if some ``cap`` consecutive keys hold fewer than
``r`` samples (probability ``<= N P(Bin(cap, q) < r)``); the leader overflows its room with
probability ``<= exp(-N q h(room / N q))`` (Chernoff, ``h(x) = x ln x - x + 1``). Users:
:mod:`~mpc_sim.protocols.connectivity`, :mod:`~mpc_sim.protocols.khop`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from ._trees import RadixTree

__all__ = ["SortPlan", "sort_plan", "splitter_roots", "splitter_sends"]


@dataclass(frozen=True)
class SortPlan:
    """One sample sort of ``items`` distinct one-word keys from ``leaves`` source machines into
    buckets of at most ``cap`` keys. ``buckets == 1``: no sampling, everything to bucket 0."""

    items: int
    cap: int
    leaves: int
    probability: float  # q: each key is sampled independently with this probability
    spacing: int        # r: every r-th sample (in key order) is a splitter
    buckets: int        # K: the most buckets (floor(s / r) + 1)
    degree: int         # the splitter tree's degree: floor(s / K) (payload: count + splitters)
    failure: float      # bound on P(a bucket or the leader overflows)

    @property
    def trivial(self) -> bool:
        return self.buckets == 1

    @cached_property
    def _tree(self) -> RadixTree:
        return RadixTree(self.leaves, self.degree)

    def tree(self) -> RadixTree:
        return self._tree

    @cached_property
    def rounds(self) -> int:
        """Rounds from the samples' arrival at the leader to the splitters' arrival at every
        source (0 for a trivial sort)."""
        return 0 if self.trivial else max(1, self.tree().depth)


def _log_binomial_cdf(trials: int, p: float, upto: int) -> float:
    """``log P(Bin(trials, p) <= upto)`` (exact sum of terms, in log space)."""
    if upto >= trials:
        return 0.0
    i = np.arange(upto + 1, dtype=np.float64)
    log_choose = np.r_[0.0, np.cumsum(np.log((trials - i[1:] + 1) / i[1:]))]
    terms = log_choose + i * math.log(p) + (trials - i) * math.log1p(-p)
    top = terms.max()
    return float(top + math.log(np.exp(terms - top).sum()))


def _leader_overflow(items: int, p: float, room: int) -> float:
    """Chernoff bound on ``P(Bin(items, p) > room)``."""
    mean = items * p
    x = (room + 1) / mean
    if x <= 1:
        return 1.0
    return math.exp(-mean * (x * math.log(x) - x + 1))


@lru_cache(maxsize=256)
def sort_plan(items: int, cap: int, s: int, max_failure: float, leaves: int = 1, width: int = 1,
              room: int | None = None) -> SortPlan | str:
    """The sample sort with the fewest buckets whose failure bound is at most ``max_failure``,
    or why there is none (``leaves`` only sizes the splitter tree). Keys are ``width`` words; the
    leader (``s`` words) keeps ``width`` words spare for a marker; a source holds at most
    ``room`` (default ``s``) words of splitter payload ``[count, splitters]``.

    Examples
    --------
    >>> plan = sort_plan(10**6, 4000, 16000, 1e-10, leaves=250)
    >>> plan.failure <= 1e-10, plan.rounds, plan.buckets * plan.cap >= 10**6
    (True, 3, True)
    >>> sort_plan(100, 100, 400, 1e-9).trivial
    True
    """
    room = s if room is None else room
    if items <= cap:
        return SortPlan(items, cap, leaves, 0.0, 1, 1, max(2, s), 0.0)
    samples = (s - width) // width
    log_target = math.log(max_failure / 2)
    why = (f"s = {s} is too small: {items} keys need at least {-(-items // cap)} buckets of {cap}, and a "
           f"leader of s words can pick at most s splitters spread by a tree of degree >= 2")
    spacings = np.unique(np.geomspace(1, max(1, min(cap, samples // 2)), 80).astype(np.int64)).tolist()
    for spacing in spacings[::-1]:       # the fewest buckets first
        buckets = samples // spacing + 1
        if 1 + width * (buckets - 1) > room:
            continue
        degree = s // (1 + width * (buckets - 1))
        if degree < 2 or buckets * cap < items:
            continue
        if math.log(items) + _log_binomial_cdf(cap, 1 - 1e-12, spacing - 1) > log_target:
            continue
        lo, hi = 0.0, 1.0  # the smallest q keeping the bucket bound: bisection (monotone in q)
        for _ in range(60):
            mid = (lo + hi) / 2
            if math.log(items) + _log_binomial_cdf(cap, mid, spacing - 1) <= log_target:
                hi = mid
            else:
                lo = mid
        bucket_bound = items * math.exp(_log_binomial_cdf(cap, hi, spacing - 1))
        leader_bound = _leader_overflow(items, hi, samples)
        if leader_bound > max_failure / 2:
            why = (f"the leader would get more than s = {s} samples (probability bound {leader_bound:.3g}): "
                   f"s is too small for {items} keys in buckets of {cap}")
            continue
        return SortPlan(items, cap, leaves, hi, spacing, buckets, degree, bucket_bound + leader_bound)
    return why


def splitter_sends(sort: SortPlan, step: int, first_leaf: int, leaf: int) -> list[int]:
    """Leaves a source machine forwards the splitters to at tree step ``step`` (1 ..), as machine
    ids: the children of the level ``depth - step`` node it hosts."""
    tree = sort.tree()
    level = tree.depth - step
    if step < 1 or level < 1 or leaf % sort.degree ** level:
        return []
    span = sort.degree ** (level - 1)
    return [first_leaf + leaf + c * span for c in range(1, sort.degree) if leaf + c * span < tree.leaves]


def splitter_roots(sort: SortPlan, first_leaf: int) -> np.ndarray:
    """The machines the leader sends the splitters to: hosts of the top level below the root."""
    tree = sort.tree()
    if tree.depth == 0:
        return np.array([first_leaf], dtype=np.int64)
    level = tree.depth - 1
    return first_leaf + np.asarray(tree.machine(level, np.arange(tree.level_size(level))), dtype=np.int64)


