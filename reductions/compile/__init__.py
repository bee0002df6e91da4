"""MPC protocol -> ANNA-transformer (Theorem 4.1): ``compile_mpc`` and what it returns.

The compiler is a list of passes, each in its own module: :mod:`.validate` refuses what cannot be
compiled (listing every reason), :mod:`.plan` sizes heads, layers and the token stream,
:mod:`.layouts` lays messages out so averaged attention outputs decode exactly, :mod:`.layers`
builds the token-wise maps and heads of each layer, :mod:`.model` assembles and runs the model.
"""
from __future__ import annotations

import numpy as np

from anna.transformer import Transformer
from mpc_sim import MPCConfig, Protocol, normalize_seed

from .errors import CompileError, RoundBudgetExceeded, UnsupportedProtocol
from .layers import (ID_FAR, ID_NEAR, IdEmbedding, build_embedding, build_layer, build_readout,
                     check_id_separation, id_lsh)
from .layouts import DecodeError, DisjunctLayout, HashedLayout, LAYOUTS
from .model import CompiledModel, CompiledRun, CompileReport, LayerAlignment
from .plan import ATTENTIONS, CompilePlan, make_plan
from .validate import validate_protocol

__all__ = [
    "compile_mpc", "CompiledModel", "CompiledRun", "CompileReport", "CompilePlan", "LayerAlignment",
    "CompileError", "UnsupportedProtocol", "RoundBudgetExceeded", "DecodeError",
    "DisjunctLayout", "HashedLayout", "LAYOUTS", "ATTENTIONS",
]


def compile_mpc(protocol: Protocol, config: MPCConfig, *, seed: int = 0, rounds: int | None = None,
                alpha: int | None = None, layout: str = "hashed", attention: str = "ema", lsh: object = None,
                hash_seed: int | None = None, layout_options: dict | None = None) -> CompiledModel:
    """Compile ``protocol`` running under ``config`` into an ANNA-transformer.

    Parameters
    ----------
    protocol, config
        A per-machine protocol of :mod:`mpc_sim` and its cluster.
    seed : int
        The protocol's seed (its randomness is fixed at compile time, making it deterministic).
    rounds : int, optional
        Round budget; default ``protocol.rounds_bound(config)``.
    alpha : int, optional
        Routing heads per layer; default the protocol's ``fanout_bound`` (one layer per round).
    layout : {"hashed", "disjunct"}
        Packet layout of the routing heads (see :mod:`reductions.compile.layouts`).
    hash_seed : int, optional
        Seed of the LSH tables of ``anna`` heads (default ``seed``); each head derives its own.
    attention : {"ema", "anna"}
        Exact-match heads, or Algorithm 1 on ids embedded as well-separated unit vectors: equal ids
        at distance 0, distinct ids at least ``ID_FAR`` apart (checked). ``lsh`` gives the
        LSHConfig; by default random hyperplanes with (z, ell) from Theorem 3.4 for
        ``r = ID_NEAR``, ``c = ID_FAR / ID_NEAR`` and ``n = machines`` (:func:`id_lsh`).

    Examples
    --------
    >>> from mpc_sim import MPCConfig
    >>> from mpc_sim.protocols.aggregate import Aggregate
    >>> cfg = MPCConfig(n=64, eps=0.5)
    >>> model = compile_mpc(Aggregate(op="sum"), cfg)
    >>> int(model(np.arange(64))[0]), model.report.depth == model.report.rounds
    (2016, True)
    """
    validate_protocol(protocol, config, rounds=rounds, alpha=alpha)
    plan = make_plan(protocol, config, seed=normalize_seed(seed), rounds=rounds, alpha=alpha, layout=layout,
                     attention=attention, layout_options=layout_options)
    packets = plan.make_layout()
    stream = plan.stream(packets)
    ids = IdEmbedding(attention, seed=plan.seed)
    if attention == "anna":
        lsh = lsh if lsh is not None else id_lsh(config.machines, ids)
        check_id_separation(ids, config.machines)
    layers = tuple(build_layer(protocol, plan, packets, stream, ids, layer, lsh) for layer in range(plan.depth))
    transformer = Transformer(build_embedding(protocol, plan, stream), layers, build_readout(stream),
                              seed=plan.seed if hash_seed is None else normalize_seed(hash_seed), dim=stream.dim)
    return CompiledModel(protocol, plan, packets, stream, transformer)
