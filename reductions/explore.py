"""``anna-mpc explore --compile``: the compiled model's layers beside the simulator's rounds.

:func:`compiled_section` adds to an explorer page (:mod:`mpc_sim.explore`) the layers that
simulate each round (with their named maps, :func:`reductions.views.layer_rows`), the
layer/round alignment that :meth:`~reductions.compile.CompiledModel.align` measures (how many
tokens equal the machines' memory entering each round's layers), and, for a model whose heads
are ANNA heads, :func:`head_collisions`: which keys collided with one chosen query in which LSH
tables (recomputed from the head's own queries, keys and hashing seed; tests check it against
:func:`anna.collision_counts` and the forward pass's collision counts).
"""
from __future__ import annotations

import argparse

import numpy as np
from rich.console import Console

from anna.lsh import LSHConfig
from anna.reference import normalize_rows
from anna.transformer.maps import apply_map
from mpc_sim import MPCConfig, Protocol
from mpc_sim import cli as mpc_cli

from .compile import ATTENTIONS, CompileError, compile_mpc
from .views import layer_rows

__all__ = ["compiled_section", "head_collisions", "register", "cmd_explore", "MAX_KEYS"]

MAX_KEYS = 64
"""Most colliding keys a page lists per head (the count of the others is shown)."""


def head_collisions(model, run, layer: int, head: int, query: int) -> dict:
    """The keys sharing a code with token ``query``'s query in each LSH table of ANNA head
    ``head`` of layer ``layer`` during ``run`` (a :class:`~reductions.compile.CompiledRun`).

    Returns ``{"layer", "head", "query", "tables", "keys": [[key, [tables]], ...], "total"}``,
    ``total`` being the number of (table, key) collisions (the forward pass's count).

    Examples
    --------
    >>> from mpc_sim import make_protocol
    >>> from reductions.compile import compile_mpc
    >>> protocol = make_protocol("aggregate", op="sum")
    >>> config = protocol.default_config(16, 0.5)
    >>> model = compile_mpc(protocol, config, attention="anna")
    >>> run = model.run(protocol.generate_input(config, seed=0), engine="dense")
    >>> found = head_collisions(model, run, layer=0, head=0, query=1)
    >>> bool(found["total"] == sum(len(tables) for _, tables in found["keys"]) == run.forward.counts[0][0][1])
    True
    """
    layers = model.transformer.layers
    if not 0 <= layer < len(layers):
        raise ValueError(f"layer {layer} does not exist: the model has layers 0 .. {len(layers) - 1}")
    heads = layers[layer].heads
    if not 0 <= head < len(heads) or heads[head].kind != "anna":
        kinds = [h.kind for h in heads]
        raise ValueError(f"head {head} of layer {layer} is not an ANNA head (heads: {kinds})")
    x = run.forward.states[layer]
    if not 0 <= query < x.shape[0]:
        raise ValueError(f"query {query} does not exist: the model has tokens 0 .. {x.shape[0] - 1}")
    h = heads[head]
    positions = np.arange(x.shape[0], dtype=np.int64)
    q = apply_map("query", h.query, x, positions, h.dim)
    k = apply_map("key", h.key, x, positions, h.dim)
    if h.normalize:
        q, k = normalize_rows(q), normalize_rows(k)
    if q.dtype != k.dtype:          # as anna_attention hashes: one precision for both
        q, k = q.astype(np.float64), k.astype(np.float64)
    lsh: LSHConfig = h.lsh
    params = lsh.family.sample(q.shape[1], lsh.z, lsh.ell, model.transformer.head_seed(layer, head))
    query_codes = lsh.family.hash(np.ascontiguousarray(q[query:query + 1]), params)[0]
    key_codes = lsh.family.hash(np.ascontiguousarray(k), params)
    shared = key_codes == query_codes[None, :]                   # (keys, tables)
    if layers[layer].causal:
        shared[query + 1:] = False
    keys = [[int(j), np.flatnonzero(shared[j]).tolist()] for j in np.flatnonzero(shared.any(axis=1))]
    return {"layer": layer, "head": head, "query": query, "tables": lsh.ell, "keys": keys, "total": int(shared.sum())}


def compiled_section(model, data: object, *, query: int = 0, layer: int = 0) -> dict:
    """The page's ``compiled`` section for ``model`` run on ``data``: layers with the round they
    simulate, the alignment rows, and (ANNA heads only) the collisions of ``query`` in every
    ANNA head of ``layer``."""
    run = model.run(data, engine="dense")  # the per-layer token states and collision counts
    alignment = model.align(data, run)
    rows = []
    for row in layer_rows(model):
        round_, sub = model.plan.round_of_layer(int(row[0]))
        rows.append([int(row[0]), round_, sub, row[2], row[3]])
    collisions = [_capped(head_collisions(model, run, layer, h, query))
                  for h, head in enumerate(model.transformer.layers[layer].heads) if head.kind == "anna"]
    report = model.report
    return {"summary": f"{model.plan.protocol}: {report.rounds} rounds -> {report.depth} layers, "
                       f"{len(model.transformer.layers[0].heads)} heads per layer ({model.plan.attention}), "
                       f"width {report.width}, stream d = {model.stream.dim}",
            "layers_per_round": model.plan.layers_per_round, "depth": report.depth, "layers": rows,
            "alignment": [[int(a), int(b), int(c), None if d is None else int(d)] for a, b, c, d in alignment.rows],
            "collisions": {"layer": layer, "query": query, "heads": collisions} if collisions else None}


def _capped(found: dict) -> dict:
    """At most :data:`MAX_KEYS` keys listed; the page says how many more there were."""
    keys = found["keys"]
    return {**found, "keys": keys[:MAX_KEYS], "more_keys": max(0, len(keys) - MAX_KEYS)}


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``--compile`` (and its options) to the simulator's ``explore`` command."""
    p = sub.choices["explore"]
    p.add_argument("--compile", action="store_true", help="also compile the protocol and show its layers per round")
    p.add_argument("--attention", choices=ATTENTIONS, default="ema", help="with --compile: ema or anna heads")
    p.add_argument("--query", type=int, default=0, help="with --compile --attention anna: the query token whose "
                                                        "colliding keys are listed (default 0)")
    p.add_argument("--layer", type=int, default=0, help="with --compile --attention anna: its layer (default 0)")
    p.set_defaults(func=cmd_explore)


def cmd_explore(args: argparse.Namespace, console: Console) -> int:
    if not args.compile:
        return mpc_cli.cmd_explore(args, console)

    def check(protocol: Protocol, config: MPCConfig) -> None:     # before any run
        if not 0 <= args.query < config.machines:
            raise ValueError(f"query {args.query} does not exist: tokens are machines 0 .. {config.machines - 1}")
        if args.layer < 0:      # the upper end is known once compiled: checked before the page is written
            raise ValueError(f"layer {args.layer} does not exist: layers start at 0")

    def extend(page: dict, protocol: Protocol, config: MPCConfig, data: object) -> None:
        try:
            model = compile_mpc(protocol, config, seed=args.seed, rounds=page["num_rounds"],
                                attention=args.attention)
        except CompileError as exc:
            raise ValueError(f"cannot compile {protocol.name}: {exc}") from None
        if args.layer >= model.plan.depth:
            raise ValueError(f"layer {args.layer} does not exist: the model has layers 0 .. {model.plan.depth - 1}")
        page["compiled"] = compiled_section(model, data, query=args.query, layer=args.layer)

    return mpc_cli.cmd_explore(args, console, extend=extend, check=check)
