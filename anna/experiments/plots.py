"""The two figures: Match2 error vs ℓ per z, and the induction-heads ℓ1 x ℓ2 heatmap per z.

matplotlib is the optional extra ``plot``; it is imported when a figure is drawn, and
:class:`PlotMissing` (an ImportError) says how to install it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .evaluate import GridResult

__all__ = ["PlotMissing", "plot_grid", "require_pyplot"]


class PlotMissing(ImportError):
    """matplotlib is not installed."""


def require_pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend; :class:`PlotMissing` without matplotlib.

    The one place figures of :mod:`anna.experiments` get matplotlib from (like
    :func:`anna.train.require_torch` for torch).
    """
    try:
        import matplotlib
    except ImportError as error:
        raise PlotMissing('figures need matplotlib: pip install -e ".[plot]" (or pip install "matplotlib>=3.7")') \
            from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_pyplot = require_pyplot  # the old private name, kept importable


def _plot_match2(result: GridResult, plt):
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ells = result.layer_ells(0)
    for z in result.zs:
        cells = sorted((c for c in result.cells if c.z == z), key=lambda c: c.ells)
        ax.errorbar([c.ells[0] for c in cells], [c.error for c in cells], yerr=[c.error_std for c in cells],
                    marker="o", ms=3, capsize=2, label=f"z = {z}")
    ax.axhline(result.surrogate_error, color="black", ls="--", lw=1, label="surrogate (its own attention)")
    ax.set_xticks(ells)
    ax.set_xlabel("ℓ (hash tables)")
    ax.set_ylabel("test error (all tokens)")
    seeds = max(c.seeds for c in result.cells)
    ax.set_title(f"Match2 with ANNA ({result.family} LSH), mean of {seeds} seeds\n"
                 "paper: zero error for ℓ ≥ 8 at z = 1")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _plot_induction(result: GridResult, plt):
    ell1s, ell2s, zs = result.layer_ells(0), result.layer_ells(1), result.zs
    errors = {(c.ells, c.z): c.error for c in result.cells}
    fig, axes = plt.subplots(1, len(zs), figsize=(3.0 * len(zs) + 1.2, 3.6), squeeze=False, layout="constrained")
    image = None
    for ax, z in zip(axes[0], zs):
        grid = np.array([[errors.get(((e1, e2), z), np.nan) for e2 in ell2s] for e1 in ell1s])
        image = ax.imshow(grid, origin="lower", vmin=0.0, vmax=0.75, cmap="viridis_r", aspect="auto")
        ax.set_xticks(range(len(ell2s)), [str(e) for e in ell2s], fontsize=7)
        ax.set_yticks(range(len(ell1s)), [str(e) for e in ell1s], fontsize=7)
        ax.set_xlabel("ℓ2 (layer-2 tables)")
        ax.set_title(f"z = {z}")
        for i in range(len(ell1s)):
            for j in range(len(ell2s)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=5,
                            color="white" if grid[i, j] > 0.4 else "black")
    axes[0][0].set_ylabel("ℓ1 (layer-1 tables)")
    fig.colorbar(image, ax=axes[0].tolist(), label="test error (all tokens, ⊥ included)")
    seeds = max(c.seeds for c in result.cells)
    fig.suptitle(f"Induction heads (1-hop) with ANNA ({result.family} LSH), mean of {seeds} seeds; "
                 f"surrogate (its own attention) {result.surrogate_error:.3f}; paper ≈ 0.2 at (32, 4)", fontsize=9)
    return fig


def plot_grid(result: GridResult, path: str | Path) -> Path:
    """Draw ``result``'s figure into the PNG ``path`` (directories are created); returns the path."""
    plt = require_pyplot()
    fig = _plot_match2(result, plt) if result.task == "match2" else _plot_induction(result, plt)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
