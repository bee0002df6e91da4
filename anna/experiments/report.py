"""Rich tables of an evaluated grid and of the comparison with the paper."""
from __future__ import annotations

from rich.table import Table

from .evaluate import GridResult
from .specs import compare_with_paper

__all__ = ["grid_tables", "paper_table"]


def _style(error: float) -> str:
    if error == 0.0:
        return "bold green"
    return "green" if error < 0.1 else ("yellow" if error < 0.3 else "red")


def _cell(error: float) -> str:
    return f"[{_style(error)}]{error:.3f}[/]"


def grid_tables(result: GridResult) -> list[Table]:
    """Match2: one table, rows ℓ, columns z. Induction heads: one table per z, rows ℓ1, columns ℓ2.

    Examples
    --------
    >>> from anna.experiments.evaluate import GridCell
    >>> r = GridResult("match2", "hyperplane", (GridCell((1,), 1, 0.5, 10), GridCell((2,), 1, 0.0, 10)), 0.0, 4)
    >>> [t.row_count for t in grid_tables(r)]
    [2]
    """
    errors = {(c.ells, c.z): c.error for c in result.cells}
    seeds = max(c.seeds for c in result.cells)
    title = f"{result.task}: test error with Algorithm 1 ({result.family}), mean of {seeds} hashing seeds"
    if len(result.cells[0].ells) == 1:
        table = Table(title=title)
        table.add_column("ℓ \\ z", justify="right")
        for z in result.zs:
            table.add_column(str(z), justify="right")
        for ell in result.layer_ells(0):
            table.add_row(str(ell), *(_cell(errors[((ell,), z)]) if ((ell,), z) in errors else "" for z in result.zs))
        return [table]
    tables = []
    ell1s, ell2s = result.layer_ells(0), result.layer_ells(1)
    for z in result.zs:
        table = Table(title=f"{title}, z = {z}")
        table.add_column("ℓ1 \\ ℓ2", justify="right")
        for ell2 in ell2s:
            table.add_column(str(ell2), justify="right")
        for ell1 in ell1s:
            table.add_row(str(ell1), *(_cell(errors[((ell1, ell2), z)]) if ((ell1, ell2), z) in errors else ""
                                       for ell2 in ell2s))
        tables.append(table)
    return tables


def paper_table(result: GridResult) -> Table:
    """The paper's headline numbers beside ours."""
    table = Table(title=f"{result.task}: the paper beside this run")
    table.add_column("quantity")
    table.add_column("paper", justify="right")
    table.add_column("ours", justify="right")
    for quantity, paper, ours in compare_with_paper(result):
        table.add_row(quantity, paper, ours)
    return table
