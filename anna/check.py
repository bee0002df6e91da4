"""Checker of the ANNA definition (docs/theory.md §2) and empirical failure rates (Theorem 3.4).

Weights ``w`` (N_q, N_k) are an ANNA for queries ``q``, keys ``k`` and parameters (r, c, ell) when,
for every query i,

1. ``w_ij > 0`` only if ``||k_j - q_i|| <= c r``;
2. ``||k_j - q_i|| <= r`` implies ``w_ij >= 1 / ((|N(q_i, c r)| - 1) ell + 1)``,

with ``N(q, t)`` the keys within distance ``t`` of ``q``. Rows must be non-negative and sum to 1,
or be all zero (a query without a colliding key, docs/theory.md's empty-neighbourhood convention; such a
row violates condition 2 exactly when the query has a key within ``r``).

:func:`anna_failure_rate` runs Algorithm 1's weights over many seeds and reports how often the
definition fails, beside the union bound of Theorem 3.4's proof for that very input: with ``p1``
and ``p2`` the family's collision probabilities at ``r`` and ``c r``,
``P[fail] <= n_far * ell * p2**z + n_near * (1 - p1**z)**ell``, where ``n_far`` / ``n_near`` count the
(query, key) pairs farther than ``c r`` / within ``r``. (A far pair colliding somewhere breaks 1;
if none does and every near pair collides in some table, condition 2 holds because ``c_ij >= 1``
and the other colliding keys are within ``c r`` with at most ``ell`` collisions each.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from ._validate import check_float_matrix, normalize_seed
from .attention import MAX_DENSE_ENTRIES, anna_weights
from .errors import InputError, ParameterError, ShapeError
from .lsh import LSHConfig

__all__ = ["Violation", "AnnaCheck", "FailureRate", "check_anna", "anna_failure_rate", "pairwise_distances"]

MAX_LISTED = 100
"""Violations listed per condition in an :class:`AnnaCheck` (all are counted)."""

_ROW_SUM_TOLERANCE = 1e-9
_WEIGHT_SLACK = 1e-9  # relative slack in condition 2, for weights computed in floating point


@dataclass(frozen=True)
class Violation:
    """One (query, key) pair breaking condition 1 or 2."""

    query: int
    key: int
    condition: int
    distance: float
    weight: float
    required: float

    def __post_init__(self) -> None:
        if self.condition not in (1, 2):
            raise ParameterError(f"condition must be 1 or 2, got {self.condition}")

    @property
    def detail(self) -> str:
        if self.condition == 1:
            return (f"w={self.weight:.4g} > 0 for a key at distance {self.distance:.4g} > c*r = "
                    f"{self.required:.4g}")
        return (f"w={self.weight:.4g} < {self.required:.4g} for a key at distance {self.distance:.4g} <= r")


@dataclass(frozen=True)
class AnnaCheck:
    """Report of :func:`check_anna`: counts per condition and the first violations of each."""

    n_queries: int
    n_keys: int
    r: float
    c: float
    ell: int
    condition1: int
    condition2: int
    failed_queries: int
    violations: tuple[Violation, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if min(self.condition1, self.condition2, self.failed_queries) < 0:
            raise ParameterError("violation counts must be non-negative")
        if len(self.violations) > self.condition1 + self.condition2:
            raise ParameterError("more violations listed than counted")
        if (self.condition1 + self.condition2 > 0) != (self.failed_queries > 0):
            raise ParameterError("failed_queries must be positive exactly when there are violations")

    @property
    def holds(self) -> bool:
        """True when no pair violates either condition."""
        return self.condition1 == 0 and self.condition2 == 0

    def __rich__(self):
        from rich.console import Group
        from rich.table import Table

        summary = Table(title=f"ANNA check (r={self.r:g}, c={self.c:g}, ell={self.ell}): "
                              f"{'holds' if self.holds else 'FAILS'}")
        summary.add_column("condition")
        summary.add_column("violating pairs", justify="right")
        summary.add_row("1: w > 0 only within c*r", str(self.condition1))
        summary.add_row("2: near keys get >= 1/((|N(q,cr)|-1) ell + 1)", str(self.condition2))
        summary.add_row("queries with a violation", f"{self.failed_queries} / {self.n_queries}")
        if not self.violations:
            return summary
        listed = Table(title=f"first {len(self.violations)} violations")
        for name in ("query", "key", "condition", "detail"):
            listed.add_column(name)
        for v in self.violations:
            listed.add_row(str(v.query), str(v.key), str(v.condition), v.detail)
        return Group(summary, listed)


def _check_number(name: str, value: object, *, low: float, strict: bool, allow_inf: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ParameterError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf) or (value <= low if strict else value < low):
        raise ParameterError(f"{name} must be {'>' if strict else '>='} {low}{'' if allow_inf else ' and finite'}, "
                         f"got {value}")
    return value


def _check_ell(ell: object) -> int:
    if isinstance(ell, (bool, np.bool_)) or not isinstance(ell, (int, np.integer)) or ell < 1:
        raise ParameterError(f"ell must be a positive integer, got {ell!r}")
    return int(ell)


def pairwise_distances(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Euclidean distances (N_q, N_k) in float64, from differences (no cancellation).

    Examples
    --------
    >>> import numpy as np
    >>> pairwise_distances(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0], [0.0, 1.0]]))
    array([[5., 1.]])
    """
    q = check_float_matrix("q", q).astype(np.float64)
    k = check_float_matrix("k", k).astype(np.float64)
    if q.shape[1] != k.shape[1]:
        raise ShapeError(f"q and k must have the same number of columns, got q {q.shape} and k {k.shape}")
    if q.shape[0] * k.shape[0] > MAX_DENSE_ENTRIES:
        raise ShapeError(f"{q.shape[0]} x {k.shape[0]} distances exceed MAX_DENSE_ENTRIES = {MAX_DENSE_ENTRIES}")
    out = np.empty((q.shape[0], k.shape[0]))
    block = max(1, 2**22 // max(1, k.shape[0] * q.shape[1]))
    for lo in range(0, q.shape[0], block):
        diff = q[lo: lo + block, None, :] - k[None, :, :]
        out[lo: lo + block] = np.sqrt(np.einsum("ijd,ijd->ij", diff, diff))
    return out


def _check_weights(weights: object, n_q: int, n_k: int) -> np.ndarray:
    weights = check_float_matrix("weights", weights, contiguous=False)
    if weights.shape != (n_q, n_k):
        raise ShapeError(f"weights must have shape (N_q, N_k) = {(n_q, n_k)}, got {weights.shape}")
    if weights.size and weights.min() < 0:
        i, j = np.argwhere(weights < 0)[0]
        raise InputError(f"weights must be non-negative, got weights[{i}, {j}] = {weights[i, j]}")
    sums = weights.sum(axis=1, dtype=np.float64)
    bad = ~((np.abs(sums - 1.0) <= _ROW_SUM_TOLERANCE) | (sums == 0.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"every weights row must sum to 1 (or be all zero), row {i} sums to {float(sums[i])!r}")
    return weights.astype(np.float64, copy=False)


def _required_weights(distances: np.ndarray, r: float, c: float, ell: int) -> np.ndarray:
    """``1 / ((|N(q_i, c r)| - 1) ell + 1)`` per query (only used where a key is within r)."""
    neighbours = np.count_nonzero(distances <= c * r, axis=1)
    return 1.0 / (np.maximum(neighbours - 1, 0) * ell + 1.0)


def check_anna(q: np.ndarray, k: np.ndarray, weights: np.ndarray, r: float, c: float, ell: int) -> AnnaCheck:
    """Check conditions 1 and 2 of the ANNA definition for every (query, key) pair.

    Parameters
    ----------
    q : ndarray (N_q, m)
    k : ndarray (N_k, m)
    weights : ndarray (N_q, N_k)
        Non-negative rows summing to 1, or all-zero rows (empty neighbourhood).
    r : float
        Near radius (``>= 0``; 0 is exact match).
    c : float
        Approximation factor, ``> 1`` (``inf`` switches condition 1 off).
    ell : int
        The ``ell`` of condition 2 (number of tables).

    Examples
    --------
    >>> import numpy as np
    >>> q = np.array([[0.0]]); k = np.array([[0.5], [3.0]])
    >>> check_anna(q, k, np.array([[1.0, 0.0]]), r=1.0, c=2.0, ell=4).holds
    True
    >>> bad = check_anna(q, k, np.array([[0.5, 0.5]]), r=1.0, c=2.0, ell=4)
    >>> bad.holds, bad.condition1, bad.violations[0].key
    (False, 1, 1)
    """
    q = check_float_matrix("q", q)
    k = check_float_matrix("k", k)
    r = _check_number("r", r, low=0.0, strict=False)
    c = _check_number("c", c, low=1.0, strict=True, allow_inf=True)
    ell = _check_ell(ell)
    distances = pairwise_distances(q, k)
    weights = _check_weights(weights, q.shape[0], k.shape[0])
    required = _required_weights(distances, r, c, ell)
    far = distances > c * r
    cond1 = (weights > 0) & far
    cond2 = (distances <= r) & (weights < required[:, None] * (1.0 - _WEIGHT_SLACK))
    listed = []
    for condition, mask in ((1, cond1), (2, cond2)):
        for i, j in np.argwhere(mask)[:MAX_LISTED]:
            bound = c * r if condition == 1 else float(required[i])
            listed.append(Violation(int(i), int(j), condition, float(distances[i, j]), float(weights[i, j]), bound))
    failed = int(np.count_nonzero(cond1.any(axis=1) | cond2.any(axis=1)))
    return AnnaCheck(q.shape[0], k.shape[0], r, c, ell, int(cond1.sum()), int(cond2.sum()), failed, tuple(listed))


@dataclass(frozen=True)
class FailureRate:
    """How often Algorithm 1's weights fail the ANNA definition over seeds, with the bound.

    ``bound`` is the union bound of Theorem 3.4's proof for this input (module docstring);
    :meth:`within_bound` allows ``sigmas`` binomial standard errors of sampling slack.
    """

    trials: int
    failures: int
    condition1_failures: int
    condition2_failures: int
    n_near_pairs: int
    n_far_pairs: int
    p1: float
    p2: float
    z: int
    ell: int
    bound: float

    def __post_init__(self) -> None:
        if self.trials < 1 or not (0 <= self.failures <= self.trials):
            raise ParameterError(f"inconsistent counts: {self.failures} failures in {self.trials} trials")
        if max(self.condition1_failures, self.condition2_failures) > self.failures:
            raise ParameterError("per-condition failures cannot exceed failures")
        if not (0.0 <= self.bound <= 1.0):
            raise ParameterError(f"bound must be a probability, got {self.bound}")

    @property
    def rate(self) -> float:
        return self.failures / self.trials

    @property
    def stderr(self) -> float:
        return math.sqrt(self.rate * (1.0 - self.rate) / self.trials)

    def within_bound(self, sigmas: float = 3.0) -> bool:
        """``rate <= bound + sigmas * sqrt(bound (1 - bound) / trials)``."""
        return self.rate <= self.bound + sigmas * math.sqrt(self.bound * (1.0 - self.bound) / self.trials)

    def __rich__(self):
        from rich.table import Table

        table = Table(title="ANNA failure rate (Algorithm 1 over seeds)")
        table.add_column("quantity")
        table.add_column("value", justify="right")
        table.add_row("seeds", str(self.trials))
        table.add_row("failure rate", f"{self.rate:.4f} +- {self.stderr:.4f}")
        table.add_row("  condition 1 / condition 2", f"{self.condition1_failures} / {self.condition2_failures}")
        table.add_row("Theorem 3.4 union bound", f"{self.bound:.4g}")
        table.add_row("near / far pairs", f"{self.n_near_pairs} / {self.n_far_pairs}")
        table.add_row("p1 / p2", f"{self.p1:.4f} / {self.p2:.4f}")
        table.add_row("z / ell", f"{self.z} / {self.ell}")
        return table


def _seed_list(seeds: object) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, (bool, np.bool_)):
        if seeds < 1:
            raise ParameterError(f"seeds must be a positive count or a sequence of seeds, got {seeds}")
        return list(range(int(seeds)))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise ParameterError(f"seeds must be a positive count or a sequence of seeds, got {seeds!r}")
    out = [normalize_seed(s) for s in seeds]
    if not out:
        raise ParameterError("seeds must not be empty")
    return out


def anna_failure_rate(q: np.ndarray, k: np.ndarray, lsh: LSHConfig, r: float, c: float,
                      seeds: int | Iterable[int]) -> FailureRate:
    """Fraction of seeds for which Algorithm 1's weights fail :func:`check_anna`, with the bound.

    ``seeds`` is a count (seeds 0..count-1) or a sequence of seeds. Angular families need
    unit-norm ``q`` and ``k`` (their collision probabilities are stated for unit vectors).

    Examples
    --------
    >>> import numpy as np
    >>> from anna.lsh import E2LSH, LSHConfig
    >>> k = np.array([[0.0, 0.0], [0.5, 0.0], [40.0, 0.0]])
    >>> fr = anna_failure_rate(k[:1].copy(), k, LSHConfig(E2LSH(), z=4, ell=20), r=1.0, c=8.0, seeds=20)
    >>> fr.trials, fr.n_near_pairs, fr.n_far_pairs, fr.within_bound()
    (20, 2, 1, True)
    """
    q = check_float_matrix("q", q)
    k = check_float_matrix("k", k)
    if not isinstance(lsh, LSHConfig):
        raise ParameterError(f"lsh must be an LSHConfig, got {type(lsh).__name__}")
    r = _check_number("r", r, low=0.0, strict=True)
    c = _check_number("c", c, low=1.0, strict=True)
    seed_list = _seed_list(seeds)
    family = lsh.family
    distances = pairwise_distances(q, k)
    if family.angular:
        for name, x in (("q", q), ("k", k)):
            norms = np.linalg.norm(x.astype(np.float64), axis=1)
            if x.shape[0] and np.abs(norms - 1.0).max() > 1e-5:
                raise InputError(f"{family.name} is angular: {name} must have unit-norm rows "
                                 f"(max |norm - 1| = {np.abs(norms - 1.0).max():.3g})")
    n_near = int(np.count_nonzero(distances <= r))
    n_far = int(np.count_nonzero(distances > c * r))
    p1 = family.collision_probability(min(r, 2.0) if family.angular else r, dim=q.shape[1])
    p2 = family.collision_probability(c * r, dim=q.shape[1]) if n_far else 0.0
    bound = min(1.0, n_far * lsh.ell * p2**lsh.z + n_near * (1.0 - p1**lsh.z) ** lsh.ell)
    failures = cond1 = cond2 = 0
    for seed in seed_list:
        report = check_anna(q, k, anna_weights(q, k, lsh, seed), r, c, lsh.ell)
        failures += not report.holds
        cond1 += report.condition1 > 0
        cond2 += report.condition2 > 0
    return FailureRate(len(seed_list), failures, cond1, cond2, n_near, n_far, p1, p2, lsh.z, lsh.ell, bound)
