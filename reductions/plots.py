"""Figures of the claims' sweeps (``anna-mpc verify --plots DIR``), drawn with matplotlib.

matplotlib is the optional extra ``plot`` (``pip install 'anna-mpc[plot]'``); it is imported only
when a figure is drawn, and :class:`PlotError` says how to install it when it is missing. A claim
that has figures defines ``figures(sweep) -> list[FigureSpec]``; :func:`write_figures` draws them.

Examples
--------
>>> spec = FigureSpec("demo", "y = n^2", "n", "y", (Series("n^2", (2, 4, 8), (4, 16, 64)),))
>>> spec.series[0].slope()
2.0
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Series", "FigureSpec", "PlotError", "require_matplotlib", "draw", "write_figures", "series_from",
           "result_figures"]


class PlotError(RuntimeError):
    """Figures were asked for but cannot be drawn (matplotlib missing)."""


@dataclass(frozen=True)
class Series:
    """One curve: a label and its points."""

    label: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "xs", tuple(float(x) for x in self.xs))
        object.__setattr__(self, "ys", tuple(float(y) for y in self.ys))
        if len(self.xs) != len(self.ys) or not self.xs:
            raise ValueError(f"series {self.label!r} needs as many x as y values (at least one), got "
                             f"{len(self.xs)} and {len(self.ys)}")

    def slope(self) -> float:
        """The least-squares slope of ``log y`` against ``log x`` (nan for a single point)."""
        if len(self.xs) < 2:
            return math.nan
        lx = [math.log(x) for x in self.xs]
        ly = [math.log(y) for y in self.ys]
        mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
        return round(sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx), 12)


@dataclass(frozen=True)
class FigureSpec:
    """A figure: file stem, title, axis labels, its curves; logarithmic axes by default (then
    every curve's log-log slope is in its legend)."""

    name: str
    title: str
    xlabel: str
    ylabel: str
    series: tuple[Series, ...]
    xlog: bool = True
    ylog: bool = True

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"figure name must be a plain file stem, got {self.name!r}")
        object.__setattr__(self, "series", tuple(self.series))


def require_matplotlib():
    """``matplotlib.pyplot`` on the non-interactive Agg backend, or :class:`PlotError`."""
    try:
        import matplotlib
    except ImportError as exc:
        raise PlotError("figures need matplotlib, the optional extra 'plot': "
                        "pip install 'anna-mpc[plot]' (or pip install matplotlib)") from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def draw(spec: FigureSpec, path: str | Path) -> Path:
    """Draw ``spec`` into ``path`` (PNG)."""
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    try:
        for series in spec.series:
            label = series.label
            if spec.xlog and spec.ylog and len(series.xs) > 1:
                label += f" (slope {series.slope():.2f})"
            ax.plot(series.xs, series.ys, marker="o", label=label)
        if spec.xlog:
            ax.set_xscale("log", base=2)
        if spec.ylog:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.set_title(spec.title)
        ax.set_xlabel(spec.xlabel)
        ax.set_ylabel(spec.ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return path


def write_figures(specs: Iterable[FigureSpec], directory: str | Path) -> list[Path]:
    """Draw every figure into ``directory`` (created) as ``<name>.png``; returns the paths."""
    require_matplotlib()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return [draw(spec, directory / f"{spec.name}.png") for spec in specs]


def result_figures(results: Sequence) -> list[FigureSpec]:
    """One figure per fitted claim result (``anna-mpc verify --plots``): the measured series, the
    fitted line and the predicted slope through the series' first point."""
    import re

    specs, used = [], set()
    for r in results:
        if r.fit is None or len(r.xs) < 2 or any(y is None for y in r.ys):
            continue
        xs = tuple(r.xs)
        fitted = tuple(r.fit.predict(x) for x in xs)
        series = [Series("measured", xs, tuple(r.ys)), Series("least-squares fit" + ("" if r.fit.logx and r.fit.logy
                                                       else f" (slope {r.fit.slope:.2f})"), xs, fitted)]
        if r.predicted is not None:
            x0 = math.log(xs[0]) if r.fit.logx else xs[0]
            y0 = math.log(r.ys[0]) if r.fit.logy else r.ys[0]
            line = []
            for x in xs:
                xv = math.log(x) if r.fit.logx else x
                yv = y0 + r.predicted * (xv - x0)
                line.append(math.exp(yv) if r.fit.logy else yv)
            series.append(Series(f"predicted, +-{r.tolerance:g}" if r.kind == "exponent"
                                 else f"bound, +{r.tolerance:g}", xs, tuple(line)))
        stem = re.sub(r"[^a-z0-9]+", "_", f"{r.claim} {r.quantity}".lower()).strip("_")[:80]
        while stem in used:
            stem += "_"
        used.add(stem)
        specs.append(FigureSpec(stem, f"{r.claim}: {r.quantity}"[:90], r.x_label, r.y_label or "value",
                                tuple(series), xlog=r.fit.logx, ylog=r.fit.logy))
    return specs


def series_from(points: Sequence, label: str, key: str) -> Series:
    """A curve of ``point.values[key]`` against ``point.n`` over sweep points."""
    return Series(label, tuple(p.n for p in points), tuple(p.values[key] for p in points))
