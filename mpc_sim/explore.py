"""A run as one self-contained HTML page (``anna-mpc explore``): no network needed to view it.

The page shows a round timeline (words moved per round; click a round or step with the buttons
or the arrow keys), the chosen round's numbers (its :class:`~mpc_sim.trace.RoundStats`),
per-machine strips of memory held at the round's start, words sent and words received (each
cell coloured by its fraction of ``s``), and a who-talks-to-whom matrix of the words sent.
Clusters of more than :data:`MAX_STRIP` machines are drawn in blocks of consecutive machines
(strips show each block's largest amount, the matrix the words between blocks), so the page
stays small: at most ``3 * MAX_STRIP + 2 * MAX_MATRIX**2`` numbers per round (the matrix is
kept as its non-zero ``[cell, words]`` pairs, cell ``row * matrix_cells + column``).

:func:`explore_data` measures everything from one run, round by round
(:meth:`~mpc_sim.simulator.Simulator.steps`); the numbers embedded in the page are those (tests
compare them with the trace and with recorded messages).
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

from .config import MPCConfig
from .protocol import Protocol
from .simulator import Simulator

__all__ = ["explore_data", "explore_html", "write_explorer", "MAX_STRIP", "MAX_MATRIX"]

MAX_STRIP = 2000
"""Most cells of a per-machine strip; larger clusters are drawn in blocks of machines."""
MAX_MATRIX = 64
"""Most rows (and columns) of the who-talks-to-whom matrix."""


def _block_max(values: np.ndarray, block: int) -> list[int]:
    pad = (-values.shape[0]) % block
    padded = np.concatenate([values, np.zeros(pad, dtype=values.dtype)])
    return padded.reshape(-1, block).max(axis=1).astype(np.int64).tolist()


def explore_data(protocol: Protocol, config: MPCConfig, data: object, seed: int = 0) -> dict:
    """Run ``protocol`` round by round and gather what the page draws (per round: the stats,
    per-machine strips, the block matrix; no message is kept).

    Examples
    --------
    >>> from mpc_sim import make_protocol
    >>> protocol = make_protocol("prefix-sum")
    >>> config = protocol.default_config(64, 0.5)
    >>> page = explore_data(protocol, config, protocol.generate_input(config, seed=0))
    >>> len(page["rounds"]) == page["num_rounds"], page["strip_block"]
    (True, 1)
    """
    machines = config.machines
    strip_block = max(1, math.ceil(machines / MAX_STRIP))
    matrix_block = max(1, math.ceil(machines / MAX_MATRIX))
    cells = math.ceil(machines / matrix_block)
    words = protocol.validate_input(config, data)
    holding = protocol.initial_state(config, words).sizes()
    out_rounds = []
    trace = None
    # aggregated round by round from each delivery: nothing per message is kept
    for step in Simulator(config).steps(protocol, data, seed=seed):
        if step.final:
            trace = step.result.trace
            break
        delivered = step.delivery.messages
        lengths = delivered.lengths()
        sent = np.bincount(delivered.src, weights=lengths, minlength=machines).astype(np.int64)
        received = step.delivery.words_per_machine()
        matrix = np.bincount((delivered.src // matrix_block) * cells + delivered.dst // matrix_block, weights=lengths,
                             minlength=cells * cells).astype(np.int64)
        stats = step.stats
        out_rounds.append({
            "round": stats.round, "max_memory": stats.max_memory, "mean_memory": stats.mean_memory,
            "max_sent": stats.max_sent, "max_received": stats.max_received, "total_words": stats.total_words,
            "messages": stats.messages, "active_machines": stats.active_machines,
            "memory": _block_max(holding, strip_block), "sent": _block_max(sent, strip_block),
            "received": _block_max(received, strip_block),
            "matrix": np.stack([np.flatnonzero(matrix), matrix[matrix > 0]], axis=1).tolist(),   # [cell, words]
        })
        holding = step.state.sizes() + received
    return {"protocol": protocol.name, "n": config.n, "eps": config.eps, "s": config.s, "machines": machines,
            "seed": seed, "num_rounds": trace.num_rounds, "rounds_bound": trace.rounds_bound, "mode": trace.mode,
            "strip_block": strip_block, "matrix_block": matrix_block, "matrix_cells": cells,
            "summary": trace.summary(), "rounds": out_rounds}


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:16px;color:#222}
canvas{border:1px solid #ccc;display:block;margin:4px 0 12px}
#numbers td,#numbers th{padding:2px 8px;text-align:right}
button{margin-right:4px}
.label{font-size:13px;color:#555}
</style></head><body>
<h2>__TITLE__</h2><p class="label">__SUMMARY__</p>
<div><button id="prev">&larr; previous</button><button id="next">next &rarr;</button>
<span id="which"></span> <span class="label">(arrow keys step through rounds; click the timeline)</span></div>
<div class="label">round timeline: words moved per round</div><canvas id="timeline" width="900" height="80"></canvas>
<table id="numbers"></table>
<div class="label" id="striplabel"></div>
<div class="label">memory held at the round's start</div><canvas id="memory" width="900" height="24"></canvas>
<div class="label">words sent</div><canvas id="sent" width="900" height="24"></canvas>
<div class="label">words received</div><canvas id="received" width="900" height="24"></canvas>
<div class="label" id="matrixlabel"></div><canvas id="matrix" width="384" height="384"></canvas>
<script id="data" type="application/json">__DATA__</script>
<script>
const D = JSON.parse(document.getElementById("data").textContent);
let current = 0;
function colour(f){ if(f<=0) return "#fff"; if(f>1) return "#d00"; const v=Math.round(230-200*f); return `rgb(${v},${v},255)`; }
function strip(id, values){ const c=document.getElementById(id), g=c.getContext("2d"); g.clearRect(0,0,c.width,c.height);
  const w=c.width/values.length; values.forEach((v,i)=>{ g.fillStyle=colour(v/D.s); g.fillRect(i*w,0,Math.max(w,1),c.height); }); }
function timeline(){ const c=document.getElementById("timeline"), g=c.getContext("2d"); g.clearRect(0,0,c.width,c.height);
  const top=Math.max(1,...D.rounds.map(r=>r.total_words)), w=c.width/Math.max(1,D.rounds.length);
  D.rounds.forEach((r,i)=>{ const h=(c.height-4)*r.total_words/top; g.fillStyle=i===current?"#d60":"#88a";
    g.fillRect(i*w,c.height-h,Math.max(w-1,1),h); }); }
function matrix(cells){ const c=document.getElementById("matrix"), g=c.getContext("2d"), n=D.matrix_cells;
  g.clearRect(0,0,c.width,c.height); const top=Math.max(1,...cells.map(p=>p[1])), w=c.width/n;
  cells.forEach(([k,v])=>{ g.fillStyle=colour(0.15+0.85*v/top); g.fillRect((k%n)*w,Math.floor(k/n)*w,Math.max(w,1),Math.max(w,1)); }); }
function show(i){ if(!D.rounds.length) return; current=Math.max(0,Math.min(D.rounds.length-1,i)); const r=D.rounds[current];
  document.getElementById("which").textContent=`round ${r.round} of ${D.num_rounds}`;
  const keys=["round","max_memory","mean_memory","max_sent","max_received","total_words","messages","active_machines"];
  document.getElementById("numbers").innerHTML="<tr>"+keys.map(k=>`<th>${k.replace("_"," ")}</th>`).join("")+"</tr><tr>"+
    keys.map(k=>`<td data-key="${k}">${k==="mean_memory"?r[k].toFixed(1):r[k]}</td>`).join("")+"</tr>";
  strip("memory",r.memory); strip("sent",r.sent); strip("received",r.received); matrix(r.matrix); timeline(); }
document.getElementById("striplabel").textContent = D.strip_block>1 ?
  `${D.machines} machines in blocks of ${D.strip_block} (each cell: the block's largest amount; red: over s = ${D.s})` :
  `${D.machines} machines, one cell each (red: over s = ${D.s})`;
document.getElementById("matrixlabel").textContent = `who talks to whom: words sent from row to column` +
  (D.matrix_block>1 ? ` (blocks of ${D.matrix_block} machines)` : "");
document.getElementById("prev").onclick=()=>show(current-1);
document.getElementById("next").onclick=()=>show(current+1);
document.addEventListener("keydown",e=>{ if(e.key==="ArrowLeft") show(current-1); if(e.key==="ArrowRight") show(current+1); });
document.getElementById("timeline").onclick=e=>{ const c=e.target, x=e.offsetX*c.width/c.clientWidth;
  show(Math.floor(x/(c.width/Math.max(1,D.rounds.length)))); };
show(__START__);
</script></body></html>
"""


def explore_html(page: dict, start_round: int = 1) -> str:
    """The page for :func:`explore_data`'s ``page``, opened at ``start_round`` (1-based)."""
    title = f"{page['protocol']}: n = {page['n']}, s = {page['s']}, machines = {page['machines']}"
    data = json.dumps(page, separators=(",", ":")).replace("</", "<\\/")
    return (_PAGE.replace("__TITLE__", html.escape(title)).replace("__SUMMARY__", html.escape(page["summary"]))
            .replace("__START__", str(max(0, start_round - 1))).replace("__DATA__", data))


def write_explorer(path: str | Path, protocol: Protocol, config: MPCConfig, data: object, *, seed: int = 0,
                   start_round: int = 1) -> dict:
    """Run, and write the page to ``path``; returns the page's data. ``path`` must be writable
    and ``start_round`` one the run has (checked against ``rounds_bound`` before the run, and
    against the rounds run before writing): ``ValueError`` otherwise."""
    path = Path(path)
    check_output_path(path)
    bound = int(protocol.rounds_bound(config))
    if start_round < 1 or start_round > max(bound, 1):
        raise ValueError(f"round {start_round} does not exist: {protocol.name} runs at most {bound} rounds here")
    page = explore_data(protocol, config, data, seed=seed)
    if start_round > max(page["num_rounds"], 1):
        raise ValueError(f"round {start_round} does not exist: this run of {protocol.name} has "
                         f"{page['num_rounds']} rounds")
    path.write_text(explore_html(page, start_round))
    return page


def check_output_path(path: Path) -> None:
    """``ValueError`` unless ``path`` can be written (its folder exists and is writable)."""
    import os
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not an HTML file path")
    if not folder.is_dir():
        raise ValueError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"cannot write {path}: permission denied")
