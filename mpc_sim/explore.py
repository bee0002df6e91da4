"""A run as one self-contained HTML page (``anna-mpc explore``): no network needed to view it.

The page shows a round timeline (words moved per round; click a round or step with the buttons
or the arrow keys), the chosen round's numbers (its :class:`~mpc_sim.trace.RoundStats`),
per-machine strips of memory held at the round's start, words sent and words received (each
cell coloured by its fraction of ``s``), a who-talks-to-whom matrix of the words sent, and one
machine's memory and inbox at the round (click a strip or type its id). Clusters of more than
:data:`MAX_STRIP` machines are drawn in blocks of consecutive machines (strips show each
block's largest amount, the matrix the words between blocks), so the page stays small: at most
``3 * MAX_STRIP + 2 * MAX_MATRIX**2`` numbers per round (the matrix is kept as its non-zero
``[cell, words]`` pairs, cell ``row * matrix_cells + column``). Everything is drawn on
``<canvas>`` elements (one per strip, not one DOM node per machine), so stepping stays fast at
10^5 machines.

Machine contents are recorded only for the *watched* machines (``watch``; by default the first
:data:`DEFAULT_WATCH`), at most :data:`MAX_WATCH` of them: per round, the words a machine kept
from its previous local computation, its inbox (the messages delivered in the previous round,
with their sources) and the messages it sends (destination, words). The page says so when a
chosen machine was not recorded; a page served by :func:`serve_html` (``--serve``) asks the
server to record it on demand instead (:func:`record_contents` runs the protocol again, same
seed).

:func:`explore_data` measures everything from one run, round by round
(:meth:`~mpc_sim.simulator.Simulator.steps`); the numbers embedded in the page are those (tests
compare them with the trace, the recorded messages and the simulator's states, and drive the
page in a headless browser). :class:`Explorer` holds one page: it writes it, serves it on
localhost (:meth:`Explorer.serve`) and renders inside Jupyter (``_repr_html_``, the same page
in an ``<iframe>``). An optional ``compiled`` section (added by :mod:`reductions.explore`) draws
a compiled model's layers beside the rounds.
"""
from __future__ import annotations

import html
import json
import math
import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .config import MPCConfig
from .protocol import Protocol
from .simulator import Simulator

__all__ = ["explore_data", "explore_html", "write_explorer", "explore", "Explorer", "serve_html", "record_contents",
           "check_output_path", "check_watch", "MAX_STRIP", "MAX_MATRIX", "DEFAULT_WATCH", "MAX_WATCH"]

MAX_STRIP = 2000
"""Most cells of a per-machine strip; larger clusters are drawn in blocks of machines."""
MAX_MATRIX = 64
"""Most rows (and columns) of the who-talks-to-whom matrix."""
DEFAULT_WATCH = 8
"""Machines whose contents are recorded when no ``watch`` is given: the first ones."""
MAX_WATCH = 256
"""Most machines whose contents one page records (each adds up to ``3 s`` words per round)."""
_SAFE_INT = 2**53          # larger integers are embedded as strings: JavaScript numbers are doubles


def _block_max(values: np.ndarray, block: int) -> list[int]:
    pad = (-values.shape[0]) % block
    padded = np.concatenate([values, np.zeros(pad, dtype=values.dtype)])
    return padded.reshape(-1, block).max(axis=1).astype(np.int64).tolist()


def _words(words: np.ndarray) -> list:
    """Words as JSON values that JavaScript reads exactly (big integers, NaN and inf as strings)."""
    if words.dtype.kind == "f":
        return [w if math.isfinite(w) else str(w) for w in words.tolist()]
    return [w if -_SAFE_INT <= w <= _SAFE_INT else str(w) for w in words.tolist()]


def check_watch(watch: Sequence[int] | None, machines: int) -> list[int]:
    """The sorted distinct machine ids to record (default: the first :data:`DEFAULT_WATCH`);
    ``ValueError`` naming an id outside ``0 .. machines - 1`` or a list longer than :data:`MAX_WATCH`."""
    if watch is None:
        return list(range(min(DEFAULT_WATCH, machines)))
    ids = sorted({int(m) for m in watch})
    bad = [m for m in ids if not 0 <= m < machines]
    if bad:
        raise ValueError(f"machine {bad[0]} does not exist: the cluster has machines 0 .. {machines - 1}")
    if len(ids) > MAX_WATCH:
        raise ValueError(f"{len(ids)} machines to record, at most MAX_WATCH = {MAX_WATCH} per page")
    return ids


def _inbox(delivery, machine: int) -> list:
    """``[[source, [words]], ...]``: a machine's messages of one delivery, in inbox order."""
    return [[source, _words(payload)] for source, payload in delivery.inbox(machine)]


def _outbox(delivery, machine: int) -> list:
    """``[[destination, words], ...]``: the messages a machine sent in one delivery."""
    messages = delivery.messages
    mine = np.flatnonzero(messages.src == machine)
    return np.stack([messages.dst[mine], messages.offsets[mine + 1] - messages.offsets[mine]], axis=1).tolist()


class _Watcher:
    """The watched machines' kept words and inbox at the next round's start (copies: the
    simulator's arrays are valid only until the next step)."""

    def __init__(self, watched: list[int], initial) -> None:
        self.watched = watched
        self.kept = {m: _words(initial.memory(m)) for m in watched}
        self.inbox: dict[int, list] = {m: [] for m in watched}

    def take(self, step) -> dict:
        """This round's contents of every watched machine; then remembers the next round's."""
        out = {str(m): {"kept": self.kept[m], "inbox": self.inbox[m], "sent": _outbox(step.delivery, m)}
               for m in self.watched}
        self.kept = {m: _words(step.state.memory(m)) for m in self.watched}
        self.inbox = {m: _inbox(step.delivery, m) for m in self.watched}
        return out


def record_contents(protocol: Protocol, config: MPCConfig, data: object, machine: int, seed: int = 0) -> list[dict]:
    """One machine's contents at every round (what a page's ``watched`` holds for it), from a
    fresh run: what a served page asks for when a machine it did not record is chosen.

    Examples
    --------
    >>> from mpc_sim import make_protocol
    >>> protocol = make_protocol("prefix-sum")
    >>> config = protocol.default_config(64, 0.5)
    >>> data = protocol.generate_input(config, seed=0)
    >>> page = explore_data(protocol, config, data, watch=[3])
    >>> record_contents(protocol, config, data, 3) == [r["watched"]["3"] for r in page["rounds"]]
    True
    """
    watched = check_watch([machine], config.machines)
    watcher = _Watcher(watched, protocol.initial_state(config, protocol.validate_input(config, data)))
    return [watcher.take(step)[str(machine)] for step in Simulator(config).steps(protocol, data, seed=seed)
            if not step.final]


def explore_data(protocol: Protocol, config: MPCConfig, data: object, seed: int = 0,
                 watch: Sequence[int] | None = None) -> dict:
    """Run ``protocol`` round by round and gather what the page draws (per round: the stats,
    per-machine strips, the block matrix, the watched machines' contents; nothing else per
    message is kept).

    Examples
    --------
    >>> from mpc_sim import make_protocol
    >>> protocol = make_protocol("prefix-sum")
    >>> config = protocol.default_config(64, 0.5)
    >>> page = explore_data(protocol, config, protocol.generate_input(config, seed=0), watch=[3])
    >>> len(page["rounds"]) == page["num_rounds"], page["strip_block"], page["watch"]
    (True, 1, [3])
    >>> sorted(page["rounds"][0]["watched"]["3"])
    ['inbox', 'kept', 'sent']
    """
    machines = config.machines
    watched = check_watch(watch, machines)
    strip_block = max(1, math.ceil(machines / MAX_STRIP))
    matrix_block = max(1, math.ceil(machines / MAX_MATRIX))
    cells = math.ceil(machines / matrix_block)
    words = protocol.validate_input(config, data)
    initial = protocol.initial_state(config, words)
    holding = initial.sizes()
    watcher = _Watcher(watched, initial)
    del initial
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
            "watched": watcher.take(step),
        })
        holding = step.state.sizes() + received
    return {"protocol": protocol.name, "n": config.n, "eps": config.eps, "s": config.s, "machines": machines,
            "seed": seed, "num_rounds": trace.num_rounds, "rounds_bound": trace.rounds_bound, "mode": trace.mode,
            "strip_block": strip_block, "matrix_block": matrix_block, "matrix_cells": cells, "watch": watched,
            "summary": trace.summary(), "rounds": out_rounds}


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>__TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:16px;color:#222}
canvas{border:1px solid #ccc;display:block;margin:4px 0 12px}
canvas.strip{cursor:crosshair}
table.grid td,table.grid th{padding:2px 8px;text-align:right;vertical-align:top}
table.grid td.text{text-align:left;white-space:pre-line;font-family:monospace;font-size:12px}
button{margin-right:4px}
.label{font-size:13px;color:#555}
.words{font-family:monospace;font-size:12px;max-height:160px;overflow:auto;border:1px solid #eee;padding:4px;
  white-space:pre-wrap;word-break:break-all}
.missing{color:#a40}
tr.here{background:#fde8d0}
</style></head><body>
<h2>__TITLE__</h2><p class="label">__SUMMARY__</p>
<div><button id="prev">&larr; previous</button><button id="next">next &rarr;</button>
<span id="which"></span> <span class="label">(arrow keys step through rounds; click the timeline)</span></div>
<div class="label">round timeline: words moved per round</div><canvas id="timeline" width="900" height="80"></canvas>
<table id="numbers" class="grid"></table>
<div class="label" id="striplabel"></div>
<div class="label">memory held at the round's start</div><canvas id="memory" class="strip" width="900" height="24"></canvas>
<div class="label">words sent</div><canvas id="sent" class="strip" width="900" height="24"></canvas>
<div class="label">words received</div><canvas id="received" class="strip" width="900" height="24"></canvas>
<h3>One machine <span class="label">(click a strip, or type an id)</span></h3>
<div><input id="machine-id" type="number" min="0" size="8"> <button id="machine-show">show</button>
<span class="label" id="watchlabel"></span></div>
<div id="machine"></div>
<div class="label" id="matrixlabel"></div><canvas id="matrix" width="384" height="384"></canvas>
<div id="compiled"></div>
<script id="data" type="application/json">__DATA__</script>
<script>
const D = JSON.parse(document.getElementById("data").textContent);
let current = 0, selected = D.watch.length ? D.watch[0] : 0;
const $ = id => document.getElementById(id);
function esc(t){ return String(t).replace(/[&<>"]/g, c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c])); }
function colour(f){ if(f<=0) return "#fff"; if(f>1) return "#d00"; const v=Math.round(230-200*f); return `rgb(${v},${v},255)`; }
function strip(id, values){ const c=$(id), g=c.getContext("2d"); g.clearRect(0,0,c.width,c.height);
  const w=c.width/values.length; values.forEach((v,i)=>{ if(v>0){ g.fillStyle=colour(v/D.s); g.fillRect(i*w,0,Math.max(w,1),c.height); } });
  if(Math.floor(selected/D.strip_block)<values.length){ g.strokeStyle="#d60"; g.lineWidth=2;
    g.strokeRect(Math.floor(selected/D.strip_block)*w,1,Math.max(w,2),c.height-2); } }
function timeline(){ const c=$("timeline"), g=c.getContext("2d"); g.clearRect(0,0,c.width,c.height);
  const top=Math.max(1,...D.rounds.map(r=>r.total_words)), w=c.width/Math.max(1,D.rounds.length);
  D.rounds.forEach((r,i)=>{ const h=(c.height-4)*r.total_words/top; g.fillStyle=i===current?"#d60":"#88a";
    g.fillRect(i*w,c.height-h,Math.max(w-1,1),h); }); }
function matrix(cells){ const c=$("matrix"), g=c.getContext("2d"), n=D.matrix_cells;
  g.clearRect(0,0,c.width,c.height); let top=1; for(const p of cells) if(p[1]>top) top=p[1]; const w=c.width/n;
  cells.forEach(([k,v])=>{ g.fillStyle=colour(0.15+0.85*v/top); g.fillRect((k%n)*w,Math.floor(k/n)*w,Math.max(w,1),Math.max(w,1)); }); }
function messages(list, what){ return list.length ? list.map(([m,x])=>`${what} ${m}: ${Array.isArray(x)?
  `${x.length} words [${x.join(" ")}]`:`${x} words`}`).join("\\n") : "(none)"; }
function machine(){ const r=D.rounds[current], m=selected, b=D.strip_block, cell=Math.floor(m/b);
  const scope = b>1 ? ` (largest in block ${cell*b} .. ${Math.min(D.machines,(cell+1)*b)-1})` : "";
  let out=`<div id="machine-title"><b>machine ${m}</b> at round ${r.round}</div><table class="grid"><tr><th>memory at start</th>`+
    `<th>words sent</th><th>words received</th></tr><tr><td data-key="memory">${r.memory[cell]}</td><td data-key="sent">`+
    `${r.sent[cell]}</td><td data-key="received">${r.received[cell]}</td></tr></table><div class="label">${esc(scope)}</div>`;
  const w=r.watched[String(m)];
  if(w===undefined && served && asked[m]===undefined){ asked[m]=record(m);
    out+=`<p class="label" id="machine-recording">recording machine ${m} on demand (the server runs the protocol again)...</p>`; }
  else if(w===undefined && asked[m] instanceof Promise){ out+=`<p class="label" id="machine-recording">recording machine ${m}...</p>`; }
  else if(w===undefined){ out+=`<p class="missing" id="machine-missing">The memory and inbox of machine ${m} were not recorded `+
    `(recorded: ${D.watch.length?D.watch.join(", "):"none"}); run again with --watch ${m} (or watch=[${m}])`+
    `${served?"; the server could not record it":""}.</p>`; }
  else { const inboxWords=w.inbox.reduce((a,[s,x])=>a+x.length,0);
    out+=`<div class="label">kept from the previous round: <span data-key="kept-count">${w.kept.length}</span> words</div>`+
      `<div class="words" id="machine-kept">${esc(w.kept.join(" "))}</div>`+
      `<div class="label">inbox (delivered by the previous round): <span data-key="inbox-count">${w.inbox.length}</span> messages, `+
      `<span data-key="inbox-words">${inboxWords}</span> words</div><div class="words" id="machine-inbox">${esc(messages(w.inbox,"from"))}</div>`+
      `<div class="label">sends this round: <span data-key="outbox-count">${w.sent.length}</span> messages</div>`+
      `<div class="words" id="machine-outbox">${esc(messages(w.sent,"to"))}</div>`; }
  $("machine").innerHTML=out; }
const served = location.protocol==="http:" || location.protocol==="https:", asked = {};
async function record(m){ let ok=false;
  try { const reply=await fetch(`contents?machine=${m}`); if(reply.ok){ const got=await reply.json();
      got.rounds.forEach((w,i)=>{ D.rounds[i].watched[String(m)]=w; }); D.watch.push(m); D.watch.sort((a,b)=>a-b); ok=true; } }
  catch(e) {}
  asked[m]=ok; if(selected===m) show(current); }
function compiled(){ const C=D.compiled; if(!C) return; const r=D.rounds[current].round;
  const rows=C.layers.filter(l=>l[1]===r).map(l=>`<tr><td>${l[0]}</td><td>${l[1]}${C.layers_per_round>1?"."+l[2]:""}</td>`+
    `<td class="text">${esc(l[3])}</td><td class="text">${esc(l[4])}</td></tr>`).join("");
  const last=r===D.rounds[D.rounds.length-1].round;
  const al=C.alignment.filter(a=>a[1]===r||(last&&a[1]===r+1)).map(a=>(a[0]>=C.depth?"after the last layer":
    `entering layer ${a[0]}`)+`: <span data-key="aligned">${a[2]}</span> of ${D.machines} tokens equal the machines' `+
    `memory after step ${a[1]}'s local computation`+(a[3]===null?"":` (first divergence: machine ${a[3]})`)).join("<br>");
  $("compiled-round").innerHTML=`<div class="label" id="compiled-alignment">${al||"no alignment row for this round"}</div>`+
    `<table class="grid" id="compiled-layers"><tr><th>layer</th><th>round</th><th>heads</th><th>mlp</th></tr>${rows}</table>`; }
function compiledStatic(){ const C=D.compiled; if(!C) return;
  let out=`<h3>Compiled model</h3><p class="label">${esc(C.summary)}</p><div class="label">layers that simulate the chosen round</div>`+
    `<div id="compiled-round"></div>`;
  const X=C.collisions;
  if(X){ out+=`<h3>ANNA heads of layer ${X.layer}: keys colliding with query token ${X.query}</h3>`+
      `<table class="grid" id="collisions"><tr><th>head</th><th>tables</th><th>keys</th><th>(table, key) collisions</th>`+
      `<th>key token: tables where it shares the query's code</th></tr>`+X.heads.map(h=>`<tr data-head="${h.head}"><td>${h.head}</td>`+
      `<td>${h.tables}</td><td data-key="keys">${h.keys.length+h.more_keys}</td><td data-key="total">${h.total}</td>`+
      `<td class="text">${esc(h.keys.map(([k,t])=>`${k}: ${t.join(" ")}`).join("\\n")+(h.more_keys?`\\n... and ${h.more_keys} `+
      `more keys (not embedded)`:"")||"(none)")}</td></tr>`).join("")+`</table>`; }
  $("compiled").innerHTML=out; }
function show(i){ if(!D.rounds.length) return; current=Math.max(0,Math.min(D.rounds.length-1,i)); const r=D.rounds[current];
  $("which").textContent=`round ${r.round} of ${D.num_rounds}`;
  const keys=["round","max_memory","mean_memory","max_sent","max_received","total_words","messages","active_machines"];
  $("numbers").innerHTML="<tr>"+keys.map(k=>`<th>${k.replace("_"," ")}</th>`).join("")+"</tr><tr>"+
    keys.map(k=>`<td data-key="${k}">${k==="mean_memory"?r[k].toFixed(1):r[k]}</td>`).join("")+"</tr>";
  strip("memory",r.memory); strip("sent",r.sent); strip("received",r.received); matrix(r.matrix); timeline();
  $("watchlabel").textContent = `contents recorded for machines ${D.watch.length?D.watch.join(", "):"(none)"}`+
    (served?" (others are recorded on demand)":"");
  machine(); compiled(); }
function select(m){ m=Math.floor(Number(m)); if(!(m>=0 && m<D.machines)){
    $("machine").innerHTML=`<p class="missing" id="machine-missing">no machine ${esc(m)}: ids run from 0 to ${D.machines-1}</p>`; return; }
  selected=m; $("machine-id").value=m; show(current); }
$("striplabel").textContent = D.strip_block>1 ?
  `${D.machines} machines in blocks of ${D.strip_block} (each cell: the block's largest amount; red: over s = ${D.s})` :
  `${D.machines} machines, one cell each (red: over s = ${D.s})`;
$("matrixlabel").textContent = `who talks to whom: words sent from row to column` +
  (D.matrix_block>1 ? ` (blocks of ${D.matrix_block} machines)` : "");
$("prev").onclick=()=>show(current-1);
$("next").onclick=()=>show(current+1);
$("machine-show").onclick=()=>select($("machine-id").value);
$("machine-id").addEventListener("keydown",e=>{ if(e.key==="Enter") select($("machine-id").value); });
document.addEventListener("keydown",e=>{ if(e.target.tagName==="INPUT") return;
  if(e.key==="ArrowLeft") show(current-1); if(e.key==="ArrowRight") show(current+1); });
$("timeline").onclick=e=>{ const c=e.target, x=e.offsetX*c.width/c.clientWidth;
  show(Math.floor(x/(c.width/Math.max(1,D.rounds.length)))); };
for(const id of ["memory","sent","received"]) $(id).onclick=e=>{ const c=e.target, x=e.offsetX*c.width/c.clientWidth;
  const cells=D.rounds[current][id].length; select(Math.min(cells-1,Math.floor(x*cells/c.width))*D.strip_block); };
compiledStatic();
$("machine-id").value=selected;
show(__START__);
window.explorerReadyMs = performance.now();
</script></body></html>
"""


def explore_html(page: dict, start_round: int = 1) -> str:
    """The page for :func:`explore_data`'s ``page``, opened at ``start_round`` (1-based)."""
    title = f"{page['protocol']}: n = {page['n']}, s = {page['s']}, machines = {page['machines']}"
    data = json.dumps(page, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return (_PAGE.replace("__TITLE__", html.escape(title)).replace("__SUMMARY__", html.escape(page["summary"]))
            .replace("__START__", str(max(0, start_round - 1))).replace("__DATA__", data))


def check_round(start_round: int, protocol: Protocol, config: MPCConfig) -> None:
    """``ValueError`` unless ``start_round`` is within ``1 .. rounds_bound`` (before any run)."""
    bound = int(protocol.rounds_bound(config))
    if start_round < 1 or start_round > max(bound, 1):
        raise ValueError(f"round {start_round} does not exist: {protocol.name} runs at most {bound} rounds here")


def _check_run_round(start_round: int, page: dict) -> None:
    if start_round > max(page["num_rounds"], 1):
        raise ValueError(f"round {start_round} does not exist: this run of {page['protocol']} has "
                         f"{page['num_rounds']} rounds")


@dataclass(frozen=True, eq=False)
class Explorer:
    """One explorer page: the data :func:`explore_data` gathered (plus optional sections) and the
    round it opens at. ``html()`` is the page; it renders in Jupyter as that page in an iframe.

    Examples
    --------
    >>> from mpc_sim import make_protocol
    >>> protocol = make_protocol("prefix-sum")
    >>> config = protocol.default_config(64, 0.5)
    >>> view = explore(protocol, config, protocol.generate_input(config, seed=0))
    >>> view.num_rounds == view.page["num_rounds"], view._repr_html_().startswith("<iframe")
    (True, True)
    """

    page: dict
    start_round: int = 1
    height: int = field(default=1100, repr=False)
    contents: Callable[[int], list[dict]] | None = field(default=None, repr=False)
    """Records a machine that the page did not, on demand (:func:`record_contents` of the run)."""

    def __post_init__(self) -> None:
        _check_run_round(self.start_round, self.page)
        if self.start_round < 1:
            raise ValueError(f"round {self.start_round} does not exist: rounds start at 1")

    @property
    def num_rounds(self) -> int:
        return int(self.page["num_rounds"])

    def html(self) -> str:
        """The self-contained page (:func:`explore_html`)."""
        return explore_html(self.page, self.start_round)

    def write(self, path: str | Path) -> Path:
        """Write the page to ``path`` (checked first: ``ValueError`` if it cannot be written)."""
        path = Path(path)
        check_output_path(path)
        path.write_text(self.html())
        return path

    def serve(self, port: int = 0) -> tuple[ThreadingHTTPServer, str]:
        """Serve the page on ``127.0.0.1`` from a background thread (see :func:`serve_html`);
        machines the page did not record are recorded on demand when ``contents`` is set."""
        return serve_html(self.html(), port, self.contents)

    def _repr_html_(self) -> str:
        # an iframe keeps the page's ids, styles and arrow keys apart from the notebook's
        return (f'<iframe srcdoc="{html.escape(self.html(), quote=True)}" style="width:100%;height:{self.height}px;'
                f'border:1px solid #ddd" title="explorer"></iframe>')


def explore(protocol: Protocol, config: MPCConfig, data: object, *, seed: int = 0, watch: Sequence[int] | None = None,
            start_round: int = 1) -> Explorer:
    """Run ``protocol`` and return its :class:`Explorer` (display it in a notebook, ``write`` or
    ``serve`` it: a served page records unwatched machines on demand). ``start_round`` and
    ``watch`` are checked before the run: ``ValueError``."""
    check_round(start_round, protocol, config)
    check_watch(watch, config.machines)
    page = explore_data(protocol, config, data, seed=seed, watch=watch)
    return Explorer(page, start_round, contents=lambda machine: record_contents(protocol, config, data, machine, seed))


def write_explorer(path: str | Path, protocol: Protocol, config: MPCConfig, data: object, *, seed: int = 0,
                   start_round: int = 1, watch: Sequence[int] | None = None,
                   extend: Callable[[dict], None] | None = None) -> dict:
    """Run, and write the page to ``path``; returns the page's data. ``path`` must be writable,
    ``watch`` machines that exist and ``start_round`` one the run has (checked against
    ``rounds_bound`` before the run, and against the rounds run before writing): ``ValueError``
    otherwise. ``extend(page)`` may add sections (``page["compiled"]``) before the page is written."""
    path = Path(path)
    check_output_path(path)
    check_round(start_round, protocol, config)
    check_watch(watch, config.machines)
    page = explore_data(protocol, config, data, seed=seed, watch=watch)
    _check_run_round(start_round, page)
    if extend is not None:
        extend(page)
    path.write_text(explore_html(page, start_round))
    return page


def serve_html(text: str, port: int = 0,
               contents: Callable[[int], list[dict]] | None = None) -> tuple[ThreadingHTTPServer, str]:
    """Serve ``text`` at ``/`` on ``127.0.0.1:port`` (0: a free port) from a daemon thread;
    returns the server (``shutdown()`` stops it) and its URL. With ``contents`` (a machine id
    -> its contents per round, :func:`record_contents`), ``/contents?machine=M`` answers them as
    JSON: the page asks for it when a machine it did not record is chosen."""
    body = text.encode("utf-8")
    lock = threading.Lock()         # one re-run at a time

    class Page(BaseHTTPRequestHandler):
        def _reply(self, status: int, kind: str, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (the http.server name)
            path, _, query = self.path.partition("?")
            if path in ("/", "/index.html"):
                self._reply(200, "text/html; charset=utf-8", body)
            elif path == "/contents" and contents is not None:
                try:
                    machine = int(parse_qs(query)["machine"][0])
                    with lock:
                        rounds = contents(machine)
                except (KeyError, ValueError) as exc:
                    self._reply(400, "text/plain; charset=utf-8", f"bad machine: {exc}".encode())
                    return
                reply = {"machine": machine, "rounds": rounds}
                self._reply(200, "application/json", json.dumps(reply, allow_nan=False).encode())
            else:
                self.send_error(404, "only / (and /contents when recording on demand) is served")

        def log_message(self, format: str, *args) -> None:   # quiet: the CLI prints the URL once
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def check_output_path(path: Path) -> None:
    """``ValueError`` unless ``path`` can be written (its folder exists and is writable)."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not an HTML file path")
    if not folder.is_dir():
        raise ValueError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"cannot write {path}: permission denied")
