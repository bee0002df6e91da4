"""The round engine: runs a protocol, enforces the limits, records the trace."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends.base import (Limits, Traffic, call_batch_step, check_batch, check_state, machine_by_machine,
                            step_result)
from .config import MPCConfig, check_flag, check_integer
from .errors import ParameterError, ProtocolError
from .protocol import Protocol, RoundContext
from .randomness import normalize_seed
from .routing import route
from .state import ClusterState, Delivery
from .trace import RoundStats, Trace

__all__ = ["Simulator", "RunResult", "simulate", "MODES", "BACKENDS"]

MODES = ("auto", "batch", "machine")
BACKENDS = ("local", "dask")


@dataclass(frozen=True, eq=False)
class RunResult:
    """A finished run: the protocol's output, the trace, and the final cluster state."""

    output: np.ndarray
    trace: Trace
    state: ClusterState
    states: tuple[ClusterState, ...] = ()
    """With ``record_states``: the kept memories after each local computation (step 1 .. R+1)."""


class Simulator:
    """Runs protocols on an MPC cluster.

    Parameters
    ----------
    config : MPCConfig
        The cluster.
    strict : bool
        Raise a typed error at the first limit exceeded (default). Non-strict runs record every
        violation in the trace and go on. Unknown destinations and malformed messages always raise.
    mode : {"auto", "batch", "machine"}
        Which style of the protocol to run: ``auto`` prefers batch when the protocol has it.
    max_rounds : int
        A protocol still sending after this many rounds raises :class:`ProtocolError`.
    on_round : callable, optional
        Called with each round's :class:`RoundStats` as it completes (progress bars).
    backend : {"local", "dask"}
        ``local`` (default) runs in this process. ``dask`` runs the rounds on a Dask cluster,
        machines partitioned into blocks, one task per block per round (see
        :mod:`mpc_sim.backends.dask`): same protocol and seed, same output and trace counts.
        Under ``dask``, ``auto`` runs the per-machine step unless the protocol's batch step is
        block-local (:attr:`Protocol.block_batch`); ``batch`` on a protocol whose batch step is
        not block-local runs it as one task over the whole cluster. A round's wall time there
        includes scheduling and moving messages between workers; ``on_round`` is called once
        the round is complete and, with ``checkpoint``, committed. The trace records in
        ``retries`` the rounds run again after a worker was lost.
    client : distributed.Client or str, optional
        ``dask`` only: the cluster to use as is, or a scheduler address to connect to. Without
        one, a ``LocalCluster`` is started for the run and closed after it.
    dask : DaskOptions, optional
        ``dask`` only: local cluster size, blocks, timeouts, retry budget
        (:class:`mpc_sim.backends.dask.DaskOptions`).
    checkpoint : path, optional
        ``dask`` only: write the cluster's state after every round to this (empty or new)
        directory, as ``.npz`` arrays and a JSON manifest.
    resume : path, optional
        ``dask`` only: continue the run checkpointed in this directory from its last complete
        round (``data`` may then be ``None``); checkpoints go on being written there (or to
        ``checkpoint``). ``record_states`` then holds the rounds run after the resume.

    Examples
    --------
    >>> from mpc_sim.protocol import Protocol
    >>> class Gather(Protocol):   # every machine sends its words to machine 0
    ...     name = "gather"
    ...     def rounds_bound(self, config):
    ...         return 1
    ...     def step(self, ctx, machine, memory, inbox):
    ...         if ctx.round == 1:
    ...             return memory[:0], ([(0, memory)] if memory.size else [])
    ...         return (inbox.words if machine == 0 else memory), []
    >>> result = Simulator(MPCConfig(n=9, eps=0.5, memory_factor=3)).run(Gather(), np.arange(9))
    >>> result.output.tolist(), result.trace.num_rounds, result.trace.rounds[0].max_received
    ([0, 1, 2, 3, 4, 5, 6, 7, 8], 1, 9)
    """

    def __init__(self, config: MPCConfig, *, strict: bool = True, mode: str = "auto", max_rounds: int = 10_000,
                 on_round: Callable[[RoundStats], None] | None = None, backend: str = "local",
                 client: object = None, dask: object = None, checkpoint: str | Path | None = None,
                 resume: str | Path | None = None):
        if not isinstance(config, MPCConfig):
            raise TypeError(f"config must be an MPCConfig, got {type(config).__name__}")
        if mode not in MODES:
            raise ParameterError(f"mode must be one of {MODES}, got {mode!r}")
        max_rounds, strict = check_integer("max_rounds", max_rounds, low=1), check_flag("strict", strict)
        if backend not in BACKENDS:
            raise ParameterError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "local":
            given = [name for name, value in (("client", client), ("dask", dask), ("checkpoint", checkpoint),
                                              ("resume", resume)) if value is not None]
            if given:
                raise ParameterError(f"{', '.join(given)} need backend='dask'")
        self.config = config
        self.strict = strict
        self.mode = mode
        self.max_rounds = max_rounds
        self.on_round = on_round
        self.backend = backend
        self.client = client
        self.dask = dask
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.resume = None if resume is None else Path(resume)

    def _compute(self, protocol: Protocol, mode: str) -> Callable:
        if mode == "batch":
            return lambda ctx, state, delivery: call_batch_step(protocol, ctx, state, delivery)
        return lambda ctx, state, delivery: machine_by_machine(protocol, ctx, state, delivery)

    def resolve_mode(self, protocol: Protocol) -> str:
        """The style that will run: ``batch`` or ``machine``."""
        has_batch, has_step = protocol.has_batch_step(), protocol.has_step()
        if not (has_batch or has_step):
            raise ProtocolError(f"{type(protocol).__name__} implements neither step nor batch_step")
        if self.mode == "auto":
            if self.backend == "dask" and has_step and not protocol.block_batch:
                return "machine"        # runs on blocks; a batch step that is not block-local would not
            return "batch" if has_batch else "machine"
        if self.mode == "batch" and not has_batch:
            raise ProtocolError(f"{type(protocol).__name__} has no batch_step (mode='batch')")
        if self.mode == "machine" and not has_step:
            raise ProtocolError(f"{type(protocol).__name__} has no per-machine step (mode='machine')")
        return self.mode

    def run(self, protocol: Protocol, data: object, seed: int | None = 0, *, record_states: bool = False) -> RunResult:
        """Run ``protocol`` on ``data`` (``config.n`` words) and return output, trace and state;
        ``record_states`` also keeps the cluster's memories after every local computation."""
        if self.backend == "dask":
            from .backends.dask import run_on_dask
            return run_on_dask(self, protocol, data, seed, record_states=record_states)
        config, seed = self.config, normalize_seed(seed)
        mode = self.resolve_mode(protocol)
        protocol.check_config(config)
        words = protocol.validate_input(config, data)
        if isinstance(data, np.ndarray) and np.may_share_memory(words, data):
            words = words.copy()    # protocols may overwrite their memory in place: never the caller's array
        state = protocol.initial_state(config, words)
        check_state(state, config.machines, protocol, round=0)
        del words           # the state holds the input now: do not keep a second copy alive
        compute = self._compute(protocol, mode)
        limits = Limits(config.s, self.strict)
        delivery = Delivery.empty(config.machines, protocol.word_dtype)
        rounds: list[RoundStats] = []
        states: list[ClusterState] = []
        for r in range(1, self.max_rounds + 2):
            start = time.perf_counter()
            holding = state.sizes() + delivery.words_per_machine()
            limits.check("memory", r, holding)
            state, batch = step_result(compute(RoundContext(r, config, seed), state, delivery), protocol, round=r)
            check_state(state, config.machines, protocol, round=r)
            if record_states:      # a copy: a protocol may overwrite its memory in place next round
                states.append(ClusterState(state.words.copy(), state.offsets.copy()))
            if batch.num_messages == 0:
                kept = state.sizes()
                limits.check("memory", r, kept)
                output_stats = Traffic.measure(holding, np.zeros_like(holding), words=0, messages=0).output_stats(
                    int(kept.max(initial=0)), time.perf_counter() - start)
                break
            if r > self.max_rounds:
                raise ProtocolError(f"{protocol.name} still sending after max_rounds = {self.max_rounds}", round=r)
            sent = check_batch(batch, config, protocol, round=r)
            limits.check("send", r, sent)
            delivery = route(batch, config.machines)
            received = delivery.words_per_machine()
            limits.check("receive", r, received)
            traffic = Traffic.measure(holding, sent, words=batch.num_words, messages=batch.num_messages)
            stats = traffic.round_stats(r, max_received=int(received.max(initial=0)),
                                        wall_time=time.perf_counter() - start)
            rounds.append(stats)
            batch = None        # delivered: only the routed copy is needed by the next round
            if self.on_round is not None:
                self.on_round(stats)
        output = protocol.output(config, state)
        trace = Trace(protocol.name, config, tuple(rounds), rounds_bound=int(protocol.rounds_bound(config)),
                      output=output_stats, violations=tuple(limits.violations), seed=seed, params=protocol.params(),
                      strict=self.strict)
        return RunResult(output, trace, state, tuple(states))


def simulate(protocol: Protocol, data: object, config: MPCConfig, *, seed: int | None = 0, strict: bool = True,
             mode: str = "auto", max_rounds: int = 10_000, verify: bool = False, backend: str = "local",
             client: object = None) -> RunResult:
    """Run a protocol once (see :class:`Simulator`); with ``verify=True`` the trace records the
    verdict of checking the output against the protocol's reference solver."""
    result = Simulator(config, strict=strict, mode=mode, max_rounds=max_rounds, backend=backend,
                       client=client).run(protocol, data, seed=seed)
    if verify:
        words = protocol.validate_input(config, data)
        trace = result.trace.with_verified(protocol.verify(words, result.output))
        result = RunResult(result.output, trace, result.state, result.states)
    return result
