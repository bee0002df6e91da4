"""The local backend: every round in this process, on the whole cluster's arrays at once.

The shortest complete :class:`~mpc_sim.backends.interface.Backend`: the local computation is the
protocol's batch step or its per-machine step on every machine, the routing is one call of the
numba route kernel (:func:`mpc_sim.routing.route`). It hands every round's state and inboxes to
the engine, so :meth:`Simulator.steps` and ``record_messages`` run on it.

Examples
--------
>>> from mpc_sim import MPCConfig, Simulator, make_protocol
>>> protocol = make_protocol("prefix-sum")
>>> config = protocol.default_config(64, 0.5)
>>> data = protocol.generate_input(config, seed=0)
>>> Simulator(config, backend=LocalBackend()).run(protocol, data).trace.counts() == \\
...     Simulator(config).run(protocol, data).trace.counts()
True
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from ..protocol import RoundContext
from ..routing import route
from ..state import ClusterState, Delivery
from ..trace import RoundPeaks
from .base import Traffic, call_batch_step, check_batch, check_state, initial_state, machine_by_machine, over_limit, \
    step_result
from .interface import Backend, BackendRun, Computed, History, Job, Routed

__all__ = ["LocalBackend"]


class LocalBackend(Backend):
    """Runs the rounds in this process (the default backend, registered as ``"local"``)."""

    name = "local"
    runs_steps = True
    records_messages = True

    @contextlib.contextmanager
    def open(self, job: Job) -> Iterator[BackendRun]:
        yield _LocalRun(job)


class _LocalRun(BackendRun):
    """The cluster's state and inboxes as arrays of this process; a round is one call each."""

    def __init__(self, job: Job):
        self.job = job
        protocol, config = job.protocol, job.config
        if job.mode == "batch":
            self.step = lambda ctx, state, delivery: call_batch_step(protocol, ctx, state, delivery)
        else:
            self.step = lambda ctx, state, delivery: machine_by_machine(protocol, ctx, state, delivery)
        self.s, self.machines = config.s, config.machines
        self.state: ClusterState | None = None
        self.delivery = Delivery.empty(config.machines, protocol.word_dtype)
        self.batch = None
        self.holding: np.ndarray | None = None

    def start(self, words: np.ndarray | None) -> History:
        self.state = initial_state(self.job.protocol, self.job.config, words)
        return History()

    def compute(self, r: int, keep_state: bool) -> Computed:
        job = self.job
        holding = self.state.sizes() + self.delivery.words_per_machine()
        over = over_limit(holding, self.s)
        if job.strict and over[0].shape[0]:
            return Computed(over)           # the engine raises the memory error: compute nothing
        state, batch = step_result(self.step(RoundContext(r, job.config, job.seed), self.state, self.delivery),
                                   job.protocol, round=r)
        check_state(state, self.machines, job.protocol, round=r)
        self.state, self.holding = state, holding
        messages = batch.num_messages
        if messages:
            self.batch = batch
            return Computed(over, messages=messages, state=state)
        kept = state.sizes()
        return Computed(over, state=state, kept_over=over_limit(kept, self.s), max_kept=int(kept.max(initial=0)),
                        traffic=Traffic.measure(holding, np.zeros_like(holding), words=0, messages=0),
                        peaks=RoundPeaks.measure(r, np.maximum(holding, kept)))

    def route(self, r: int) -> Routed:
        job, batch, holding = self.job, self.batch, self.holding
        self.batch = None           # delivered: only the routed copy is needed by the next round
        sent = check_batch(batch, job.config, job.protocol, round=r)
        send_over = over_limit(sent, self.s)
        if job.strict and send_over[0].shape[0]:
            return Routed(send_over)
        self.delivery = delivery = route(batch, self.machines)
        received = delivery.words_per_machine()
        traffic = Traffic.measure(holding, sent, words=batch.num_words, messages=batch.num_messages)
        return Routed(send_over, over_limit(received, self.s), int(received.max(initial=0)), traffic,
                      RoundPeaks.measure(r, holding, sent, received), delivery)
