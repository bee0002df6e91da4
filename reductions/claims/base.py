"""Theorems as executable claims: sweep a size, fit log-log slopes, say holds or fails with numbers."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from rich.markup import escape
from rich.table import Table

__all__ = ["ClaimResult", "SweepPoint", "Claim", "fit_loglog", "results_table"]


@dataclass(frozen=True)
class LogLogFit:
    """``log y = slope * log x + intercept`` by least squares, with the coefficient of determination."""

    slope: float
    intercept: float
    r2: float
    points: int


def fit_loglog(xs: Sequence[float], ys: Sequence[float]) -> LogLogFit:
    """Least-squares fit of ``log y`` against ``log x`` (natural logs; the slope is base-free).

    Examples
    --------
    >>> fit = fit_loglog([2, 4, 8, 16], [3, 6, 12, 24])
    >>> round(fit.slope, 6), round(fit.r2, 6)
    (1.0, 1.0)
    """
    x = np.log(np.asarray(xs, dtype=np.float64))
    y = np.log(np.asarray(ys, dtype=np.float64))
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"need at least two (x, y) points of equal count, got {x.size} and {y.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("log-log fit needs positive, finite values")
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((residual ** 2).sum()) / total if total > 0 else 1.0
    return LogLogFit(float(slope), float(intercept), r2, int(x.size))


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: the size and what was measured there."""

    n: int
    values: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ClaimResult:
    """One checked quantity of a claim: predicted vs measured, and the verdict."""

    claim: str
    quantity: str
    predicted: str
    measured: str
    holds: bool
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class Claim:
    """A theorem of THEORY.md as an object: its statement, the quantities it bounds, a sweep that
    measures them, and a check of the sweep."""

    name: str = "claim"
    statement: str = ""

    def sweep(self, quick: bool = False, progress: Callable[[str], None] | None = None) -> list[SweepPoint]:
        raise NotImplementedError

    def check(self, sweep: list[SweepPoint]) -> list[ClaimResult]:
        raise NotImplementedError

    def run(self, quick: bool = False, progress: Callable[[str], None] | None = None) -> list[ClaimResult]:
        return self.check(self.sweep(quick=quick, progress=progress))

    def result(self, quantity: str, predicted: str, measured: str, holds: bool, detail: str = "") -> ClaimResult:
        return ClaimResult(self.name, quantity, predicted, measured, bool(holds), detail)


def results_table(results: Sequence[ClaimResult]) -> Table:
    """The verify table: one row per checked quantity; the detail goes under the quantity, so
    the table fits 80 columns, and measured numbers are never cut or folded."""
    from mpc_sim.render import compact_table

    rows = [[escape(r.claim), escape(r.quantity) + (f"\n[dim]{escape(r.detail)}[/]" if r.detail else ""),
             escape(r.predicted), escape(r.measured), "[green]holds[/]" if r.holds else "[bold red]fails[/]"]
            for r in results]
    return compact_table("Claims: the paper's theorems, measured", ["claim", "quantity (detail)", "predicted",
                                                                    "measured", "verdict"], rows,
                         numeric=[False, False, False, True, False])


def fmt(x: float) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"
