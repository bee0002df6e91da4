"""MPC protocol -> ANNA-transformer (Theorem 4.1): ``compile_mpc`` and what it returns.

The compiler is a list of passes, each in its own module: :mod:`.validate` refuses what cannot be
compiled (listing every reason), :mod:`.plan` sizes heads, layers and the token stream,
:mod:`.estimate` bounds the model's memory and time from the plan alone (refusing above the
limit before anything is built), :mod:`.layouts` lays messages out so averaged attention outputs
decode exactly, :mod:`.layers` builds the token-wise maps and heads of each layer, :mod:`.model`
assembles the model and runs it: on the lean engine (:mod:`.execute` with :mod:`.sparse`,
vectorised over tokens, the stream kept compact) or on the dense one (``Transformer.run``, the
plain reference the lean engine is tested against).
"""
from __future__ import annotations

import numpy as np

from anna.transformer import Transformer
from mpc_sim import MPCConfig, Protocol, normalize_seed

from .errors import CompileError, ModelTooLarge, RoundBudgetExceeded, UnsupportedProtocol
from .estimate import ENGINES, ESTIMATE_FACTOR, ModelEstimate, default_memory_limit, estimate_model
from .execute import IdCollisions, LayerMemories, RunStats
from .layers import (ID_FAR, ID_NEAR, IdEmbedding, IdLSH, build_embedding, build_layers, build_readout,
                     check_id_separation, far_bound, id_lsh)
from .layouts import DecodeError, DisjunctLayout, HashedLayout, LAYOUTS
from .model import CompiledModel, CompiledRun, CompileReport, LayerAlignment
from .plan import ATTENTIONS, CompilePlan, make_plan
from .validate import validate_protocol

__all__ = [
    "compile_mpc", "CompiledModel", "CompiledRun", "CompileReport", "CompilePlan", "LayerAlignment",
    "CompileError", "UnsupportedProtocol", "RoundBudgetExceeded", "ModelTooLarge", "DecodeError",
    "DisjunctLayout", "HashedLayout", "LAYOUTS", "ATTENTIONS", "ENGINES", "ModelEstimate", "ESTIMATE_FACTOR",
    "default_memory_limit", "IdLSH", "id_lsh", "IdCollisions", "LayerMemories", "RunStats", "check_request",
]


def compile_mpc(protocol: Protocol, config: MPCConfig, *, seed: int = 0, rounds: int | None = None,
                alpha: int | None = None, layout: str = "hashed", attention: str = "ema", lsh: object = None,
                hash_seed: int | None = None, layout_options: dict | None = None,
                max_memory: int | None = None) -> CompiledModel:
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
    attention : {"ema", "anna", "softmax"}
        Exact-match heads; Algorithm 1 on ids embedded as well-separated unit vectors (equal ids
        at distance 0, distinct ids at least ``ID_FAR`` apart, checked up to 2048 machines); or
        dense softmax heads (the quadratic baseline, dense engine only).
    lsh : LSHConfig or IdLSH, optional
        The hash tables of ``anna`` heads; default :func:`id_lsh` (``"exact-ids"``: random
        hyperplanes, one table, ``z`` such that some far pair of ids collides with probability
        at most ``2 N**2 p2**z <= 1 / N``). The report names the tables, the stated bound and the
        far pairs that collide in them.
    hash_seed : int, optional
        Seed of the hash tables (default ``seed``); every ``anna`` head of the model uses the same
        tables, so one far-collision bound covers the whole model.
    max_memory : int, optional
        Bytes the model may take (default: half of physical memory). The estimate
        (:mod:`.estimate`, from the plan alone, in the report) of the model object is checked
        before anything is built, and that of a run when ``CompiledModel.run`` starts:
        :class:`ModelTooLarge` above the limit. :func:`check_request` checks a run up front.

    Examples
    --------
    >>> from mpc_sim import MPCConfig
    >>> from mpc_sim.protocols.aggregate import Aggregate
    >>> cfg = MPCConfig(n=64, eps=0.5)
    >>> model = compile_mpc(Aggregate(op="sum"), cfg)
    >>> int(model(np.arange(64))[0]), model.report.depth == model.report.rounds
    (2016, True)
    >>> compile_mpc(Aggregate(op="sum"), cfg, max_memory=1000)
    Traceback (most recent call last):
    ...
    reductions.compile.errors.ModelTooLarge: building compiled aggregate is estimated at ...
    """
    plan, packets, stream, ids, choice, estimate = _plan_and_estimate(
        protocol, config, seed=seed, rounds=rounds, alpha=alpha, layout=layout, attention=attention, lsh=lsh,
        layout_options=layout_options, max_memory=max_memory, what="build")
    head_seed = plan.seed if hash_seed is None else normalize_seed(hash_seed)
    collisions = None
    if choice is not None:
        check_id_separation(ids, config.machines)
        collisions = IdCollisions.from_lsh(config.machines, ids, choice.lsh, head_seed)
    layers = build_layers(protocol, plan, packets, stream, ids, choice.lsh if choice else None, head_seed)
    transformer = Transformer(build_embedding(protocol, plan, stream), layers, build_readout(stream),
                              seed=head_seed, dim=stream.dim)
    return CompiledModel(protocol, plan, packets, stream, transformer, estimate, choice, collisions,
                         None if max_memory is None else int(max_memory))


def check_request(protocol: Protocol, config: MPCConfig, *, seed: int = 0, rounds: int | None = None,
                  alpha: int | None = None, layout: str = "hashed", attention: str = "ema", lsh: object = None,
                  layout_options: dict | None = None, max_memory: int | None = None,
                  engine: str | None = None) -> ModelEstimate:
    """Check a request to compile *and run* without doing either: the protocol, the options, and
    the estimated run on ``engine`` (default: lean, dense for softmax heads) against the memory
    limit; raises UnsupportedProtocol, CompileError or ModelTooLarge; returns the estimate.

    Examples
    --------
    >>> from mpc_sim.protocols import make_protocol
    >>> protocol = make_protocol("connectivity")
    >>> check_request(protocol, protocol.default_config(2**14, 0.5), max_memory=2**20)
    Traceback (most recent call last):
    ...
    reductions.compile.errors.ModelTooLarge: running compiled connectivity on the lean engine is estimated at ...
    """
    return _plan_and_estimate(protocol, config, seed=seed, rounds=rounds, alpha=alpha, layout=layout,
                              attention=attention, lsh=lsh, layout_options=layout_options, max_memory=max_memory,
                              what="run", engine=engine)[-1]


def _plan_and_estimate(protocol, config, *, seed, rounds, alpha, layout, attention, lsh, layout_options, max_memory,
                       what: str, engine: str | None = None):
    validate_protocol(protocol, config, rounds=rounds, alpha=alpha)
    if max_memory is not None and (isinstance(max_memory, bool) or not isinstance(max_memory, (int, float))
                                   or not max_memory > 0):
        raise CompileError(f"max_memory must be a positive number of bytes, got {max_memory!r}")
    plan = make_plan(protocol, config, seed=normalize_seed(seed), rounds=rounds, alpha=alpha, layout=layout,
                     attention=attention, layout_options=layout_options)
    packets = plan.make_layout()
    stream = plan.stream(packets)
    ids = IdEmbedding(attention, seed=plan.seed)
    choice = None
    if attention == "anna":
        if isinstance(lsh, IdLSH):
            choice = lsh
        elif lsh is not None:
            choice = IdLSH(lsh, "given", far_bound(config.machines, lsh), lsh.family.collision_probability(ID_FAR))
        else:
            choice = id_lsh(config.machines, ids)
    estimate = estimate_model(plan, packets, stream.dim, ids.dim, choice.lsh.ell if choice else 1,
                              batch_step=protocol.has_batch_step())
    engine = engine or ("dense" if attention == "softmax" else "lean")
    limit = default_memory_limit() if max_memory is None else int(max_memory)
    need = estimate.build_bytes if what == "build" else estimate.bytes(engine)
    if need > limit:
        doing = f"building compiled {protocol.name}" if what == "build" else \
            f"running compiled {protocol.name} on the {engine} engine"
        raise ModelTooLarge(doing, need, limit, f"{plan.tokens} tokens, s = {config.s}, {plan.alpha} routing heads, "
                                                f"depth {plan.depth}")
    return plan, packets, stream, ids, choice, estimate
