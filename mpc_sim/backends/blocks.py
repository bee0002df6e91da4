"""One round of one block of machines, as pure functions of arrays: what a distributed task runs.

The machines are cut into contiguous blocks (:func:`partition`). A round of block ``b`` is two
functions, each a task of the distributed backend:

* :func:`compute_block` takes the block's kept memories and its delivered inbox, runs the
  protocol's computation on its machines, checks the result, measures it (holding, sent, kept,
  machines over the limit, the block's peaks) and splits the outgoing messages by destination block
  (:func:`split_by_block`, a stable counting sort): one message batch per destination block.
* :func:`deliver_block` takes the pieces addressed to its block, one from every source block in
  block order, concatenates them and delivers them with the numba route kernel, then measures
  what each machine received (the most, those over the limit, the block's peaks). It also takes the block's own :func:`compute_block` result, for
  the block's piece and its kept memories, which it passes on with the inbox: the next round's
  input, on the worker that computed the block.

Concatenating the pieces in source-block order gives each destination's messages in the order of
the whole cluster's batch (sources are blocks of increasing machine ids), so inboxes are exactly
those of the local engine. Nothing here raises on a protocol's mistake: errors are returned in the
reports with the phase of the round they happened in (:data:`PHASES`), and the driver raises the
one the local engine would have raised first.

Examples
--------
>>> from mpc_sim import MPCConfig, Protocol, spread_input
>>> class Shift(Protocol):           # every machine passes its words to the next machine
...     name = "shift"
...     def step(self, ctx, machine, memory, inbox):
...         if ctx.round == 1 and memory.size:
...             return memory[:0], [((machine + 1) % ctx.machines, memory)]
...         return np.concatenate([memory, inbox.words]), []
>>> cfg = MPCConfig(n=16, eps=0.5)                          # s = 4, 4 machines
>>> plan = BlockPlan(Shift(), cfg, seed=0, style="machine", bounds=partition(cfg.machines, 2))
>>> plan.bounds
(0, 2, 4)
>>> first = spread_input(np.arange(16), cfg)
>>> outputs = [compute_block(plan, b, 1, (block_state(first, *plan.block(b)), None)) for b in range(2)]
>>> [[len(p.words) for p in pieces] for _, pieces, _ in outputs]    # words to blocks 0 and 1
[[4, 4], [4, 4]]
>>> (kept, delivery), received = deliver_block(plan, 0, outputs[0], None, outputs[1][1][0])
>>> delivery.inbox(0).sources.tolist(), delivery.inbox(0).words.tolist(), received.max_received
([3], [12, 13, 14, 15], 4)
"""
from __future__ import annotations

import pickle
import traceback
from dataclasses import dataclass

import numpy as np

from ..config import MPCConfig
from ..errors import LimitExceeded, ProtocolError, UnknownDestination
from ..protocol import Protocol, RoundContext
from ..routing import route
from ..state import ClusterState, Delivery, MessageBatch
from ..trace import top_machines
from .base import (Traffic, assemble_batch, assemble_state, check_destinations, check_lengths, check_message_dtype,
                   call_batch_step, check_sources, check_state, concat_batches, over_limit, run_steps, step_result)

__all__ = ["PHASES", "COMPUTE_PHASES", "STYLES", "BlockPlan", "BlockError", "ComputeReport", "ReceiveReport",
           "partition", "block_state", "compute_block", "deliver_block", "delivered_messages", "split_by_block"]

# A round's phases in the order the local engine meets them; every error is tagged with one.
PHASES = ("step", "state", "messages", "state check", "message dtype", "sources", "destinations", "lengths",
          "internal")
COMPUTE_PHASES = frozenset(range(4))     # before the engine looks at whether anything was sent
STYLES = ("machine", "block", "cluster")


def partition(machines: int, blocks: int, weights: np.ndarray | None = None) -> tuple[int, ...]:
    """Bounds of ``blocks`` contiguous blocks (at most ``machines``, at least one machine each):
    of nearly equal size, or of nearly equal total ``weight`` (one non-negative weight per
    machine): every block's weight is within ``2 * max(weights)`` of ``sum(weights) / blocks``.

    Examples
    --------
    >>> partition(10, 3), partition(2, 5)
    ((0, 3, 6, 10), (0, 1, 2))
    >>> partition(10, 2, weights=np.array([9, 9, 1, 1, 1, 1, 1, 1, 1, 1]))     # the heavy machines apart
    (0, 1, 10)
    """
    if blocks < 1:
        raise ValueError(f"blocks must be >= 1, got {blocks}")
    blocks = min(int(blocks), machines)
    if weights is None:
        return tuple(int(x) for x in (np.arange(blocks + 1) * machines) // blocks)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (machines,) or not np.all(np.isfinite(weights)) or (weights < 0).any():
        raise ValueError(f"weights must be {machines} finite non-negative numbers, one per machine")
    cumulative = np.concatenate([[0.0], np.cumsum(weights)])          # weight before machine i
    targets = cumulative[-1] * np.arange(1, blocks) / blocks
    after = np.searchsorted(cumulative, targets, side="left")           # first bound at or past the target
    before = np.maximum(after - 1, 0)
    closer = np.where(np.abs(cumulative[before] - targets) <= np.abs(cumulative[after] - targets), before, after)
    bounds = [0]
    for i, cut in enumerate(closer, start=1):                           # one machine at least per block
        bounds.append(int(min(max(cut, bounds[-1] + 1), machines - (blocks - i))))
    return tuple(bounds + [machines])


def block_state(state: ClusterState, lo: int, hi: int) -> ClusterState:
    """Machines ``lo .. hi - 1`` of a cluster state, as a state of their own (a copy)."""
    first, last = state.offsets[lo], state.offsets[hi]
    return ClusterState(state.words[first:last].copy(), state.offsets[lo:hi + 1] - first)


@dataclass(frozen=True)
class BlockPlan:
    """What every block task of a run needs: the protocol, the cluster, the seed, the style and
    the block bounds.

    ``style`` is ``machine`` (the per-machine step on every machine of the block), ``block``
    (the protocol's block-local batch step, see :attr:`~mpc_sim.protocol.Protocol.block_batch`)
    or ``cluster`` (a batch step that is not block-local: one block holds the whole cluster).
    """

    protocol: Protocol
    config: MPCConfig
    seed: int
    style: str
    bounds: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {self.style!r}")
        bounds = np.asarray(self.bounds)
        if bounds[0] != 0 or bounds[-1] != self.config.machines or (np.diff(bounds) <= 0).any():
            raise ValueError(f"block bounds must rise from 0 to {self.config.machines}, got {self.bounds}")
        if self.style == "cluster" and len(self.bounds) != 2:
            raise ValueError("a batch step that is not block-local runs as a single block")

    @property
    def blocks(self) -> int:
        return len(self.bounds) - 1

    def block(self, b: int) -> tuple[int, int]:
        """First machine and one past the last machine of block ``b``."""
        return self.bounds[b], self.bounds[b + 1]

    def describe(self, b: int) -> str:
        lo, hi = self.block(b)
        return "the cluster" if self.blocks == 1 else f"block {b} (machines {lo}..{hi - 1})"


@dataclass(frozen=True)
class BlockError:
    """An error met by a block task, with the round's phase it happened in."""

    phase: int
    block: int
    error: BaseException | tuple
    traceback: str

    @classmethod
    def capture(cls, phase: int, block: int, exc: BaseException) -> "BlockError":
        text = "".join(traceback.format_exception(exc))
        try:                    # the error travels back pickled: keep it if it survives that
            pickle.loads(pickle.dumps(exc))
            error: BaseException | tuple = exc
        except Exception:
            if isinstance(exc, UnknownDestination):
                error = (UnknownDestination, dict(round=exc.round, machine=exc.machine,
                                                  destination=exc.destination, machines=exc.machines))
            elif isinstance(exc, LimitExceeded):
                error = (type(exc), dict(round=exc.round, machine=exc.machine, observed=exc.observed,
                                         limit=exc.limit))
            else:
                error = ProtocolError(f"{type(exc).__name__}: {exc} (the exception could not be pickled)")
        return cls(phase, block, error, text)

    def exception(self) -> BaseException:
        """The error to raise on the driver, its remote traceback attached as a note."""
        if isinstance(self.error, tuple):
            cls, kwargs = self.error
            exc = cls(**kwargs)
        else:
            exc = self.error
        exc.add_note(f"raised in the {PHASES[self.phase]} phase of block {self.block} on a Dask worker:\n"
                     + self.traceback)
        return exc


@dataclass(frozen=True, eq=False)
class ComputeReport:
    """What :func:`compute_block` measured: the block's traffic, the machines over the limit
    (memory when the round started, kept memory when it ended, words sent) and any error.

    The block's peaks (:func:`~mpc_sim.trace.top_machines`, global ids; merged over blocks with
    :func:`~mpc_sim.trace.merge_top`): ``memory_top`` of the words held when the round started,
    ``sent_top`` of the words sent, and, when the block sent nothing, ``final_top`` of the larger of
    what each machine held and kept (the final computation's memory, if no block sent anything)."""

    block: int
    messages: int
    traffic: Traffic | None
    memory_over: tuple[np.ndarray, np.ndarray]
    kept_over: tuple[np.ndarray, np.ndarray]
    max_kept: int
    send_over: tuple[np.ndarray, np.ndarray]
    error: BlockError | None
    memory_top: tuple[tuple[int, int], ...] = ()
    sent_top: tuple[tuple[int, int], ...] = ()
    final_top: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, eq=False)
class ReceiveReport:
    """What :func:`deliver_block` measured: the most words a machine of the block received,
    the machines that received more than ``s``, and the block's peaks of words received
    (``received_top``, global ids)."""

    block: int
    max_received: int
    receive_over: tuple[np.ndarray, np.ndarray]
    received_top: tuple[tuple[int, int], ...] = ()


_NONE_OVER = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))


def compute_block(plan: BlockPlan, b: int, r: int,
                  held: tuple[ClusterState, Delivery | None]) -> tuple[ClusterState, tuple[MessageBatch, ...],
                                                                      ComputeReport]:
    """Round ``r`` of block ``b``: its new kept memories, its messages split by destination block,
    and the report. ``held`` is the block's kept memories and inbox (``None``: nothing was
    delivered), as :func:`deliver_block` leaves them."""
    state, delivery = held
    protocol, config = plan.protocol, plan.config
    dtype = np.dtype(protocol.word_dtype)
    lo, hi = plan.block(b)
    count = hi - lo
    no_pieces = tuple(MessageBatch.empty(dtype) for _ in range(plan.blocks))
    # phase: an index into PHASES, where an error would be reported (8: the block machinery itself)
    phase, messages, memory_over, kept_over, max_kept, memory_top = 8, 0, _NONE_OVER, _NONE_OVER, 0, ()

    def report(traffic=None, send_over=_NONE_OVER, error=None, sent_top=(), final_top=()) -> ComputeReport:
        return ComputeReport(b, messages, traffic, memory_over, kept_over, max_kept, send_over, error,
                             memory_top, sent_top, final_top)

    try:
        if delivery is None:
            delivery = Delivery.empty(count, dtype)
        holding = state.sizes() + delivery.words_per_machine()
        memory_over, memory_top = over_limit(holding, config.s, lo), top_machines(holding, first=lo)
        ctx = RoundContext(r, config, plan.seed, lo)
        if plan.style == "machine":
            phase = 0
            memories, batches, malformed = run_steps(protocol, ctx, state, delivery, lo)
            phase = 1
            new_state = assemble_state(memories, dtype, round=r, first=lo)
            phase = 2
            batch = assemble_batch(batches, malformed, dtype)
        else:
            phase = 0
            new_state, batch = step_result(call_batch_step(protocol, ctx, state, delivery), protocol, round=r)
        phase = 3
        check_state(new_state, count, protocol, round=r, where=plan.describe(b))
        kept = new_state.sizes()
        kept_over, max_kept = over_limit(kept, config.s, lo), int(kept.max(initial=0))
        messages = batch.num_messages
        if messages == 0:
            return new_state, no_pieces, report(Traffic.measure(holding, np.zeros_like(holding), words=0, messages=0),
                                                final_top=top_machines(np.maximum(holding, kept), first=lo))
        phase = 4
        check_message_dtype(batch, protocol, round=r)
        phase = 5
        if plan.style == "block":
            check_sources(batch, config.machines, round=r, first=lo, count=count)
        else:
            check_sources(batch, config.machines, round=r)
        phase = 6
        check_destinations(batch, config.machines, round=r)
        phase = 7
        lengths = check_lengths(batch, round=r)
        phase = 8
        sent = np.bincount(batch.src - lo, weights=lengths, minlength=count).astype(np.int64)
        traffic = Traffic.measure(holding, sent, words=batch.num_words, messages=messages)
        return new_state, split_by_block(batch, plan.bounds), report(traffic, over_limit(sent, config.s, lo),
                                                                     sent_top=top_machines(sent, first=lo))
    except Exception as exc:        # returned, not raised: the driver raises what the local engine would
        return state, no_pieces, report(error=BlockError.capture(phase, b, exc))


def deliver_block(plan: BlockPlan, d: int, computed: tuple,
                  *pieces: MessageBatch | None) -> tuple[tuple[ClusterState, Delivery], ReceiveReport]:
    """Deliver to block ``d`` the pieces addressed to it: ``pieces`` has one per source block, in
    block order, ``None`` at ``d`` (the block's own piece comes with ``computed``, what
    :func:`compute_block` returned for it). Returns the block's kept memories and inbox for the
    next round, and the report. Taking ``computed`` keeps the task where the block's memories are."""
    lo, hi = plan.block(d)
    state, own = computed[0], computed[1][d]
    batch = concat_batches([own if i == d else piece for i, piece in enumerate(pieces)],
                           np.dtype(plan.protocol.word_dtype))
    routed = route(MessageBatch(batch.src, batch.dst - lo, batch.offsets, batch.words), hi - lo)
    messages = routed.messages
    delivery = Delivery(MessageBatch(messages.src, messages.dst + lo, messages.offsets, messages.words),
                        routed.machine_offsets)
    received = delivery.words_per_machine()
    return (state, delivery), ReceiveReport(d, int(received.max(initial=0)), over_limit(received, plan.config.s, lo),
                                            top_machines(received, first=lo))


def delivered_messages(delivered: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The messages :func:`deliver_block` delivered to its block, in delivery order: sources,
    destinations (global ids) and words carried. Concatenated over the blocks in block order,
    they are the whole round's messages in the local engine's delivery order."""
    (_, delivery), _ = delivered
    messages = delivery.messages
    return messages.src, messages.dst, messages.lengths()


def split_by_block(batch: MessageBatch, bounds: tuple[int, ...]) -> tuple[MessageBatch, ...]:
    """The batch cut by destination block, each piece keeping the batch's order (a stable
    counting sort by block, with the route kernel).

    Examples
    --------
    >>> b = MessageBatch.from_list([(0, 3, [1]), (1, 0, [2, 3]), (1, 2, [4])])
    >>> [(p.dst.tolist(), p.words.tolist()) for p in split_by_block(b, (0, 2, 4))]
    [([0], [2, 3]), ([3, 2], [1, 4])]
    """
    blocks = len(bounds) - 1
    if blocks == 1:
        return (batch,)
    block_of = np.searchsorted(np.asarray(bounds, dtype=np.int64), batch.dst, side="right") - 1
    # the message's index rides as its source: the sort's permutation comes out with the words
    by_block = route(MessageBatch(np.arange(batch.num_messages, dtype=np.int64), block_of.astype(np.int64),
                                  batch.offsets, batch.words), blocks)
    order = by_block.messages.src
    src, dst = batch.src[order], batch.dst[order]
    offsets, words, firsts = by_block.messages.offsets, by_block.messages.words, by_block.machine_offsets
    pieces = []
    for d in range(blocks):
        i, j = firsts[d], firsts[d + 1]
        pieces.append(MessageBatch(src[i:j], dst[i:j], offsets[i:j + 1] - offsets[i], words[offsets[i]:offsets[j]]))
    return tuple(pieces)
