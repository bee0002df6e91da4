"""Figures of the task constructions (docs/theory.md §4-§5), as :class:`~reductions.plots.FigureSpec`.

:func:`khop_depth_series` computes the curves of the k-hop figure: depth against k for the direct
ANNA construction and for Theorem 4.1 applied to the pointer-doubling protocol, the predecessor's
softmax construction ``floor(log2 k) + 2``, and the reference line ``depth = k`` that RNNs and
low-rank (kernel) attention need at sublinear width (docs/theory.md §4, Thm 5.6).
:func:`khop_depth_figure` packs them as a figure (log2 k axis, linear depth axis), which
:class:`~reductions.claims.theorem5.Theorem56` hands to ``anna-mpc verify --plots DIR``;
:func:`write_task_figures` draws it on its own. matplotlib (the extra ``plot``) is imported only
when drawing, by :mod:`reductions.plots`.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .constructions.khop import compiled_khop_depth, khop_depth, predecessor_depth
from .plots import FigureSpec, Series, write_figures

__all__ = ["khop_depth_series", "khop_depth_figure", "write_task_figures", "KHOP_DEPTH_FIGURE"]

KHOP_DEPTH_FIGURE = "khop_depth"
"""File stem of the k-hop depth figure."""


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
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be a non-empty collection of hop counts >= 1, got {ks}")
    return {
        "k": ks,
        "anna_direct": [khop_depth(k) for k in ks],
        "anna_compiled": [compiled_khop_depth(k, compiled_n) for k in ks],
        "softmax": [predecessor_depth(k) for k in ks],
        "rnn_lowrank": ks,
    }


def khop_depth_figure(ks: Iterable[int] = range(1, 65), compiled_n: int = 64) -> FigureSpec:
    """The k-hop depth figure: four curves over ``k`` (log2 axis), depth on a linear axis.

    Examples
    --------
    >>> spec = khop_depth_figure([1, 2, 4, 8], compiled_n=16)
    >>> spec.name, [s.label.split(":")[0] for s in spec.series]
    ('khop_depth', ['ANNA direct', 'ANNA compiled', 'softmax', 'RNN / low-rank'])
    """
    series = khop_depth_series(ks, compiled_n)
    k = tuple(series["k"])
    return FigureSpec(
        KHOP_DEPTH_FIGURE, "k-hop induction heads: depth O(log k) vs depth k", "hops k", "layers L",
        (Series("ANNA direct: causal, H <= 2, m <= 3", k, tuple(series["anna_direct"])),
         Series(f"ANNA compiled: pointer doubling via Thm 4.1, N = {compiled_n}", k, tuple(series["anna_compiled"])),
         Series("softmax: predecessor, floor(log2 k) + 2", k, tuple(series["softmax"])),
         Series("RNN / low-rank: depth k at sublinear width", k, tuple(series["rnn_lowrank"]))),
        xlog=True, ylog=False)


def write_task_figures(directory: str | Path, ks: Iterable[int] = range(1, 65), compiled_n: int = 64) -> list[Path]:
    """Draw this module's figures into ``directory`` (created if needed); returns their paths."""
    return write_figures([khop_depth_figure(ks, compiled_n)], directory)
