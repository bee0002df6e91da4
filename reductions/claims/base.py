"""Theorems as executable claims: sweep a size, measure, fit, say holds or fails with the numbers.

Every checked quantity becomes a :class:`ClaimResult` of one of four kinds:

* ``exponent`` -- the theorem gives an exponent: a least-squares line through ``(log n, log y)``
  (:func:`fit_loglog`) must land within ``tolerance`` (default 0.1) of the prediction;
* ``slope at most`` -- the theorem gives an upper bound on an exponent (``O(n^a)``): the fitted
  slope must be at most ``prediction + tolerance``; ``ratio = slope / prediction`` says how close
  it comes (none for a prediction of 0: flat);
* ``bound`` -- the theorem gives an upper bound on a value at every point: ``ratio = max y /
  bound`` over the sweep must be at most ``1 + tolerance``;
* ``exact`` -- a count that must be exact (outputs equal to the reference, depth equal to a
  formula): ``measured`` is the fraction of points that are right, the prediction 1;
* ``not applicable`` -- a setting the issue asks for where a hypothesis of the theorem fails:
  ``measured`` is the quantity that breaks it, ``predicted`` the threshold it must meet, ``holds``
  False (the hypothesis does not hold) and the detail says why; the table prints ``n/a`` and
  :attr:`ClaimResult.failed` is False, since the theorem claims nothing there.

Every result carries the sweep series it was computed from (``n`` and the measured values), the fit
and the prediction, so ``anna-mpc verify --json`` and ``--plots`` show where the verdict came from.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from rich import box
from rich.markup import escape
from rich.table import Table

__all__ = ["ClaimResult", "SweepPoint", "Claim", "Fit", "LogLogFit", "fit_loglog", "results_table", "KINDS",
           "DEFAULT_TOLERANCE"]

KINDS = ("exponent", "slope at most", "bound", "exact", "not applicable")
DEFAULT_TOLERANCE = 0.1
"""How far a fitted exponent may land from the theorem's (docs/theory.md §4; issue 11)."""


@dataclass(frozen=True)
class Fit:
    """``y' = slope * x' + intercept`` by least squares, with ``x' = log x`` / ``y' = log y`` when
    the fit is logarithmic (natural logs: the slope is base-free), and the coefficient of
    determination ``r2``."""

    slope: float
    intercept: float
    r2: float
    points: int
    logx: bool = True
    logy: bool = True

    def predict(self, x: float) -> float:
        """The fitted ``y`` at ``x`` (in the original units)."""
        xv = math.log(x) if self.logx else x
        yv = self.slope * xv + self.intercept
        return math.exp(yv) if self.logy else yv

    def to_dict(self) -> dict:
        return {"slope": self.slope, "intercept": self.intercept, "r2": self.r2, "points": self.points,
                "logx": self.logx, "logy": self.logy}


LogLogFit = Fit


def fit_loglog(xs: Sequence[float], ys: Sequence[float], *, logx: bool = True, logy: bool = True) -> Fit:
    """Least-squares line through ``(log x, log y)`` (either axis linear with ``logx`` / ``logy``
    False: ``fit_loglog(log2 k, depth, logx=False, logy=False)`` fits depth against log2 k).

    Examples
    --------
    >>> fit = fit_loglog([2, 4, 8, 16], [3, 6, 12, 24])
    >>> round(fit.slope, 6), round(fit.r2, 6)
    (1.0, 1.0)
    >>> f = fit_loglog([0, 1, 2, 3], [3, 4, 5, 6], logx=False, logy=False)
    >>> round(f.slope, 6), round(f.intercept, 6)
    (1.0, 3.0)
    """
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(f"need at least two (x, y) points of equal count, got {x.size} and {y.size}")
    for flag, values, name in ((logx, x, "x"), (logy, y, "y")):
        if not np.isfinite(values).all() or (flag and (values <= 0).any()):
            raise ValueError(f"a {'log ' if flag else ''}fit needs {'positive, ' if flag else ''}finite {name} values, "
                             f"got {values.tolist()}")
    x = np.log(x) if logx else x
    y = np.log(y) if logy else y
    if np.ptp(x) == 0:
        raise ValueError(f"need at least two distinct x values, got {np.unique(x).size}")
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((residual ** 2).sum()) / total if total > 0 else 1.0
    return Fit(float(slope), float(intercept), r2, int(x.size), logx, logy)


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: the size and what was measured there."""

    n: int
    values: dict = field(default_factory=dict)


def _number(x):
    if x is None:
        return None
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class ClaimResult:
    """One checked quantity of a claim: measured vs predicted, the tolerance, the verdict, and the
    sweep series and fit behind it (all numbers, see the module docstring for the kinds)."""

    claim: str
    quantity: str
    kind: str
    measured: float
    predicted: float | None
    tolerance: float
    holds: bool
    ratio: float | None = None
    xs: tuple = ()
    ys: tuple = ()
    x_label: str = "n"
    y_label: str = ""
    fit: Fit | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if len(self.xs) != len(self.ys):
            raise ValueError(f"series of {self.quantity!r}: {len(self.xs)} x values but {len(self.ys)} y values")
        if not (self.tolerance >= 0):
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")
        object.__setattr__(self, "xs", tuple(_number(x) for x in self.xs))
        object.__setattr__(self, "ys", tuple(_number(y) for y in self.ys))
        object.__setattr__(self, "holds", bool(self.holds))

    @property
    def failed(self) -> bool:
        """A check the theorem makes that does not hold (``not applicable`` rows never fail)."""
        return not self.holds and self.kind != "not applicable"

    @property
    def n_range(self) -> tuple[float, float] | None:
        return (min(self.xs), max(self.xs)) if self.xs and self.x_label == "n" else None

    def to_dict(self) -> dict:
        """JSON-ready: numbers as numbers (nan and inf as null)."""
        return {"claim": self.claim, "quantity": self.quantity, "kind": self.kind,
                "measured": _number(self.measured), "predicted": _number(self.predicted),
                "tolerance": _number(self.tolerance), "ratio": _number(self.ratio), "holds": self.holds,
                "series": {self.x_label: list(self.xs), self.y_label or "value": list(self.ys)},
                "x_label": self.x_label, "y_label": self.y_label,
                "fit": None if self.fit is None else self.fit.to_dict(), "detail": self.detail}


class Claim:
    """A theorem of docs/theory.md as an object: its statement, the quantities it bounds, a sweep that
    measures them, and a check of the sweep (see the module docstring for the checks)."""

    name: str = "claim"
    statement: str = ""

    def sweep(self, quick: bool = False, progress: Callable[[str], None] | None = None) -> list[SweepPoint]:
        raise NotImplementedError

    def check(self, sweep: list[SweepPoint]) -> list[ClaimResult]:
        raise NotImplementedError

    def run(self, quick: bool = False, progress: Callable[[str], None] | None = None) -> list[ClaimResult]:
        return self.check(self.sweep(quick=quick, progress=progress))

    # -- the four kinds of check ---------------------------------------------------------------
    def exponent(self, quantity: str, xs, ys, predicted: float, tolerance: float = DEFAULT_TOLERANCE, *,
                 y_label: str = "", x_label: str = "n", detail: str = "", logx: bool = True) -> ClaimResult:
        """The fitted slope of ``log y`` against ``log x`` (``x`` linear with ``logx=False``) lies
        within ``tolerance`` of ``predicted``."""
        fit = fit_loglog(xs, ys, logx=logx, logy=logx)
        return ClaimResult(self.name, quantity, "exponent", fit.slope, predicted, tolerance,
                           abs(fit.slope - predicted) <= tolerance, None, tuple(xs), tuple(ys), x_label, y_label,
                           fit, _with_r2(detail, fit))

    def slope_at_most(self, quantity: str, xs, ys, predicted: float, tolerance: float = DEFAULT_TOLERANCE, *,
                      y_label: str = "", x_label: str = "n", detail: str = "", logx: bool = True,
                      logy: bool | None = None) -> ClaimResult:
        """The fitted slope is at most ``predicted + tolerance``; ``ratio = slope / predicted``."""
        fit = fit_loglog(xs, ys, logx=logx, logy=logx if logy is None else logy)
        ratio = fit.slope / predicted if predicted > 0 else None      # a flat prediction has no ratio
        return ClaimResult(self.name, quantity, "slope at most", fit.slope, predicted, tolerance,
                           fit.slope <= predicted + tolerance, ratio, tuple(xs), tuple(ys), x_label, y_label,
                           fit, _with_r2(detail, fit))

    def bound(self, quantity: str, xs, ys, bounds, tolerance: float = 0.0, *, y_label: str = "",
              x_label: str = "n", detail: str = "") -> ClaimResult:
        """Every ``y <= bound`` (up to a factor ``1 + tolerance``); ``ratio = max y / bound``."""
        ys_a, bounds_a = np.asarray(ys, dtype=np.float64), np.asarray(bounds, dtype=np.float64)
        if ys_a.shape != bounds_a.shape or not ys_a.size:
            raise ValueError(f"{quantity}: need one bound per value, got {ys_a.size} values and {bounds_a.size} bounds")
        ratios = np.where(bounds_a > 0, ys_a / np.where(bounds_a > 0, bounds_a, 1.0), np.where(ys_a > 0, np.inf, 0.0))
        worst = int(np.argmax(ratios))
        ratio = float(ratios[worst])
        return ClaimResult(self.name, quantity, "bound", float(ys_a[worst]), float(bounds_a[worst]), tolerance,
                           ratio <= 1.0 + tolerance, ratio, tuple(xs), tuple(ys), x_label, y_label, None,
                           detail)

    def exact(self, quantity: str, xs, oks, *, y_label: str = "exact", x_label: str = "n",
              detail: str = "") -> ClaimResult:
        """Every point is right: ``measured`` = fraction right, predicted 1."""
        oks = [bool(o) for o in oks]
        if not oks:
            raise ValueError(f"{quantity}: no points to check")
        fraction = sum(oks) / len(oks)
        return ClaimResult(self.name, quantity, "exact", fraction, 1.0, 0.0, all(oks), None, tuple(xs),
                           tuple(int(o) for o in oks), x_label, y_label, None, detail)


    def not_applicable(self, quantity: str, measured: float, required: float, *, y_label: str = "",
                       detail: str = "") -> ClaimResult:
        """A setting where the theorem's hypothesis ``measured < required`` fails (module docstring)."""
        return ClaimResult(self.name, quantity, "not applicable", measured, required, 0.0, measured < required,
                           measured / required if required > 0 else None, (), (), "n", y_label, None, detail)


def _with_r2(detail: str, fit: Fit) -> str:
    return f"{detail}; r2 {fit.r2:.3f}" if detail else f"r2 {fit.r2:.3f}"


def fmt(x: float | None, digits: int = 3) -> str:
    """A number for the table: 3 decimals, or 3 significant digits when large or tiny."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-" if x is None else str(x)
    if isinstance(x, (int, np.integer)) or (abs(x) >= 1000 and float(x).is_integer()):
        return f"{int(x):,}"
    if x != 0 and (abs(x) >= 1000 or abs(x) < 0.01):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}f}"


def _span(r: ClaimResult) -> str:
    if not r.xs:
        return ""
    lo, hi = min(r.xs), max(r.xs)
    if r.x_label == "n" and lo > 0 and float(math.log2(lo)).is_integer() and float(math.log2(hi)).is_integer():
        return f"2^{int(math.log2(lo))}..2^{int(math.log2(hi))}"
    if float(lo).is_integer() and float(hi).is_integer():
        lo, hi = int(lo), int(hi)
    return f"{fmt(lo)}..{fmt(hi)}" if lo != hi else fmt(lo)


def _predicted_cell(r: ClaimResult) -> str:
    sign = {"exponent": "", "slope at most": "<= ", "bound": "<= ", "exact": "", "not applicable": "< "}[r.kind]
    return "all" if r.kind == "exact" else sign + fmt(r.predicted)


def _measured_cell(r: ClaimResult) -> str:
    if r.kind == "exact":
        return f"{sum(1 for y in r.ys if y)}/{len(r.ys)}"
    text = fmt(r.measured)
    if r.kind in ("slope at most", "bound", "not applicable") and r.ratio is not None:
        text += f" ({r.ratio:.2f}x)"
    return text


def results_table(results: Sequence[ClaimResult]) -> Table:
    """The verify table (fits 80 columns): claim, quantity, sweep span, measured (with its ratio to
    an upper bound), prediction, tolerance, verdict. Details and series are in ``--json``."""
    table = Table(title="Claims: the paper's theorems, measured", box=box.SIMPLE_HEAD, padding=(0, 1),
                  pad_edge=False, show_edge=False)
    table.add_column("thm", no_wrap=True, width=5)
    table.add_column("quantity", overflow="fold", ratio=1)
    table.add_column("n", no_wrap=True, width=9)
    table.add_column("measured", justify="right", no_wrap=True, width=13)
    table.add_column("pred.", justify="right", no_wrap=True, width=8)
    table.add_column("tol", justify="right", no_wrap=True, width=5)
    table.add_column("ok", no_wrap=True, width=3)
    for r in results:
        verdict = "[green]yes[/]" if r.holds else "[yellow]n/a[/]" if not r.failed else "[bold red]NO[/]"
        tol = "0" if r.tolerance == 0 else f"{r.tolerance:.2g}"
        table.add_row(escape(r.claim.replace("Theorem ", "")), escape(r.quantity), _span(r), _measured_cell(r), _predicted_cell(r),
                      tol, verdict)
    return table
