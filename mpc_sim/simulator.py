"""The round engine: runs a protocol, enforces the limits, records the trace."""
from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .backends.base import BackendError, Limits
from .backends.dask import DaskOptions
from .backends.interface import Backend, Computed, Job, Lost
from .backends.registry import backend_names, make_backend
from .config import MPCConfig, check_flag, check_integer
from .errors import ParameterError, ProtocolError, RecordingTooLarge, RoundBoundExceeded, UnknownBackend
from .protocol import Protocol
from .randomness import normalize_seed
from .render import format_bytes
from .state import ClusterState, Delivery
from .trace import RoundMessages, RoundPeaks, RoundStats, Trace, Violation

__all__ = ["Simulator", "RunResult", "Step", "simulate", "MODES", "BACKENDS", "RECORD_LIMIT_BYTES",
           "MESSAGE_RECORD_BYTES"]

MODES = ("auto", "batch", "machine")
BACKENDS = ("local", "dask")
"""The built-in backends (:func:`mpc_sim.backends.backend_names` lists every registered one)."""
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

    The round loop is here, once for every backend: the limits and the order of the errors, the
    round bound, ``max_rounds``, ``on_round``, the recorded states and messages, the replay of
    rounds after a backend restarted, and the :class:`Trace`. The backend (``local``, ``dask``, or
    one added with :func:`~mpc_sim.backends.register_backend`) runs each round's local
    computation and routing (:mod:`mpc_sim.backends.interface`).

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
        Which style of the protocol to run: ``auto`` lets the backend choose (the local backend
        prefers batch when the protocol has it, so a protocol's per-machine ``step`` is then never
        called: a spy on it sees nothing). The style that ran is recorded in :attr:`Trace.mode`;
        :meth:`resolve_mode` says it in advance.
    max_rounds : int
        A protocol still sending after this many rounds raises :class:`ProtocolError`.
    on_round : callable, optional
        Called with each round's :class:`RoundStats` once the round is complete (and, on a
        backend that checkpoints, committed); once per round, also when a backend replays it.
    backend : str or Backend
        A registered name (:func:`~mpc_sim.backends.backend_names`; unknown names raise
        :class:`~mpc_sim.errors.UnknownBackend` listing them) or a
        :class:`~mpc_sim.backends.Backend`. ``local`` (default) runs in this process. ``dask``
        runs the rounds on a Dask cluster, machines partitioned into blocks, one task per block
        per round (:mod:`mpc_sim.backends.dask`): same protocol and seed, same output and trace
        (counts, per-round peaks, violations, recorded messages) and the same limit errors.
        Under ``dask``, ``auto`` runs the per-machine step unless the protocol's batch step is
        block-local (:attr:`Protocol.block_batch`); ``batch`` on a protocol whose batch step is
        not block-local runs it as one task over the whole cluster. A round's wall time there
        includes scheduling and moving messages between workers. The trace records in
        ``retries`` the rounds run again after a worker was lost.
    dask : DaskOptions, optional
        ``dask`` only: the cluster (``client``), its size, blocks, timeouts, retry budget,
        ``checkpoint`` and ``resume`` directories (:class:`mpc_sim.backends.dask.DaskOptions`).
    client, checkpoint, resume : optional
        ``dask`` only: the fields of :class:`~mpc_sim.backends.dask.DaskOptions` of these names,
        given directly (each at most once: here or in ``dask``).

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
    >>> Simulator(MPCConfig(n=9, eps=0.5), backend="spark")
    Traceback (most recent call last):
    ...
    mpc_sim.errors.UnknownBackend: backend must be one of ('local', 'dask'), got 'spark'
    """

    def __init__(self, config: MPCConfig, *, strict: bool = True, mode: str = "auto", max_rounds: int = 10_000,
                 on_round: Callable[[RoundStats], None] | None = None, backend: str | Backend = "local",
                 dask: DaskOptions | None = None, client: object = None, checkpoint: str | Path | None = None,
                 resume: str | Path | None = None):
        if not isinstance(config, MPCConfig):
            raise TypeError(f"config must be an MPCConfig, got {type(config).__name__}")
        if mode not in MODES:
            raise ParameterError(f"mode must be one of {MODES}, got {mode!r}")
        max_rounds, strict = check_integer("max_rounds", max_rounds, low=1), check_flag("strict", strict)
        self.config = config
        self.strict = strict
        self.mode = mode
        self.max_rounds = max_rounds
        self.on_round = on_round
        self.backend = _backend(backend, dask, client=client, checkpoint=checkpoint, resume=resume)

    def resolve_mode(self, protocol: Protocol) -> str:
        """The style that will run: ``batch`` or ``machine``."""
        has_batch, has_step = protocol.has_batch_step(), protocol.has_step()
        if not (has_batch or has_step):
            raise ProtocolError(f"{type(protocol).__name__} implements neither step nor batch_step")
        if self.mode == "auto":
            return self.backend.auto_mode(protocol)
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
        :attr:`Trace.messages`, :meth:`Trace.to_networkx`; backends that record messages only,
        such as ``local`` and ``dask``): refused with :class:`~mpc_sim.errors.RecordingTooLarge` before any
        work when the recording could take more than ``record_limit`` bytes (the estimate:
        ``rounds_bound`` rounds of at most ``machines * min(fanout_bound, s)`` messages of 16
        bytes each).
        """
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
        (on backends that hand every round's state to this process, such as ``local``). A step's
        state and delivery are the simulator's own arrays: valid until the next step is asked for.

        Examples
        --------
        >>> from mpc_sim import make_protocol
        >>> protocol = make_protocol("prefix-sum")
        >>> config = protocol.default_config(64, 0.5)
        >>> steps = list(Simulator(config).steps(protocol, protocol.generate_input(config, seed=0)))
        >>> [step.round for step in steps][-1] == steps[-1].result.trace.num_rounds + 1, steps[-1].final
        (True, True)
        """
        if not self.backend.runs_steps:
            raise ValueError(f"steps() needs a backend that keeps every round's state in this process, such as "
                             f"'local'; use run() with backend={self.backend.name!r}")
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
        """The round loop of every backend, as a generator of :class:`Step`; returns the :class:`RunResult`.

        Each round: the backend's computation (:meth:`BackendRun.compute`), the memory limit on
        entry, the computation's error, then either the final round (no message: the memory kept)
        or ``max_rounds``, the backend's routing (:meth:`BackendRun.route`: the messages' errors),
        the round bound, the send and receive limits. A round's violations, states and stats are
        recorded only once it completes; a round run again after the backend lost work (a replay)
        must give the counts recorded the first time.
        """
        backend, config, seed = self.backend, self.config, normalize_seed(seed)
        mode = self.resolve_mode(protocol)
        if record_messages and not backend.records_messages:
            raise ValueError(f"record_messages needs a backend that records messages, such as 'local' or 'dask' "
                             f"(the {backend.name} backend does not)")
        protocol.check_config(config)
        bound = None            # read when first needed: a run ended by a step's error never asks for it
        if record_messages:
            bound = int(protocol.rounds_bound(config))
            self._recording_estimate(protocol, bound, record_limit)
        words = backend.take_input(protocol, config, data)
        rounds: list[RoundStats] = []
        violations: list[Violation] = []
        peaks: list[RoundPeaks] = []
        states: list[ClusterState] = []
        kept = states if record_states else None        # where a completed round's state goes
        messages: list[RoundMessages] | None = [] if record_messages else None
        recorded_bytes = 0
        id_dtype = np.int32 if config.machines <= np.iinfo(np.int32).max else np.int64
        with backend.open(Job(protocol, config, seed, mode, self.strict, record_messages)) as run:
            history = run.start(words)
            del words           # the state holds the input now: do not keep a second copy alive
            rounds.extend(history.rounds)
            violations.extend(history.violations)
            peaks.extend(history.peaks)
            r = announced = len(rounds)
            r += 1
            while True:
                try:
                    replay = r <= len(rounds)
                    limits = Limits(config.s, self.strict)
                    start = time.perf_counter()
                    computed = run.compute(r, record_states and not replay)
                    limits.report("memory", r, *computed.holding_over)
                    if computed.error is not None:
                        raise computed.error
                    if computed.messages == 0:
                        if replay:
                            raise BackendError(f"round {r} sent messages when first run and none when run again "
                                               f"after the backend lost work: is the protocol deterministic in "
                                               f"its seed?")
                        limits.report("memory", r, *computed.kept_over)
                        output_stats = computed.traffic.output_stats(computed.max_kept, time.perf_counter() - start)
                        break
                    if r > self.max_rounds:
                        raise ProtocolError(f"{protocol.name} still sending after max_rounds = {self.max_rounds}",
                                            round=r)
                    routed = run.route(r)
                    if bound is None:
                        bound = int(protocol.rounds_bound(config))
                    self._check_bound(r, bound, protocol)
                    limits.report("send", r, *routed.send_over)
                    limits.report("receive", r, *routed.receive_over)
                    stats = routed.traffic.round_stats(r, max_received=routed.max_received,
                                                       wall_time=time.perf_counter() - start)
                    if replay:
                        if stats.counts() != rounds[r - 1].counts():
                            raise BackendError(f"round {r} run again after the backend lost work gave "
                                               f"{stats.counts()}, first {rounds[r - 1].counts()}: is the protocol "
                                               f"deterministic in its seed?")
                    else:
                        rounds.append(stats)
                        _record(limits, computed, routed.peaks, violations, kept, peaks)
                        if messages is not None:
                            if routed.recorded is not None:
                                src, dst, lengths = routed.recorded
                            else:
                                delivered = routed.delivery.messages
                                src, dst, lengths = delivered.src, delivered.dst, delivered.lengths()
                            recorded = RoundMessages(r, src.astype(id_dtype), dst.astype(id_dtype), lengths)
                            recorded_bytes += recorded.nbytes
                            if recorded_bytes > record_limit:   # only a run past its bound or its limits
                                raise RecordingTooLarge(
                                    f"round {r}: the recorded messages of {protocol.name} take "
                                    f"{format_bytes(recorded_bytes)}, over the limit of {format_bytes(record_limit)}")
                            messages.append(recorded)
                    run.commit(r, rounds, violations)
                except Lost as lost:
                    r = run.recover(r, lost.error)
                    continue
                if r > announced:
                    announced = r
                    if self.on_round is not None:
                        self.on_round(rounds[r - 1])
                yield Step(r, stats, computed.state, routed.delivery, None)
                r += 1
            _record(limits, computed, computed.peaks, violations, kept, peaks)
            final = computed.state
        output = protocol.output(config, final)
        if bound is None:
            bound = int(protocol.rounds_bound(config))
        trace = Trace(protocol.name, config, tuple(rounds), rounds_bound=bound, output=output_stats,
                      violations=tuple(violations), seed=seed, params=protocol.params(), strict=self.strict,
                      retries=tuple(run.retries), peaks=tuple(peaks), mode=mode,
                      messages=None if messages is None else tuple(messages))
        return RunResult(output, trace, final, tuple(states))


def _record(limits: Limits, computed: Computed, round_peaks: RoundPeaks | None, violations: list[Violation],
            states: list[ClusterState] | None, peaks: list[RoundPeaks]) -> None:
    """What a completed round adds to the run: its violations, its state (when states are
    recorded: a copy, since a protocol may overwrite its memory in place next round), its peaks."""
    violations.extend(limits.violations)
    if states is not None:
        states.append(ClusterState(computed.state.words.copy(), computed.state.offsets.copy()))
    if round_peaks is not None:
        peaks.append(round_peaks)


def _backend(backend: object, dask: object, **fields: object) -> Backend:
    """The backend a :class:`Simulator` runs on: a :class:`Backend` as given, else the one registered
    under the name. ``dask`` and the ``fields`` (keywords naming fields of :class:`DaskOptions`) are
    the Dask backend's options: refused for any other backend, each given at most once."""
    given = {name: value for name, value in fields.items() if value is not None}
    if not isinstance(backend, Backend) and backend not in backend_names():
        raise UnknownBackend(backend, backend_names())
    if backend != "dask":
        if dask is not None or given:
            named = ["client"] * ("client" in given) + ["dask"] * (dask is not None) + [
                name for name in given if name != "client"]
            where = (f"give them to {type(backend).__name__} itself" if isinstance(backend, Backend)
                     else "need backend='dask'")
            raise ParameterError(f"{', '.join(named)} {where}")
        return backend if isinstance(backend, Backend) else make_backend(backend)
    options = DaskOptions() if dask is None else dask
    if not isinstance(options, DaskOptions):
        raise TypeError(f"dask options must be a DaskOptions, got {type(options).__name__}")
    twice = [name for name in given if getattr(options, name) is not None]
    if twice:
        raise ParameterError(f"{', '.join(twice)} given both as a keyword and in DaskOptions: give each once")
    return make_backend("dask", replace(options, **given) if given else options)


def simulate(protocol: Protocol, data: object, config: MPCConfig, *, seed: int | None = 0, strict: bool = True,
             mode: str = "auto", max_rounds: int = 10_000, verify: bool = False, backend: str | Backend = "local",
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
