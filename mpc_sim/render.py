"""Tables for terminals and notebooks: numbers never cut, long tables elided in the middle.

Rich shrinks a table that does not fit the console by cutting cells (``4826…``) and, past a
point, by dropping whole columns. :func:`compact_table` avoids both for tables of numbers: a
one-character gap between columns (no outer border), numeric columns that never wrap and are
never narrower than their widest value; only text columns and headers wrap. :func:`elide`
keeps the first and last rows of a long table, and :func:`html_table` renders the same rows
for notebooks (``_repr_html_``).
"""
from __future__ import annotations

import html
from collections.abc import Sequence

from rich import box
from rich.table import Table
from rich.text import Text

__all__ = ["format_bytes", "compact_table", "elide", "html_table", "format_seconds", "ELIDED", "DEFAULT_MAX_ROWS"]

ELIDED = "⋮"
"""The cell of the row standing for the rows left out (not '…', which marks a cut number)."""
DEFAULT_MAX_ROWS = 20
"""Rows the CLI shows before eliding the middle of a table (``--all`` shows every row)."""


def elide(rows: Sequence, max_rows: int | None) -> tuple[list, int, int]:
    """The first and last ``max_rows // 2`` rows, the index where the gap is, and how many rows
    are left out (0 when everything fits or ``max_rows`` is None).

    Examples
    --------
    >>> elide(list(range(10)), 4)
    ([0, 1, 8, 9], 2, 6)
    >>> elide([1, 2], None)
    ([1, 2], 2, 0)
    """
    rows = list(rows)
    if max_rows is None or len(rows) <= max_rows:
        return rows, len(rows), 0
    if max_rows < 2:
        raise ValueError(f"max_rows must be >= 2 (or None for every row), got {max_rows}")
    head = (max_rows + 1) // 2
    tail = max_rows - head
    return rows[:head] + rows[len(rows) - tail:], head, len(rows) - head - tail


def _cell_width(cell: str) -> int:
    return Text.from_markup(cell).cell_len


def compact_table(title: str | None, headers: Sequence[str], rows: Sequence[Sequence[str]], *,
                  numeric: Sequence[bool] | None = None, max_rows: int | None = None,
                  what: str = "rows", caption: str | None = None, always: Sequence[Sequence[str]] = ()) -> Table:
    """A rich table whose numeric cells are never cut: they keep their full width and right
    alignment; text columns and headers wrap. With ``max_rows``, the middle of a longer table is
    replaced by one row of ``⋮`` and a caption saying how many ``what`` were left out; rows in
    ``always`` (totals, a final step) follow, never elided.

    Examples
    --------
    >>> from rich.console import Console
    >>> console = Console(width=30, record=True, file=open("/dev/null", "w"))
    >>> console.print(compact_table(None, ["round", "words"], [["1", "123456789"], ["2", "5"]]))
    >>> print(console.export_text())
    round     words
    ───────────────
        1 123456789
        2         5
    <BLANKLINE>
    """
    numeric = [True] * len(headers) if numeric is None else list(numeric)
    if len(numeric) != len(headers):
        raise ValueError(f"numeric has {len(numeric)} flags for {len(headers)} columns")
    shown, gap, hidden = elide(rows, max_rows)
    if hidden:
        shown = shown[:gap] + [[ELIDED] * len(headers)] + shown[gap:]
    shown = shown + [list(row) for row in always]
    if hidden:
        note = f"{hidden} {what} not shown (--all shows every row)"
        caption = note if caption is None else f"{caption}; {note}"
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, padding=(0, 0), pad_edge=False,
                  show_edge=False)
    for j, header in enumerate(headers):
        if numeric[j]:
            width = max((_cell_width(row[j]) for row in shown), default=1)
            table.add_column(header, justify="right", no_wrap=True, min_width=width)
        else:
            table.add_column(header, overflow="fold")
    for row in shown:
        table.add_row(*row)
    return table


def format_seconds(seconds: float) -> str:
    """A wall time in at most 7 characters: ``0.42ms``, ``48.3ms``, ``4.83s``, ``312s``.

    Examples
    --------
    >>> [format_seconds(t) for t in (0.00042, 0.0483, 4.826, 312.4)]
    ['0.42ms', '48.3ms', '4.83s', '312s']
    """
    if seconds < 0.01:
        return f"{1e3 * seconds:.2f}ms"
    if seconds < 1.0:
        return f"{1e3 * seconds:.1f}ms"
    if seconds < 100.0:
        return f"{seconds:.2f}s"
    return f"{seconds:.0f}s"


def html_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, caption: str | None = None,
               max_rows: int | None = None, what: str = "rows", highlight: set[tuple[int, int]] | None = None,
               always: int = 0) -> str:
    """The rows as an HTML table (escaped), the middle of a long table elided like the terminal's.

    ``highlight`` holds the (row, column) positions, in ``rows``, to show in red (over a limit);
    the last ``always`` rows are never elided.

    Examples
    --------
    >>> html_table(["a", "b"], [[1, "<x>"]])
    '<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td>1</td><td>&lt;x&gt;</td></tr></tbody></table>'
    """
    highlight = highlight or set()
    indexed = list(enumerate(rows))
    kept = indexed[len(indexed) - always:] if always else []
    shown, gap, hidden = elide(indexed[:len(indexed) - len(kept)], max_rows)
    shown = shown + kept
    parts = ["<table>"]
    if caption is not None or hidden:
        text = caption or ""
        if hidden:
            text = (text + "; " if text else "") + f"{hidden} {what} not shown"
        parts.append(f"<caption>{html.escape(text)}</caption>")
    parts.append("<thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in headers) + "</tr></thead><tbody>")
    for k, (i, row) in enumerate(shown):
        if hidden and k == gap:
            parts.append("<tr>" + "".join(f"<td>{ELIDED}</td>" for _ in headers) + "</tr>")
        cells = []
        for j, value in enumerate(row):
            style = ' style="color:#c00;font-weight:bold"' if (i, j) in highlight else ""
            cells.append(f"<td{style}>{html.escape(str(value))}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def format_bytes(amount: float) -> str:
    """A byte count for messages, in powers of 1024 with one decimal.

    Examples
    --------
    >>> format_bytes(400_000), format_bytes(3 * 2**50), format_bytes(512)
    ('390.6 KiB', '3.0 PiB', '512 bytes')
    """
    for unit, size in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if amount >= size:
            return f"{amount / size:.1f} {unit}"
    return f"{amount:.0f} bytes"
