"""What a backend implements: where a round's local computation and its message routing run.

The engine (:meth:`mpc_sim.simulator.Simulator.run`) owns everything else, once for every
backend: the round loop, the order in which errors are raised, the limits (strict or recorded),
``max_rounds`` and the declared round bound, the replay of rounds after a restart, ``on_round``,
the recorded states and messages, and the :class:`~mpc_sim.trace.Trace`. A backend supplies

* a :class:`Backend`: its name, the style ``mode="auto"`` runs, what it can record, and
  :meth:`Backend.open`, which starts one run of a protocol (a :class:`Job`);
* a :class:`BackendRun` for that run, whose hooks the engine calls, in this order, every round:
  :meth:`~BackendRun.compute` (the local computation; a :class:`Computed`), then, unless no
  message was sent, :meth:`~BackendRun.route` (the messages checked and delivered; a
  :class:`Routed`), then :meth:`~BackendRun.commit` (the round is recorded).

A hook reports amounts over the limit as ``(machines, amounts)`` pairs
(:func:`~mpc_sim.backends.base.over_limit`) and leaves raising to the engine, so every backend
raises the same first error and records the same violations. A backend that can lose work raises
:class:`Lost` from :meth:`~BackendRun.compute` or :meth:`~BackendRun.commit`; the engine asks
:meth:`~BackendRun.recover` where to restart and replays the rounds it had recorded (checking they
give the same counts).

Backends are found by name in :mod:`mpc_sim.backends.registry`; see
:class:`mpc_sim.backends.local.LocalBackend` for the shortest complete one.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..config import MPCConfig
from ..protocol import Protocol
from ..state import ClusterState, Delivery
from ..trace import Retry, RoundPeaks, RoundStats, Violation
from .base import Traffic

__all__ = ["Over", "Recorded", "NO_MACHINES", "Job", "History", "Computed", "Routed", "Lost", "Backend", "BackendRun",
           "take_input"]

Over = tuple[np.ndarray, np.ndarray]
"""Machines over a limit, in increasing id order, and their amounts (two int64 arrays)."""

Recorded = tuple[np.ndarray, np.ndarray, np.ndarray]
"""A round's messages in delivery order: sources, destinations, words carried (three int64 arrays)."""

NO_MACHINES: Over = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
"""No machine over the limit."""


@dataclass(frozen=True)
class Job:
    """One run a backend is asked for: the protocol, the cluster, the seed (normalised), the style
    that runs (``"batch"`` or ``"machine"``, already resolved), whether limits are strict, and
    whether the run records its messages (:attr:`Backend.records_messages`)."""

    protocol: Protocol
    config: MPCConfig
    seed: int
    mode: str
    strict: bool
    record_messages: bool = False


@dataclass(frozen=True)
class History:
    """The rounds a run starts after: none for a fresh run, those of the checkpoint it resumes
    (their stats, violations and, where the checkpoint has them, peaks)."""

    rounds: tuple[RoundStats, ...] = ()
    violations: tuple[Violation, ...] = ()
    peaks: tuple[RoundPeaks, ...] = ()


class Computed(NamedTuple):
    """A round's local computation, as :meth:`BackendRun.compute` reports it (immutable; a named
    tuple rather than a frozen dataclass: one is made every round, at a third of the cost).

    ``holding_over``: machines holding more than ``s`` words (kept memory plus inbox) when the round
    started. ``error``: the first error the computation met (raised by the engine after the memory
    check). ``messages``: messages sent (0: this was the final, message-free computation).
    ``state``: the kept memories of the whole cluster, needed when ``messages == 0`` or when asked
    to keep it. For the final computation also ``kept_over``, ``max_kept`` (the largest kept
    memory) and ``traffic`` (what was held, nothing sent). ``peaks``: optional per-machine peaks.

    When strict limits will raise on ``holding_over``, nothing else is read: a backend may stop
    there (``Computed(over)``).
    """

    holding_over: Over
    error: BaseException | None = None
    messages: int = 0
    state: ClusterState | None = None
    kept_over: Over = NO_MACHINES
    max_kept: int = 0
    traffic: Traffic | None = None
    peaks: RoundPeaks | None = None


class Routed(NamedTuple):
    """A round's messages delivered, as :meth:`BackendRun.route` reports them (immutable).

    ``send_over``/``receive_over``: machines that sent / were sent more than ``s`` words;
    ``max_received``: the most words a machine was sent; ``traffic``: the round's accounting;
    ``peaks``: optional per-machine peaks; ``delivery``: the inboxes of the next round, for backends
    that hand them to this process (:attr:`Backend.runs_steps`, :attr:`Backend.records_messages`);
    ``recorded``: the messages in delivery order, for backends that record them without handing
    the inboxes over (read instead of ``delivery`` when the job records messages).
    When strict limits will raise on ``send_over``, nothing else is read (``Routed(over)``).
    """

    send_over: Over
    receive_over: Over = NO_MACHINES
    max_received: int = 0
    traffic: Traffic | None = None
    peaks: RoundPeaks | None = None
    delivery: Delivery | None = None
    recorded: Recorded | None = None


class Lost(Exception):
    """Raised by a hook when the backend lost what the run needed (a worker, its data): the engine
    calls :meth:`BackendRun.recover` with ``error``, the backend's own exception."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def take_input(protocol: Protocol, config: MPCConfig, data: object, *, copy: bool = True) -> np.ndarray:
    """The protocol's validated input words; with ``copy``, never the caller's array (protocols may
    overwrite their memory in place)."""
    words = protocol.validate_input(config, data)
    if copy and isinstance(data, np.ndarray) and np.may_share_memory(words, data):
        words = words.copy()
    return words


class BackendRun(ABC):
    """One run of one protocol on a backend (made by :meth:`Backend.open`).

    The engine calls :meth:`start` once, then for every round ``r``: :meth:`compute`; unless no
    message was sent, :meth:`route`; then :meth:`commit`. After a :class:`Lost`, :meth:`recover`.
    """

    retries: Sequence[Retry] = ()
    """The restarts of this run (:attr:`mpc_sim.trace.Trace.retries`), read when it ends."""

    @abstractmethod
    def start(self, words: np.ndarray | None) -> History:
        """Place the input words (``None`` only for a backend that resumes a checkpoint) on the
        cluster; returns the rounds already done."""

    @abstractmethod
    def compute(self, r: int, keep_state: bool) -> Computed:
        """Round ``r``'s local computation on every machine: what they held on entry, the
        computation's first error, the messages sent; the state when the round sent nothing or
        when ``keep_state``."""

    @abstractmethod
    def route(self, r: int) -> Routed:
        """Check round ``r``'s messages (raising the first malformed one), deliver them for the
        next round, and report what was sent and received."""

    def commit(self, r: int, rounds: Sequence[RoundStats], violations: Sequence[Violation]) -> None:
        """Round ``r`` is done; ``rounds`` and ``violations`` are the run's so far (to checkpoint)."""

    def recover(self, r: int, error: BaseException) -> int:
        """After losing ``error`` in round ``r``: restart and return the round to run next (the
        engine replays the rounds before ``r``). By default a loss ends the run."""
        raise error


class Backend(ABC):
    """Where a simulation runs (see the module docstring); registered by name with
    :func:`~mpc_sim.backends.registry.register_backend`.

    Attributes
    ----------
    name : str
        The name it is registered under.
    runs_steps : bool
        Every round's state and inboxes are in this process (:meth:`Simulator.steps` runs here).
    records_messages : bool
        :class:`Routed` carries the delivery or, when the job records messages, ``recorded``, so
        the engine can record the messages.
    """

    name: str = ""
    runs_steps: bool = False
    records_messages: bool = False

    def auto_mode(self, protocol: Protocol) -> str:
        """The style ``mode="auto"`` runs: ``batch`` when the protocol has a batch step."""
        return "batch" if protocol.has_batch_step() else "machine"

    def take_input(self, protocol: Protocol, config: MPCConfig, data: object) -> np.ndarray | None:
        """The input words :meth:`BackendRun.start` gets (validated, never the caller's array)."""
        return take_input(protocol, config, data)

    @abstractmethod
    def open(self, job: Job) -> AbstractContextManager[BackendRun]:
        """A context manager giving the :class:`BackendRun` of ``job`` and releasing what the run
        holds on the way out."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
