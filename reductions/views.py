"""Views of a compiled model: named residual-stream dimensions, a layer listing, notebook HTML.

:func:`stream_names` names every dimension of a compiled model's residual stream after what the
compiler stores there (as tracr names its residual basis): the machine fields of a token
(``machine``, ``halted``, ``sent``, ``memory[3].limb1``, ``outbox[0].dst``, ``inbox[2].src``, ...),
the packet slots of each routing head's output (``route0.copy1.cell5.src`` for the hashed layout,
``route0.slot3.word[2]`` for the disjunct one) and the global head's flag. :func:`layer_rows`
lists the layers with their named maps; :class:`~reductions.compile.CompiledModel` shows them
with ``show()`` and ``_repr_html_``.
"""
from __future__ import annotations

import re

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table

from anna.transformer.maps import describe_map
from mpc_sim.render import compact_table, html_table

from .compile.layouts import LIMBS

__all__ = ["stream_names", "layer_rows", "model_view", "model_html", "column_range"]

_INDEX = re.compile(r"\[\d+\]")
_ROUTE = re.compile(r"route\d+")


def _limbs(prefix: str, words: int) -> list[str]:
    return [f"{prefix}[{w}].limb{limb}" for w in range(words) for limb in range(LIMBS)]


def _packet_names(layout, head: int) -> list[str]:
    """Names of the ``layout.width`` columns of routing head ``head``'s output: slot, then field."""
    return [f"route{head}.{slot}.{field}" for slot in layout.slot_names() for field in layout.packet_fields()]


def stream_names(model) -> list[str]:
    """One name per dimension of the model's residual stream (``len == model.stream.dim``).

    Examples
    --------
    >>> from mpc_sim import MPCConfig
    >>> from mpc_sim.protocols.aggregate import Aggregate
    >>> from reductions.compile import compile_mpc
    >>> model = compile_mpc(Aggregate(op="sum"), MPCConfig(n=16, eps=0.5))
    >>> names = stream_names(model)
    >>> len(names) == model.stream.dim, names[:4], names[model.stream.outbox_at + 1]
    (True, ['machine', 'halted', 'sent', 'memory.length'], 'outbox[0].dst')
    """
    stream, layout = model.stream, model.layout
    s, fanout = stream.s, stream.fanout
    names = ["machine", "halted", "sent", "memory.length"] + _limbs("memory", s)
    names += ["outbox.count"] + [f"outbox[{j}].{f}" for j in range(fanout) for f in ("dst", "length")]
    names += _limbs("outbox.words", s)
    names += ["inbox.count"] + [f"inbox[{j}].{f}" for j in range(s) for f in ("src", "index", "length")]
    names += _limbs("inbox.words", s)
    for head in range(stream.heads):
        names += _packet_names(layout, head)
    names.append("global.anyone_sends")
    if len(names) != stream.dim:
        raise AssertionError(f"named {len(names)} stream dimensions, the stream has {stream.dim}")
    return names


def column_range(names: list[str], start: int, width: int) -> str:
    """``names[start]..names[start + width - 1]`` (one name when ``width == 1``)."""
    if width <= 1:
        return names[start]
    return f"{names[start]} .. {names[start + width - 1]}"


def layer_rows(model) -> list[list[str]]:
    """One row per layer: layer, the round it simulates (sub-layer), heads with their maps and
    the stream columns they write (heads alike but for their index share a line: ``[i]`` is the
    head's outbox message, ``route{h}`` its output region), the MLP."""
    names = stream_names(model)
    rows = []
    for index, layer in enumerate(model.transformer.layers):
        round_, sub = model.plan.round_of_layer(index)
        groups: list[list] = []          # consecutive heads alike but for their index: [first, last, text]
        for h, head in enumerate(layer.heads):
            maps = ", ".join(f"{k}={describe_map(f).removeprefix('callable ')}" for k, f in head.maps.items()
                             if k in ("query", "key", "value"))
            out = head.output
            where = column_range(names, out.start, out.width) if hasattr(out, "start") else describe_map(out)
            text = _INDEX.sub("[i]", _ROUTE.sub("route{h}", f"{head.kind}: {maps} -> {where}"))
            if groups and groups[-1][2] == text:
                groups[-1][1] = h
            else:
                groups.append([h, h, text])
        heads = [(f"{first}" if first == last else f"{first}-{last}") + f" {text}" for first, last, text in groups]
        mlp = describe_map(layer.mlp).removeprefix("callable ") if layer.mlp is not None else "-"
        rows.append([str(index), f"{round_}" + (f".{sub}" if model.plan.layers_per_round > 1 else ""),
                     "\n".join(heads), mlp])
    return rows


def model_view(model, max_rows: int | None = None) -> Group:
    """The report and the layer listing, for a terminal."""
    listing = compact_table(f"layers of the compiled {model.plan.protocol} (stream d = {model.stream.dim})",
                            ["layer", "round", "heads: kind, maps -> stream columns", "mlp"],
                            [[escape(cell) for cell in row] for row in layer_rows(model)],
                            numeric=[True, True, False, False], max_rows=max_rows, what="layers")
    embed = describe_map(model.transformer.embedding).removeprefix("callable ")
    readout = describe_map(model.transformer.readout).removeprefix("callable ")
    ends = Table.grid(padding=(0, 1))
    ends.add_row("embedding:", escape(embed))
    ends.add_row("readout:", escape(readout))
    return Group(model.report.table(), listing, ends)


def model_html(model, max_rows: int | None = 40) -> str:
    """The report and the layer listing as HTML (a notebook's view of a compiled model)."""
    import html
    report = model.report.to_dict()
    rows = layer_rows(model)
    header = (f"{model.plan.protocol}: {report['rounds']} rounds -> {report['depth']} layers, "
              f"{report['heads_per_layer']} heads per layer, width {report['width']}, stream d = {report['model_dim']}")
    return (f"<div><b>CompiledModel</b> of {html.escape(header)}"
            + html_table(["quantity", "value"], [[k, v] for k, v in report.items()])
            + html_table(["layer", "round", "heads", "mlp"], rows, max_rows=max_rows, what="layers") + "</div>")


def show(model, console: Console | None = None, max_rows: int | None = None) -> None:
    """Print :func:`model_view` (on a new console by default)."""
    (console or Console()).print(model_view(model, max_rows=max_rows))
