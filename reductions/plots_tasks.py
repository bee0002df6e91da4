"""Figures of the task constructions (THEORY.md §4-§5); matplotlib is imported only when drawing.

:func:`khop_depth_series` computes the curves (no matplotlib needed), :func:`plot_khop_depth`
draws them: depth against k for the direct ANNA construction and for Theorem 4.1 applied to the
pointer-doubling protocol, the predecessor's softmax construction ``floor(log2 k) + 2``, and the
reference line ``depth = k`` that RNNs and low-rank (kernel) attention need at sublinear width
(THEORY.md §4, Thm 5.6). :func:`write_task_figures` writes every figure of this module into a
directory (``anna-mpc verify --plots DIR``).
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .constructions.khop import compiled_khop_depth, khop_depth, predecessor_depth

__all__ = ["khop_depth_series", "plot_khop_depth", "write_task_figures", "KHOP_DEPTH_FILE"]

KHOP_DEPTH_FILE = "khop_depth.png"


def khop_depth_series(ks: Iterable[int] = range(1, 65), compiled_n: int = 64) -> dict[str, list[int]]:
    """Depth against ``k`` for every curve of the k-hop figure.

    Keys: ``k``; ``anna_direct`` (:func:`~reductions.constructions.khop.khop_depth`);
    ``anna_compiled`` (pointer doubling compiled at ``N = compiled_n``, eps = 1/2); ``softmax``
    (predecessor, ``floor(log2 k) + 2``); ``rnn_lowrank`` (``k``, the lower bound at sublinear width).

    Examples
    --------
    >>> series = khop_depth_series([1, 2, 64], compiled_n=16)
    >>> series["anna_direct"], series["softmax"], series["rnn_lowrank"]
    ([3, 4, 9], [2, 3, 8], [1, 2, 64])
    """
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be a non-empty collection of hop counts >= 1, got {ks}")
    return {
        "k": ks,
        "anna_direct": [khop_depth(k) for k in ks],
        "anna_compiled": [compiled_khop_depth(k, compiled_n) for k in ks],
        "softmax": [predecessor_depth(k) for k in ks],
        "rnn_lowrank": ks,
    }


def _matplotlib_figure():
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # the optional extra
        raise ImportError("figures need matplotlib: pip install 'anna-mpc[plot]'") from exc
    return Figure(figsize=(6.4, 4.4), dpi=120)


def plot_khop_depth(path: str | Path, *, ks: Iterable[int] = range(1, 65), compiled_n: int = 64) -> Path:
    """Draw depth vs k (log-scaled k axis) to ``path`` (PNG); returns the path written."""
    series = khop_depth_series(ks, compiled_n)
    figure = _matplotlib_figure()
    ax = figure.subplots()
    k = series["k"]
    ax.plot(k, series["rnn_lowrank"], color="0.45", linestyle="--",
            label="depth = k (RNN / low-rank attention, sublinear width)")
    ax.step(k, series["anna_compiled"], where="post", color="tab:orange",
            label=f"ANNA, pointer doubling compiled (Thm 4.1), N = {compiled_n}")
    ax.step(k, series["softmax"], where="post", color="tab:green",
            label="softmax, predecessor: floor(log2 k) + 2")
    ax.step(k, series["anna_direct"], where="post", color="tab:blue", linewidth=2,
            label="ANNA / exact match, direct (causal, m <= 3, H <= 2)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("hops k")
    ax.set_ylabel("layers L")
    ax.set_ylim(0, max(max(series["anna_compiled"]), 16) + 2)
    ax.set_title("k-hop induction heads: depth O(log k) vs depth k")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format="png")
    return path


def write_task_figures(directory: str | Path) -> list[Path]:
    """Write this module's figures into ``directory`` (created if needed); returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return [plot_khop_depth(directory / KHOP_DEPTH_FILE)]
