"""The two experiments of docs/theory.md §6: grids, paper numbers, shipped files, and the comparison.

An :class:`Experiment` names the task, its (ℓ per layer, z) grid, the number of hashing seeds,
the LSH family and what the paper reports; :func:`compare_with_paper` turns a
:class:`~anna.experiments.evaluate.GridResult` into rows ``(quantity, paper, ours)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import ParameterError
from ..train import InductionSetup, Match2Setup
from .evaluate import FAMILIES, GridResult

__all__ = ["Experiment", "EXPERIMENTS", "WEIGHTS_DIR", "compare_with_paper", "grid_path"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
"""Shipped trained weights (``<task>.npz/.json``), training records and recorded grids."""

MATCH2_BETAS = (0.1, 1.0, 10.0)

SURROGATE_ROW = "surrogate test error (its own attention: softmax or collision)"
"""The first row of :func:`compare_with_paper`: :attr:`GridResult.surrogate_error
<anna.experiments.evaluate.GridResult.surrogate_error>`, the model's error with the attention it
was trained as (softmax heads; collision heads for models trained through hash tables)."""


@dataclass(frozen=True)
class Experiment:
    """One of the paper's experiments.

    Attributes
    ----------
    task : {"match2", "induction"}
    ells : tuple of tuple of int
        ℓ values per layer.
    zs : tuple of int
    seeds : int
        Hashing seeds per cell (the paper: 10).
    family : str
        Key of :data:`~anna.experiments.evaluate.FAMILIES`.
    test_size : int
        Test rows.
    paper : dict
        What the paper reports (docs/theory.md §6).

    Examples
    --------
    >>> EXPERIMENTS["match2"].cells
    96
    >>> EXPERIMENTS["induction"].quick().cells
    18
    """

    task: str
    ells: tuple[tuple[int, ...], ...]
    zs: tuple[int, ...]
    seeds: int = 10
    family: str = "hyperplane"
    test_size: int = 256
    paper: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in ("match2", "induction"):
            raise ParameterError(f"task must be 'match2' or 'induction', got {self.task!r}")
        if self.family not in FAMILIES:
            raise ParameterError(f"family must be one of {sorted(FAMILIES)}, got {self.family!r}")
        if not self.ells or any(not e or min(e) < 1 for e in self.ells) or not self.zs or min(self.zs) < 1:
            raise ParameterError(f"grid needs positive ℓ per layer and z values, got ells={self.ells}, zs={self.zs}")
        if self.seeds < 1 or self.test_size < 1:
            raise ParameterError(f"seeds and test_size must be >= 1, got {self.seeds}, {self.test_size}")

    @property
    def cells(self) -> int:
        count = len(self.zs)
        for e in self.ells:
            count *= len(e)
        return count

    def setup(self, **changes) -> Match2Setup | InductionSetup:
        """The training setup (paper settings, with this experiment's test size)."""
        cls = Match2Setup if self.task == "match2" else InductionSetup
        return cls(test_size=self.test_size, **changes)

    def quick(self) -> Experiment:
        """A small grid for a fast look (a few ℓ, z and seeds; fewer induction test rows)."""
        if self.task == "match2":
            return replace(self, ells=((1, 2, 4, 8, 12, 16),), zs=(1, 2, 4, 6), seeds=3)
        return replace(self, ells=((32, 64, 96), (4, 16, 32)), zs=(1, 2), seeds=2, test_size=16)


EXPERIMENTS = {
    "match2": Experiment(
        "match2", (tuple(range(1, 17)),), tuple(range(1, 7)), test_size=256,
        paper={"error_zero_from_ell_at_z1": 8, "statement": "zero test error for ell >= 8 at z = 1",
               "betas": list(MATCH2_BETAS), "best_beta": 0.1, "steps": 20000}),
    "induction": Experiment(
        "induction", (tuple(range(32, 97, 8)), tuple(range(4, 33, 4))), (1, 2, 3, 4), test_size=32,
        paper={"error_at_32_4": 0.2, "more_first_layer_tables": "below 0.1", "chance": 0.75,
               "statement": "about 0.2 error at (ell1, ell2) = (32, 4); below 0.1 with more first-layer tables",
               "beta": 1.0, "steps": 400000}),
}


def grid_path(task: str, family: str, directory: Path = WEIGHTS_DIR) -> Path:
    """Where the recorded grid of ``task`` with ``family`` lives.

    Examples
    --------
    >>> grid_path("match2", "hyperplane").name
    'match2.hyperplane.grid.json'
    """
    return Path(directory) / f"{task}.{family}.grid.json"


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def compare_with_paper(result: GridResult) -> list[tuple[str, str, str]]:
    """Rows ``(quantity, paper, ours)`` for the headline numbers of ``result``'s task."""
    rows = [(SURROGATE_ROW, "—", _fmt(result.surrogate_error))]
    if result.task == "match2":
        z1 = sorted((c.ells[0], c.error) for c in result.cells if c.z == 1)
        zero_from = None
        for ell, _ in z1:
            if all(err == 0.0 for e, err in z1 if e >= ell):
                zero_from = ell
                break
        rows.append(("smallest ℓ with zero error for all larger ℓ (z = 1)",
                     str(result.paper.get("error_zero_from_ell_at_z1", "—")), "none" if zero_from is None else str(zero_from)))
        if any(e == 8 for e, _ in z1):
            rows.append(("error at ℓ = 8, z = 1", "0", _fmt(result.error((8,), 1))))
        if z1:
            rows.append(("largest error for ℓ >= 8, z = 1", "0",
                         _fmt(max((err for e, err in z1 if e >= 8), default=None))))
        best = min(result.cells, key=lambda c: c.error)
        rows.append(("best cell (ℓ, z)", "—", f"{_fmt(best.error)} at ({best.ells[0]}, {best.z})"))
    else:
        at = [c for c in result.cells if c.ells == (32, 4)]
        if at:
            best = min(at, key=lambda c: c.error)
            rows.append(("error at (ℓ1, ℓ2) = (32, 4), best z", "≈ 0.2", f"{_fmt(best.error)} (z = {best.z})"))
            for c in sorted(at, key=lambda c: c.z):
                rows.append((f"error at (32, 4), z = {c.z}", "—", _fmt(c.error)))
        more = [c for c in result.cells if c.ells[0] > 32]
        if more:
            best = min(more, key=lambda c: c.error)
            rows.append(("best error with ℓ1 > 32", "< 0.1",
                         f"{_fmt(best.error)} at ({best.ells[0]}, {best.ells[1]}), z = {best.z}"))
    return rows
