"""The round engine: runs a protocol, enforces the limits, records the trace."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .config import MPCConfig
from .errors import (LimitExceeded, MemoryLimitExceeded, ProtocolError, ReceiveLimitExceeded,
                     SendLimitExceeded, UnknownDestination)
from .protocol import Protocol, RoundContext
from .randomness import normalize_seed
from .routing import route
from .state import ClusterState, Delivery, MessageBatch
from .trace import OutputStats, RoundStats, Trace, Violation

__all__ = ["Simulator", "RunResult", "simulate", "MODES"]

MODES = ("auto", "batch", "machine")
_LIMIT_ERRORS: dict[str, type[LimitExceeded]] = {
    "memory": MemoryLimitExceeded, "send": SendLimitExceeded, "receive": ReceiveLimitExceeded,
}


@dataclass(frozen=True, eq=False)
class RunResult:
    """A finished run: the protocol's output, the trace, and the final cluster state."""

    output: np.ndarray
    trace: Trace
    state: ClusterState
    states: tuple[ClusterState, ...] = ()
    """With ``record_states``: the kept memories after each local computation (step 1 .. R+1)."""


class _Limits:
    """Checks per-machine amounts against ``s``: raises (strict) or records (non-strict)."""

    def __init__(self, s: int, strict: bool):
        self.s = s
        self.strict = strict
        self.violations: list[Violation] = []

    def check(self, kind: str, round: int, amounts: np.ndarray) -> None:
        over = np.flatnonzero(amounts > self.s)
        if over.size == 0:
            return
        if self.strict:
            machine = int(over[0])
            raise _LIMIT_ERRORS[kind](round=round, machine=machine, observed=int(amounts[machine]), limit=self.s)
        self.violations.extend(Violation(kind, round, int(m), int(amounts[m]), self.s) for m in over)


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
                 on_round: Callable[[RoundStats], None] | None = None):
        if not isinstance(config, MPCConfig):
            raise TypeError(f"config must be an MPCConfig, got {type(config).__name__}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be >= 1, got {max_rounds}")
        self.config = config
        self.strict = strict
        self.mode = mode
        self.max_rounds = max_rounds
        self.on_round = on_round

    def _compute(self, protocol: Protocol, mode: str) -> Callable:
        if mode == "batch":
            return protocol.batch_step
        return lambda ctx, state, delivery: _machine_by_machine(protocol, ctx, state, delivery)

    def resolve_mode(self, protocol: Protocol) -> str:
        """The style that will run: ``batch`` or ``machine``."""
        has_batch, has_step = protocol.has_batch_step(), protocol.has_step()
        if not (has_batch or has_step):
            raise ProtocolError(f"{type(protocol).__name__} implements neither step nor batch_step")
        if self.mode == "auto":
            return "batch" if has_batch else "machine"
        if self.mode == "batch" and not has_batch:
            raise ProtocolError(f"{type(protocol).__name__} has no batch_step (mode='batch')")
        if self.mode == "machine" and not has_step:
            raise ProtocolError(f"{type(protocol).__name__} has no per-machine step (mode='machine')")
        return self.mode

    def run(self, protocol: Protocol, data: object, seed: int | None = 0, *, record_states: bool = False) -> RunResult:
        """Run ``protocol`` on ``data`` (``config.n`` words) and return output, trace and state;
        ``record_states`` also keeps the cluster's memories after every local computation."""
        config, seed = self.config, normalize_seed(seed)
        mode = self.resolve_mode(protocol)
        protocol.check_config(config)
        words = protocol.validate_input(config, data)
        if isinstance(data, np.ndarray) and np.may_share_memory(words, data):
            words = words.copy()    # protocols may overwrite their memory in place: never the caller's array
        state = protocol.initial_state(config, words)
        _check_state(state, config, protocol, round=0)
        del words           # the state holds the input now: do not keep a second copy alive
        compute = self._compute(protocol, mode)
        limits = _Limits(config.s, self.strict)
        delivery = Delivery.empty(config.machines, protocol.word_dtype)
        rounds: list[RoundStats] = []
        states: list[ClusterState] = []
        for r in range(1, self.max_rounds + 2):
            start = time.perf_counter()
            holding = state.sizes() + delivery.words_per_machine()
            limits.check("memory", r, holding)
            state, batch = _step_result(compute(RoundContext(r, config, seed), state, delivery), protocol, round=r)
            _check_state(state, config, protocol, round=r)
            if record_states:      # a copy: a protocol may overwrite its memory in place next round
                states.append(ClusterState(state.words.copy(), state.offsets.copy()))
            if batch.num_messages == 0:
                kept = state.sizes()
                limits.check("memory", r, kept)
                output_stats = OutputStats(int(holding.max(initial=0)), float(holding.mean()), int(kept.max(initial=0)),
                                           time.perf_counter() - start)
                break
            if r > self.max_rounds:
                raise ProtocolError(f"{protocol.name} still sending after max_rounds = {self.max_rounds}", round=r)
            sent = _check_batch(batch, config, protocol, round=r)
            limits.check("send", r, sent)
            delivery = route(batch, config.machines)
            received = delivery.words_per_machine()
            limits.check("receive", r, received)
            active = int(np.count_nonzero((holding > 0) | (sent > 0)))
            stats = RoundStats(r, int(holding.max(initial=0)), float(holding.mean()), int(sent.max(initial=0)),
                               int(received.max(initial=0)), batch.num_words, batch.num_messages, active,
                               time.perf_counter() - start)
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
             mode: str = "auto", max_rounds: int = 10_000, verify: bool = False) -> RunResult:
    """Run a protocol once (see :class:`Simulator`); with ``verify=True`` the trace records the
    verdict of checking the output against the protocol's reference solver."""
    result = Simulator(config, strict=strict, mode=mode, max_rounds=max_rounds).run(protocol, data, seed=seed)
    if verify:
        words = protocol.validate_input(config, data)
        trace = result.trace.with_verified(protocol.verify(words, result.output))
        result = RunResult(result.output, trace, result.state, result.states)
    return result


def _machine_by_machine(protocol: Protocol, ctx: RoundContext, state: ClusterState,
                        delivery: Delivery) -> tuple[ClusterState, MessageBatch]:
    """Run the per-machine step on every machine and assemble the cluster's state and messages."""
    dtype = protocol.word_dtype
    memories, messages = [], []
    for machine in range(state.machines):
        returned = protocol.step(ctx, machine, state.memory(machine), delivery.inbox(machine))
        try:
            memory, outgoing = returned
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"step must return (memory, messages), got {type(returned).__name__}",
                                round=ctx.round, machine=machine) from exc
        memories.append(memory)
        try:
            messages.extend((machine, dst, payload) for dst, payload in outgoing)
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"messages must be (destination, payload) pairs ({exc})",
                                round=ctx.round, machine=machine) from exc
    try:
        new_state = ClusterState.from_list(memories, dtype)
        batch = MessageBatch.from_list(messages, dtype)
    except ProtocolError as exc:
        raise ProtocolError(str(exc), round=ctx.round) from exc
    return new_state, batch


def _check_state(state: object, config: MPCConfig, protocol: Protocol, *, round: int) -> None:
    if not isinstance(state, ClusterState):
        raise ProtocolError(f"{protocol.name} returned a {type(state).__name__}, not a ClusterState", round=round)
    if state.machines != config.machines:
        raise ProtocolError(f"{protocol.name} returned a state of {state.machines} machines, "
                            f"the cluster has {config.machines}", round=round)
    if state.dtype != protocol.word_dtype:
        raise ProtocolError(f"{protocol.name} returned {state.dtype} words, its word dtype is "
                            f"{np.dtype(protocol.word_dtype)}", round=round)


def _step_result(returned: object, protocol: Protocol, *, round: int) -> tuple[ClusterState, MessageBatch]:
    """A round's (state, messages) pair; ProtocolError if it is not shaped like one."""
    try:
        state, batch = returned
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{protocol.name} must return (ClusterState, MessageBatch), got "
                            f"{type(returned).__name__}", round=round) from exc
    if not isinstance(batch, MessageBatch):
        raise ProtocolError(f"{protocol.name} returned a {type(batch).__name__}, not a MessageBatch", round=round)
    return state, batch


def _check_batch(batch: MessageBatch, config: MPCConfig, protocol: Protocol, *, round: int) -> np.ndarray:
    """Validate a round's messages and return the words sent per machine."""
    if batch.dtype != protocol.word_dtype:
        raise ProtocolError(f"messages carry {batch.dtype} words, the protocol's word dtype is "
                            f"{np.dtype(protocol.word_dtype)}", round=round)
    machines = config.machines
    bad_src = np.flatnonzero((batch.src < 0) | (batch.src >= machines))
    if bad_src.size:
        raise ProtocolError(f"message {int(bad_src[0])} has source {int(batch.src[bad_src[0]])}, "
                            f"not a machine id (0..{machines - 1})", round=round)
    bad_dst = np.flatnonzero((batch.dst < 0) | (batch.dst >= machines))
    if bad_dst.size:
        j = int(bad_dst[0])
        raise UnknownDestination(round=round, machine=int(batch.src[j]), destination=int(batch.dst[j]),
                                 machines=machines)
    lengths = batch.lengths()
    empty = np.flatnonzero(lengths <= 0)
    if empty.size:
        j = int(empty[0])
        raise ProtocolError(f"message {j} to machine {int(batch.dst[j])} carries {int(lengths[j])} words "
                            f"(messages must carry at least one word)", round=round, machine=int(batch.src[j]))
    return np.bincount(batch.src, weights=lengths, minlength=machines).astype(np.int64)
