"""Sizing by Theorem 3.4 (z, ell and the failure bound for n tokens) and measured collision rates.

:func:`theory_parameters` turns a family's collision probabilities ``p1`` at ``r`` and ``p2`` at
``c r`` into ``(z, ell)`` (docs/theory.md §3); :func:`measure_collision_rates` samples them on
independent (function, pair) trials, beside the closed forms. Both take any registered family.

Examples
--------
>>> from anna.lsh import Hyperplane
>>> t = theory_parameters(1000, r=0.5, c=2.0, family=Hyperplane())
>>> t.z, t.ell, round(t.rho, 2), t.theorem_applies     # rho >= 1/3: outside the theorem
(52, 189279, 0.43, False)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._validate import normalize_seed
from ..errors import ParameterError
from .base import LSHConfig, LSHFamily, check_positive_float, check_positive_int
from .e2lsh import E2LSH

__all__ = ["TheoryParameters", "theory_parameters", "MeasuredRho", "measure_collision_rates"]


# ---------------------------------------------------------------------------- Theorem 3.4
@dataclass(frozen=True)
class TheoryParameters:
    """(z, ell) for ``n`` tokens from Theorem 3.4, with the failure bound they guarantee.

    ``z = ceil(3 ln n / ln(1/p2))`` makes ``p2**z <= n**-3``; ``ell = ceil(3 ln n / p1**z)``
    makes a near pair miss every table with probability ``(1 - p1**z)**ell <= n**-3``. Since
    ``p1**z >= p1 n**(-3 rho)``, ``ell <= ceil((3 / p1) n**(3 rho) ln n)``: the theorem's
    ``Theta(n**(3 rho) log n)`` with the constant ``3 / p1``. The union bound over at most ``n**2``
    far and ``n**2`` near pairs gives ``eta_bound = min(1, n**2 ell p2**z + n**2 (1 - p1**z)**ell)
    <= (ell + 1) / n``, i.e. ``O(n**(3 rho - 1) log n)``. ``theorem_applies`` says whether the
    theorem's hypotheses ``c > sqrt 3`` and ``rho < 1/3`` hold.
    """

    n: int
    r: float
    c: float
    family: str
    p1: float
    p2: float
    rho: float
    z: int
    ell: int
    eta_bound: float
    theorem_applies: bool

    def __post_init__(self) -> None:
        if not (0.0 < self.p2 < self.p1 <= 1.0):
            raise ParameterError(f"need 0 < p2 < p1 <= 1, got p1={self.p1}, p2={self.p2}")
        if self.z < 1 or self.ell < 1 or not (0.0 <= self.eta_bound <= 1.0):
            raise ParameterError(f"inconsistent parameters z={self.z}, ell={self.ell}, eta_bound={self.eta_bound}")

    def config(self, family: LSHFamily) -> LSHConfig:
        """The :class:`LSHConfig` with these (z, ell)."""
        return LSHConfig(family, self.z, self.ell)


def _sensitivity(family: LSHFamily, r: object, c: object, dim: int | None) -> tuple[float, float, float, float]:
    r = check_positive_float("r", r)
    c = check_positive_float("c", c)
    if c <= 1.0:
        raise ParameterError(f"c must be > 1, got {c}")
    if family.angular and c * r > 2.0:
        raise ParameterError(f"angular family: c*r = {c * r} exceeds 2, the largest distance between unit vectors")
    p1 = family.collision_probability(r, dim=dim)
    p2 = family.collision_probability(c * r, dim=dim)
    if not (0.0 < p2 < p1 < 1.0):
        raise ParameterError(f"{family.name} is not usefully sensitive at r={r}, cr={c * r}: p1={p1}, p2={p2}")
    return r, c, p1, p2


def theory_parameters(n: int, r: float, c: float, family: LSHFamily | None = None, *,
                      dim: int | None = None) -> TheoryParameters:
    """(z, ell, eta) per Theorem 3.4 for ``n`` queries and ``n`` keys (see :class:`TheoryParameters`).

    ``dim`` is needed by the cross-polytope family only.

    Examples
    --------
    >>> t = theory_parameters(1000, r=1.0, c=8.0)
    >>> t.z, t.ell, round(t.rho, 3), t.theorem_applies, round(t.eta_bound, 2)
    (13, 374, 0.136, True, 0.23)
    """
    family = E2LSH() if family is None else family
    n = check_positive_int("n", n)
    if n < 2:
        raise ParameterError(f"n must be at least 2, got {n}")
    r, c, p1, p2 = _sensitivity(family, r, c, dim)
    rho = math.log(1.0 / p1) / math.log(1.0 / p2)
    log_n = math.log(n)
    z = max(1, math.ceil(3.0 * log_n / math.log(1.0 / p2)))
    ell = max(1, math.ceil(3.0 * log_n / p1**z))
    eta = min(1.0, n * n * ell * p2**z + n * n * (1.0 - p1**z) ** ell)
    return TheoryParameters(n, r, c, family.name, p1, p2, rho, z, ell, eta,
                            bool(c > math.sqrt(3.0) and rho < 1.0 / 3.0))


# ------------------------------------------------------------------------ measured rho
@dataclass(frozen=True)
class MeasuredRho:
    """Collision rates measured on independent (function, pair) trials, beside the closed forms."""

    family: str
    r: float
    c: float
    pairs: int
    p1: float
    p1_stderr: float
    p2: float
    p2_stderr: float
    p1_theory: float
    p2_theory: float
    rho_measured: float
    rho_theory: float

    def __post_init__(self) -> None:
        if self.pairs < 1 or not (0.0 <= self.p1 <= 1.0 and 0.0 <= self.p2 <= 1.0):
            raise ParameterError(f"inconsistent measurement: pairs={self.pairs}, p1={self.p1}, p2={self.p2}")


def _rho(p1: float, p2: float) -> float:
    if p2 <= 0.0 or p1 >= 1.0:
        return 0.0
    if p1 <= 0.0 or p2 >= 1.0:
        return math.inf
    return math.log(1.0 / p1) / math.log(1.0 / p2)


def _pairs_at(rng: np.random.Generator, count: int, dim: int, distance: float, angular: bool) -> np.ndarray:
    """``count`` pairs (2*count, dim): rows 2t and 2t+1 at exactly ``distance`` (unit rows if angular)."""
    base = rng.standard_normal((count, dim))
    direction = rng.standard_normal((count, dim))
    if angular:
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        direction -= np.sum(direction * base, axis=1, keepdims=True) * base
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        theta = 2.0 * math.asin(distance / 2.0)
        other = math.cos(theta) * base + math.sin(theta) * direction
    else:
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        other = base + distance * direction
    out = np.empty((2 * count, dim))
    out[0::2], out[1::2] = base, other
    return out


def _collision_trials(family: LSHFamily, params, points: np.ndarray) -> np.ndarray:
    """Trial t hashes pair t with table t only (all trials independent)."""
    chunk = 256
    hits = np.empty(params.ell, dtype=bool)
    for lo in range(0, params.ell, chunk):
        hi = min(params.ell, lo + chunk)
        codes = family.hash(points[2 * lo: 2 * hi], params.select(lo, hi), table_major=True)
        t = np.arange(hi - lo)
        hits[lo:hi] = codes[t, 2 * t] == codes[t, 2 * t + 1]
    return hits


def measure_collision_rates(family: LSHFamily, dim: int, r: float, c: float, pairs: int = 20000,
                            seed: int | None = 0) -> MeasuredRho:
    """Measure p1 = P[collide at distance r] and p2 = P[collide at distance c*r] for one function.

    Each of ``pairs`` trials draws a fresh function (table t of a z=1 sample) and a fresh pair at
    exactly the distance (unit vectors for angular families), so the hit counts are binomial and
    the standard errors ``sqrt(p (1 - p) / pairs)`` are exact.

    Examples
    --------
    >>> from anna.lsh import Hyperplane
    >>> m = measure_collision_rates(Hyperplane(), dim=16, r=0.5, c=2.0, pairs=2000)
    >>> abs(m.p1 - m.p1_theory) < 4 * m.p1_stderr + 1e-9
    True
    """
    dim = check_positive_int("dim", dim)
    pairs = check_positive_int("pairs", pairs)
    seed = normalize_seed(seed)
    r, c, p1_theory, p2_theory = _sensitivity(family, r, c, dim)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    rates = []
    for index, distance in enumerate((r, c * r)):
        params = family.sample(dim, 1, pairs, np.random.SeedSequence([seed, 11 + index]).generate_state(1)[0])
        hits = _collision_trials(family, params, _pairs_at(rng, pairs, dim, distance, family.angular))
        p = float(hits.mean())
        rates.append((p, math.sqrt(max(p * (1.0 - p), 0.0) / pairs)))
    (p1, s1), (p2, s2) = rates
    return MeasuredRho(family.name, r, c, pairs, p1, s1, p2, s2, p1_theory, p2_theory, _rho(p1, p2),
                       _rho(p1_theory, p2_theory))
