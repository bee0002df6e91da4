"""The backend-neutral parts of the round engine, shared by the local and the distributed backends.

Every check and every count of a round lives here, written for any contiguous range of machines
(the whole cluster, or one block of it), so that the backends differ only in where the work runs:

* the per-machine style, split in its three phases (steps, then the kept memories, then the
  messages assembled), whose errors name global machine ids;
* the checks of a round's result (state shape, messages' dtype, sources, destinations, lengths);
* the limits: :func:`over_limit` finds the machines over ``s`` where the amounts are, and
  :class:`Limits` raises (strict) or records them (non-strict) in the engine's order;
* :class:`Traffic`: a round's accounting as sums and maxima, merged over blocks with ``+`` and
  turned into the same :class:`~mpc_sim.trace.RoundStats` whatever the grouping.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import MPCConfig
from ..errors import (LimitExceeded, MemoryLimitExceeded, MPCError, ProtocolError, ReceiveLimitExceeded,
                      SendLimitExceeded, StepError, UnknownDestination)
from ..protocol import Protocol, RoundContext
from ..state import ClusterState, Delivery, MessageBatch, as_words, concat_batches, ragged_offsets
from ..trace import OutputStats, RoundStats, Violation

__all__ = [
    "BackendError", "CheckpointError", "LIMIT_ERRORS", "Limits", "over_limit", "Traffic",
    "run_steps", "call_batch_step", "assemble_state", "assemble_batch", "concat_batches", "machine_by_machine",
    "step_result", "check_state", "initial_state", "check_message_dtype", "check_sources", "check_destinations",
    "check_lengths", "check_batch",
]

LIMIT_ERRORS: dict[str, type[LimitExceeded]] = {
    "memory": MemoryLimitExceeded, "send": SendLimitExceeded, "receive": ReceiveLimitExceeded,
}


class BackendError(MPCError):
    """A distributed backend could not run: scheduler unreachable, workers lost more often than
    the retry budget allows, a replayed round that disagrees with its first run."""


class CheckpointError(BackendError):
    """A checkpoint directory that cannot be written to or resumed from (it names why)."""


# --------------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------------
def over_limit(amounts: np.ndarray, s: int, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The machines (ids offset by ``first``) whose amount exceeds ``s``, and their amounts.

    Examples
    --------
    >>> machines, amounts = over_limit(np.array([3, 5, 4, 9]), 4, first=10)
    >>> machines.tolist(), amounts.tolist()
    ([11, 13], [5, 9])
    """
    over = np.flatnonzero(amounts > s)
    return (over + first).astype(np.int64), np.asarray(amounts)[over].astype(np.int64)


class Limits:
    """Per-machine amounts against ``s``: raises the typed error of the first machine over the
    limit (strict) or records a :class:`~mpc_sim.trace.Violation` for each (non-strict)."""

    def __init__(self, s: int, strict: bool):
        self.s = s
        self.strict = strict
        self.violations: list[Violation] = []

    def check(self, kind: str, round: int, amounts: np.ndarray) -> None:
        """Check the amounts of the whole cluster (machine ``i`` is ``amounts[i]``)."""
        self.report(kind, round, *over_limit(amounts, self.s))

    def report(self, kind: str, round: int, machines: np.ndarray, amounts: np.ndarray) -> None:
        """Machines found over the limit (in increasing id order) and their amounts."""
        if machines.shape[0] == 0:
            return
        if self.strict:
            raise LIMIT_ERRORS[kind](round=round, machine=int(machines[0]), observed=int(amounts[0]), limit=self.s)
        self.violations.extend(Violation(kind, round, int(m), int(a), self.s) for m, a in zip(machines, amounts))


# --------------------------------------------------------------------------------------------------
# Accounting
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Traffic:
    """One round's accounting over some machines, as maxima and sums (merge blocks with ``+``).

    Examples
    --------
    >>> a = Traffic.measure(np.array([4, 0]), np.array([2, 0]), words=2, messages=1)
    >>> b = Traffic.measure(np.array([1]), np.array([3]), words=3, messages=2)
    >>> (a + b).round_stats(1, max_received=5, wall_time=0.0).counts()
    (1, 4, 1.6666666666666667, 3, 5, 5, 3, 2)
    """

    machines: int
    max_holding: int
    total_holding: int
    max_sent: int
    words: int
    messages: int
    active: int

    @classmethod
    def measure(cls, holding: np.ndarray, sent: np.ndarray, *, words: int, messages: int) -> "Traffic":
        """From the words each machine holds when the round starts and the words it sends."""
        return cls(int(holding.shape[0]), int(holding.max(initial=0)), int(holding.sum()), int(sent.max(initial=0)),
                   int(words), int(messages), int(np.count_nonzero((holding > 0) | (sent > 0))))

    def __add__(self, other: "Traffic") -> "Traffic":
        return Traffic(self.machines + other.machines, max(self.max_holding, other.max_holding),
                       self.total_holding + other.total_holding, max(self.max_sent, other.max_sent),
                       self.words + other.words, self.messages + other.messages, self.active + other.active)

    @property
    def mean_holding(self) -> float:
        # the exact integer sum over the machine count: the same float however blocks are grouped
        return self.total_holding / self.machines

    def round_stats(self, round: int, *, max_received: int, wall_time: float) -> RoundStats:
        return RoundStats(round, self.max_holding, self.mean_holding, self.max_sent, int(max_received), self.words,
                          self.messages, self.active, wall_time)

    def output_stats(self, max_kept: int, wall_time: float) -> OutputStats:
        return OutputStats(self.max_holding, self.mean_holding, int(max_kept), wall_time)


# --------------------------------------------------------------------------------------------------
# The per-machine style, in three phases
# --------------------------------------------------------------------------------------------------
def run_steps(protocol: Protocol, ctx: RoundContext, state: ClusterState, delivery: Delivery,
              first: int = 0) -> tuple[list, list[MessageBatch], Exception | None]:
    """Run ``step`` on every machine of ``state`` (machine ``i`` is ``first + i``).

    Returns the kept memories as returned, the messages of each machine that sent any as a
    batch (converted right after its step, so a round's messages never exist as millions of
    Python objects at once), and the first error met converting messages: it is raised by
    :func:`assemble_batch`, after the memories are assembled, as if every message had been
    converted at the end (the engine's order of errors)."""
    memories, batches, malformed = [], [], None
    dtype = protocol.word_dtype
    for i in range(state.machines):
        machine = first + i
        try:
            returned = protocol.step(ctx, machine, state.memory(i), delivery.inbox(i))
        except MPCError:
            raise
        except Exception as exc:        # the user's code: say where it ran
            raise StepError(exc, round=ctx.round, machine=machine) from exc
        try:
            memory, outgoing = returned
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"step must return (memory, messages), got {type(returned).__name__}",
                                round=ctx.round, machine=machine) from exc
        memories.append(memory)
        try:
            sent = [(machine, dst, payload) for dst, payload in outgoing]
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"messages must be (destination, payload) pairs ({exc})",
                                round=ctx.round, machine=machine) from exc
        if sent and malformed is None:
            try:
                batches.append(MessageBatch.from_list(sent, dtype))
            except ProtocolError as exc:
                malformed = ProtocolError(str(exc), round=ctx.round)
                malformed.__cause__ = exc
            except Exception as exc:
                malformed = exc
    return memories, batches, malformed


def call_batch_step(protocol: Protocol, ctx: RoundContext, state: ClusterState, delivery: Delivery):
    """``protocol.batch_step``, an exception of the user's code re-raised as :class:`StepError`
    with the round attached (the original as its cause)."""
    try:
        return protocol.batch_step(ctx, state, delivery)
    except MPCError:
        raise
    except Exception as exc:
        raise StepError(exc, round=ctx.round) from exc


def assemble_state(memories: list, dtype: np.dtype, *, round: int, first: int = 0) -> ClusterState:
    """The kept memories as a ragged state (what :meth:`ClusterState.from_list` does, naming
    global machine ids in its errors)."""
    try:
        arrays = [as_words(m, dtype, f"memory of machine {first + i}") for i, m in enumerate(memories)]
    except ProtocolError as exc:
        raise ProtocolError(str(exc), round=round) from exc
    words = np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)
    return ClusterState(words.astype(dtype, copy=False), ragged_offsets([a.shape[0] for a in arrays]))


def assemble_batch(batches: list[MessageBatch], malformed: Exception | None, dtype: np.dtype) -> MessageBatch:
    """The machines' batches as one, in machine order (raises what :func:`run_steps` met)."""
    if malformed is not None:
        raise malformed
    return concat_batches(batches, dtype)


def machine_by_machine(protocol: Protocol, ctx: RoundContext, state: ClusterState,
                       delivery: Delivery) -> tuple[ClusterState, MessageBatch]:
    """Run the per-machine step on every machine and assemble the cluster's state and messages."""
    memories, batches, malformed = run_steps(protocol, ctx, state, delivery, ctx.first_machine)
    new_state = assemble_state(memories, protocol.word_dtype, round=ctx.round, first=ctx.first_machine)
    return new_state, assemble_batch(batches, malformed, protocol.word_dtype)


# --------------------------------------------------------------------------------------------------
# Checks of a round's result
# --------------------------------------------------------------------------------------------------
def step_result(returned: object, protocol: Protocol, *, round: int) -> tuple[ClusterState, MessageBatch]:
    """A round's (state, messages) pair; ProtocolError if it is not shaped like one."""
    try:
        state, batch = returned
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{protocol.name} must return (ClusterState, MessageBatch), got "
                            f"{type(returned).__name__}", round=round) from exc
    if not isinstance(batch, MessageBatch):
        raise ProtocolError(f"{protocol.name} returned a {type(batch).__name__}, not a MessageBatch", round=round)
    return state, batch


def check_state(state: object, machines: int, protocol: Protocol, *, round: int, where: str = "the cluster") -> None:
    """The state a protocol returned has ``machines`` machines of its word dtype."""
    if not isinstance(state, ClusterState):
        raise ProtocolError(f"{protocol.name} returned a {type(state).__name__}, not a ClusterState", round=round)
    if state.machines != machines:
        raise ProtocolError(f"{protocol.name} returned a state of {state.machines} machines, "
                            f"{where} has {machines}", round=round)
    if state.dtype != protocol.word_dtype:
        raise ProtocolError(f"{protocol.name} returned {state.dtype} words, its word dtype is "
                            f"{np.dtype(protocol.word_dtype)}", round=round)


def initial_state(protocol: Protocol, config: MPCConfig, words: np.ndarray) -> ClusterState:
    """The protocol's initial state of ``words``, checked like any round's state (round 0)."""
    state = protocol.initial_state(config, words)
    check_state(state, config.machines, protocol, round=0)
    return state


def check_message_dtype(batch: MessageBatch, protocol: Protocol, *, round: int) -> None:
    if batch.dtype != protocol.word_dtype:
        raise ProtocolError(f"messages carry {batch.dtype} words, the protocol's word dtype is "
                            f"{np.dtype(protocol.word_dtype)}", round=round)


def check_sources(batch: MessageBatch, machines: int, *, round: int, first: int = 0, count: int | None = None) -> None:
    """Sources are machine ids; with ``count``, ids of the block ``first .. first + count - 1``."""
    if count is None:
        bad = np.flatnonzero((batch.src < 0) | (batch.src >= machines))
        if bad.size:
            raise ProtocolError(f"message {int(bad[0])} has source {int(batch.src[bad[0]])}, "
                                f"not a machine id (0..{machines - 1})", round=round)
        return
    bad = np.flatnonzero((batch.src < first) | (batch.src >= first + count))
    if bad.size:
        raise ProtocolError(f"message {int(bad[0])} of a block-local batch step has source {int(batch.src[bad[0]])}, "
                            f"not a machine of its block ({first}..{first + count - 1})", round=round)
    if batch.num_messages > 1 and (np.diff(batch.src) < 0).any():
        j = int(np.flatnonzero(np.diff(batch.src) < 0)[0]) + 1
        raise ProtocolError(f"message {j} of a block-local batch step comes from machine {int(batch.src[j])} after a "
                            f"message from machine {int(batch.src[j - 1])}: block-local messages must be sorted by "
                            f"source", round=round)


def check_destinations(batch: MessageBatch, machines: int, *, round: int) -> None:
    bad = np.flatnonzero((batch.dst < 0) | (batch.dst >= machines))
    if bad.size:
        j = int(bad[0])
        raise UnknownDestination(round=round, machine=int(batch.src[j]), destination=int(batch.dst[j]),
                                 machines=machines)


def check_lengths(batch: MessageBatch, *, round: int) -> np.ndarray:
    """Every message carries at least one word; returns the lengths."""
    lengths = batch.lengths()
    empty = np.flatnonzero(lengths <= 0)
    if empty.size:
        j = int(empty[0])
        raise ProtocolError(f"message {j} to machine {int(batch.dst[j])} carries {int(lengths[j])} words "
                            f"(messages must carry at least one word)", round=round, machine=int(batch.src[j]))
    return lengths


def check_batch(batch: MessageBatch, config: MPCConfig, protocol: Protocol, *, round: int) -> np.ndarray:
    """Validate a round's messages (whole cluster) and return the words sent per machine."""
    check_message_dtype(batch, protocol, round=round)
    check_sources(batch, config.machines, round=round)
    check_destinations(batch, config.machines, round=round)
    lengths = check_lengths(batch, round=round)
    return np.bincount(batch.src, weights=lengths, minlength=config.machines).astype(np.int64)
