"""The round engine: runs a protocol, enforces the limits, records the trace."""
from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .backends.base import (Limits, Traffic, call_batch_step, check_batch, check_state, machine_by_machine,
                            step_result)
from .config import MPCConfig, check_flag, check_integer
from .errors import ParameterError, ProtocolError, RecordingTooLarge, RoundBoundExceeded
from .protocol import Protocol, RoundContext
from .randomness import normalize_seed
from .render import format_bytes
from .routing import route
from .state import ClusterState, Delivery
from .trace import RoundMessages, RoundPeaks, RoundStats, Trace

__all__ = ["Simulator", "RunResult", "Step", "simulate", "MODES", "BACKENDS", "RECORD_LIMIT_BYTES",
           "MESSAGE_RECORD_BYTES"]

MODES = ("auto", "batch", "machine")
BACKENDS = ("local", "dask")
RECORD_LIMIT_BYTES = 2**31
"""Default cap on the memory a message recording may take (``record_limit``)."""
MESSAGE_RECORD_BYTES = 16
"""Bytes one recorded message takes: int32 source and destination, int64 word count."""


@dataclass(frozen=True, eq=False)
class RunResult:
    """A finished run: the protocol's output, the trace, and the final cluster state."""

    output: np.ndarray
    trace: Trace
    state: ClusterState
    states: tuple[ClusterState, ...] = ()
    """With ``record_states``: the kept memories after each local computation (step 1 .. R+1)."""

    def _repr_html_(self) -> str:
        import html
        output = np.asarray(self.output)
        head = ", ".join(str(x) for x in output[:8].tolist()) + (", ..." if output.size > 8 else "")
        return (f"<div><b>RunResult</b>: output {html.escape(str(output.shape))} {html.escape(str(output.dtype))} "
                f"[{html.escape(head)}]<br>{self.trace._repr_html_()}{self.state._repr_html_()}</div>")


@dataclass(frozen=True, eq=False)
class Step:
    """One step of :meth:`Simulator.steps`: communication round ``round`` done (its ``stats``,
    the kept ``state`` after the local computation, the ``delivery`` the next round reads), or,
    when ``final``, the message-free final computation (``round = R + 1``) with the ``result``."""

    round: int
    stats: RoundStats | None
    state: ClusterState
    delivery: Delivery | None
    result: RunResult | None

    @property
    def final(self) -> bool:
        return self.result is not None


class Simulator:
    """Runs protocols on an MPC cluster.

    Parameters
    ----------
    config : MPCConfig
        The cluster.
    strict : bool
        Raise a typed error at the first limit exceeded (default), and
        :class:`~mpc_sim.errors.RoundBoundExceeded` when a round past the protocol's declared
        ``rounds_bound`` sends messages. Non-strict runs record every limit violation in the
        trace and go on (:meth:`Trace.check` reports a missed bound). Unknown destinations and
        malformed messages always raise.
    mode : {"auto", "batch", "machine"}
        Which style of the protocol to run: ``auto`` prefers batch when the protocol has it, so
        a protocol's per-machine ``step`` is then never called (a spy on it sees nothing). The
        style that ran is recorded in :attr:`Trace.mode`; :meth:`resolve_mode` says it in advance.
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

    def run(self, protocol: Protocol, data: object, seed: int | None = 0, *, record_states: bool = False,
            record_messages: bool = False, record_limit: int = RECORD_LIMIT_BYTES) -> RunResult:
        """Run ``protocol`` on ``data`` (``config.n`` words) and return output, trace and state.

        ``record_states`` also keeps the cluster's memories after every local computation.
        ``record_messages`` keeps every round's messages as arrays (source, destination, words;
        :attr:`Trace.messages`, :meth:`Trace.to_networkx`): refused with
        :class:`~mpc_sim.errors.RecordingTooLarge` before any work when the recording could take
        more than ``record_limit`` bytes (the estimate: ``rounds_bound`` rounds of at most
        ``machines * min(fanout_bound, s)`` messages of 16 bytes each).
        """
        if self.backend == "dask":
            if record_messages:
                raise ValueError("record_messages needs backend='local' (the dask backend does not record messages)")
            from .backends.dask import run_on_dask
            result = run_on_dask(self, protocol, data, seed, record_states=record_states)
            trace = replace(result.trace, mode=self.resolve_mode(protocol))
            self._check_bound(trace.num_rounds, trace.rounds_bound, protocol)
            return RunResult(result.output, trace, result.state, result.states)
        rounds = self._rounds(protocol, data, seed, record_states=record_states, record_messages=record_messages,
                              record_limit=record_limit)
        while True:
            try:
                next(rounds)
            except StopIteration as done:
                return done.value

    def steps(self, protocol: Protocol, data: object, seed: int | None = 0, *, record_messages: bool = False,
              record_limit: int = RECORD_LIMIT_BYTES) -> Iterator[Step]:
        """Run ``protocol`` round by round: yields a :class:`Step` after every round's local
        computation and delivery, the last one (``final``) after the message-free final
        computation, holding the :class:`RunResult`. The same checks and counts as :meth:`run`
        (local backend only). A step's state and delivery are the simulator's own arrays: valid
        until the next step is asked for.

        Examples
        --------
        >>> from mpc_sim import make_protocol
        >>> protocol = make_protocol("prefix-sum")
        >>> config = protocol.default_config(64, 0.5)
        >>> steps = list(Simulator(config).steps(protocol, protocol.generate_input(config, seed=0)))
        >>> [step.round for step in steps][-1] == steps[-1].result.trace.num_rounds + 1, steps[-1].final
        (True, True)
        """
        if self.backend != "local":
            raise ValueError("steps() runs on the local backend; use run() with backend='dask'")
        rounds = self._rounds(protocol, data, seed, record_states=False, record_messages=record_messages,
                              record_limit=record_limit)
        while True:
            try:
                yield next(rounds)
            except StopIteration as done:
                result = done.value
                yield Step(result.trace.num_rounds + 1, None, result.state, None, result)
                return

    def _check_bound(self, round: int, bound: int, protocol: Protocol) -> None:
        if self.strict and round > bound:
            raise RoundBoundExceeded(protocol=protocol.name, round=round, bound=bound)

    def _recording_estimate(self, protocol: Protocol, bound: int, record_limit: int) -> None:
        config = self.config
        per_round = config.machines * min(int(protocol.fanout_bound(config)), config.s)
        estimate = max(bound, 1) * per_round * MESSAGE_RECORD_BYTES
        if estimate > record_limit:
            raise RecordingTooLarge(
                f"recording the messages of {protocol.name} (n = {config.n}) could take {format_bytes(estimate)} "
                f"({max(bound, 1)} rounds x up to {per_round} messages x {MESSAGE_RECORD_BYTES} bytes), over the "
                f"limit of {format_bytes(record_limit)}: raise record_limit or run a smaller n")

    def _rounds(self, protocol: Protocol, data: object, seed: int | None, *, record_states: bool,
                record_messages: bool, record_limit: int) -> Generator[Step, None, RunResult]:
        """The round engine as a generator of :class:`Step`; returns the :class:`RunResult`."""
        config, seed = self.config, normalize_seed(seed)
        mode = self.resolve_mode(protocol)
        protocol.check_config(config)
        bound = int(protocol.rounds_bound(config))
        if record_messages:
            self._recording_estimate(protocol, bound, record_limit)
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
        peaks: list[RoundPeaks] = []
        states: list[ClusterState] = []
        messages: list[RoundMessages] | None = [] if record_messages else None
        recorded_bytes = 0
        id_dtype = np.int32 if config.machines <= np.iinfo(np.int32).max else np.int64
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
                peaks.append(RoundPeaks.measure(r, np.maximum(holding, kept)))
                break
            if r > self.max_rounds:
                raise ProtocolError(f"{protocol.name} still sending after max_rounds = {self.max_rounds}", round=r)
            self._check_bound(r, bound, protocol)
            sent = check_batch(batch, config, protocol, round=r)
            limits.check("send", r, sent)
            delivery = route(batch, config.machines)
            received = delivery.words_per_machine()
            limits.check("receive", r, received)
            traffic = Traffic.measure(holding, sent, words=batch.num_words, messages=batch.num_messages)
            stats = traffic.round_stats(r, max_received=int(received.max(initial=0)),
                                        wall_time=time.perf_counter() - start)
            rounds.append(stats)
            peaks.append(RoundPeaks.measure(r, holding, sent, received))
            if messages is not None:
                delivered = delivery.messages
                recorded = RoundMessages(r, delivered.src.astype(id_dtype), delivered.dst.astype(id_dtype),
                                         delivered.lengths())
                recorded_bytes += recorded.nbytes
                if recorded_bytes > record_limit:   # only a run past its bound or its limits (non-strict)
                    raise RecordingTooLarge(f"round {r}: the recorded messages of {protocol.name} take "
                                            f"{format_bytes(recorded_bytes)}, over the limit of {format_bytes(record_limit)}")
                messages.append(recorded)
            batch = None        # delivered: only the routed copy is needed by the next round
            if self.on_round is not None:
                self.on_round(stats)
            yield Step(r, stats, state, delivery, None)
        output = protocol.output(config, state)
        trace = Trace(protocol.name, config, tuple(rounds), rounds_bound=bound,
                      output=output_stats, violations=tuple(limits.violations), seed=seed, params=protocol.params(),
                      strict=self.strict, peaks=tuple(peaks), mode=mode,
                      messages=None if messages is None else tuple(messages))
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
