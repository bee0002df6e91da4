"""Protocols for testing the distributed backend against the local engine.

Task arguments are copied to the workers, so a protocol cannot log its inboxes back to the test
the way :class:`~mpc_sim.strategies.ScriptedProtocol` does. :class:`Digesting` replays a schedule
but stamps a digest of every inbox into the kept memory it returns (same sizes, so the expected
counts are the schedule's): comparing the states of every round compares every delivery, word for
word and in order. :class:`BlockDigesting` does the same in a block-local batch step.
:class:`KillOnce` kills the worker process running one machine in one round (in either style), once
per marker file;
:class:`Sleeping` makes one round slow. :class:`Ballast` makes any protocol exceed its memory limit on one
machine in one round, and go on as it would.
"""
from __future__ import annotations

import hashlib
import os
import signal
import time
from dataclasses import dataclass

import numpy as np

from mpc_sim.protocol import Protocol
from mpc_sim.protocols.sample_sort import SampleSort
from mpc_sim.state import ClusterState, MessageBatch, ragged_offsets

from mpc_sim.strategies import ScriptedProtocol

__all__ = ["Digesting", "BlockDigesting", "KillOnce", "KillingSort", "KillingDigesting", "Sleeping", "Ballast", "stamp",
           "assert_same_report"]


def stamp(memory: np.ndarray, round: int, machine: int, sources: np.ndarray, words: np.ndarray) -> np.ndarray:
    """``memory`` with its first word's bits xor-ed with a digest of (round, machine, inbox)."""
    if memory.shape[0] == 0:
        return memory
    h = hashlib.blake2b(digest_size=8)
    for part in (np.array([round, machine]), sources.astype(np.int64), words.view(np.int64)):
        h.update(np.ascontiguousarray(part).tobytes())
    out = np.array(memory, copy=True)
    first = out[:1].view(np.int64)
    first ^= np.frombuffer(h.digest(), dtype=np.int64)
    return out


class Digesting(ScriptedProtocol):
    """A scripted protocol whose kept memories carry a digest of each inbox (per-machine style)."""

    name = "digesting"

    def step(self, ctx, machine, memory, inbox):
        kept, outgoing = super().step(ctx, machine, memory, inbox)
        return stamp(np.asarray(kept, dtype=self.word_dtype), ctx.round, machine, inbox.sources, inbox.words), outgoing


class BlockDigesting(Digesting):
    """The same, as a block-local batch step: messages by source machine, global ids."""

    block_batch = True

    def batch_step(self, ctx, state, delivery):
        memories, messages = [], []
        for i in range(state.machines):
            machine = ctx.first_machine + i
            kept, outgoing = self.step(ctx, machine, state.memory(i), delivery.inbox(i))
            memories.append(kept)
            messages.extend((machine, dst, payload) for dst, payload in outgoing)
        return ClusterState.from_list(memories, self.word_dtype), MessageBatch.from_list(messages, self.word_dtype)


class KillOnce:
    """Mixin: the worker process running ``kill_machine`` in ``kill_round`` kills itself (SIGKILL)
    if it can create ``marker``, so only the first attempt dies. Never in the driver's process."""

    kill_round: int
    kill_machine: int
    marker: str
    driver_pid: int

    def step(self, ctx, machine, memory, inbox):
        self._maybe_die(ctx.round, machine, machine + 1)
        return super().step(ctx, machine, memory, inbox)

    def batch_step(self, ctx, state, delivery):
        self._maybe_die(ctx.round, ctx.first_machine, ctx.first_machine + state.machines)
        return super().batch_step(ctx, state, delivery)

    def _maybe_die(self, round: int, lo: int, hi: int) -> None:
        if round == self.kill_round and lo <= self.kill_machine < hi and os.getpid() != self.driver_pid:
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class KillingSort(KillOnce, SampleSort):
    """SampleSort whose worker dies once in the middle of a round."""

    kill_round: int = 3
    kill_machine: int = 0
    marker: str = ""
    driver_pid: int = 0


class KillingDigesting(KillOnce, Digesting):
    """A digesting scripted protocol whose worker dies once in the middle of a round."""

    def __init__(self, schedule, kill_round: int, kill_machine: int, marker: str):
        super().__init__(schedule)
        self.kill_round, self.kill_machine, self.marker, self.driver_pid = kill_round, kill_machine, marker, os.getpid()


class Sleeping(Digesting):
    """A digesting scripted protocol whose machine 0, in round ``sleep_round``, waits until the
    file ``until`` exists (at most ``seconds``): a slow round the test can end when it is done."""

    def __init__(self, schedule, sleep_round: int, seconds: float, until: str = ""):
        super().__init__(schedule)
        self.sleep_round, self.seconds, self.until = sleep_round, seconds, until

    def step(self, ctx, machine, memory, inbox):
        if ctx.round == self.sleep_round and machine == 0:
            deadline = time.monotonic() + self.seconds
            while time.monotonic() < deadline and not (self.until and os.path.exists(self.until)):
                time.sleep(0.02)
        return super().step(ctx, machine, memory, inbox)


def in_process_client():
    """A module-scoped fixture body: a Dask client on an in-process LocalCluster of 2 workers
    (one thread each), closed after the module. Modules use it as
    ``client = pytest.fixture(scope="module")(in_process_client)``."""
    import distributed

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0")
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


def _resized(state: ClusterState, i: int, delta: int) -> ClusterState:
    """``state`` with machine ``i``'s memory ``delta`` words longer (zeros appended) or shorter (its last words
    dropped)."""
    end = int(state.offsets[i + 1])
    if delta >= 0:
        words = np.concatenate([state.words[:end], np.zeros(delta, dtype=state.dtype), state.words[end:]])
    else:
        words = np.concatenate([state.words[:end + delta], state.words[end:]])
    sizes = state.sizes().copy()
    sizes[i] += delta
    return ClusterState(words, ragged_offsets(sizes))


class Ballast(Protocol):
    """``inner`` as it is, except that machine ``machine`` keeps ``extra`` more words (zeros) after the local
    computation of round ``round``: it holds them when round ``round + 1`` starts (over ``s`` when ``extra`` is
    large enough: a memory limit exceeded on any backend, in either style) and drops them before computing, so
    the protocol goes on as it would (its output is unchanged, also in non-strict runs). ``round`` must be a
    communication round of the run."""

    def __init__(self, inner: Protocol, round: int, machine: int, extra: int):
        self.inner, self.round, self.machine, self.extra = inner, round, machine, extra
        self.name, self.word_dtype, self.block_batch = inner.name, inner.word_dtype, inner.block_batch

    def has_step(self):
        return self.inner.has_step()

    def has_batch_step(self):
        return self.inner.has_batch_step()

    def step(self, ctx, machine, memory, inbox):
        if ctx.round == self.round + 1 and machine == self.machine:
            memory = memory[:memory.shape[0] - self.extra]
        kept, outgoing = self.inner.step(ctx, machine, memory, inbox)
        if ctx.round == self.round and machine == self.machine:
            kept = np.concatenate([np.asarray(kept, dtype=self.word_dtype), np.zeros(self.extra, self.word_dtype)])
        return kept, outgoing

    def batch_step(self, ctx, state, delivery):
        i = self.machine - ctx.first_machine
        inside = 0 <= i < state.machines
        if ctx.round == self.round + 1 and inside:
            state = _resized(state, i, -self.extra)
        kept, batch = self.inner.batch_step(ctx, state, delivery)
        if ctx.round == self.round and inside:
            kept = _resized(kept, i, self.extra)
        return kept, batch

    def rounds_bound(self, config):
        return self.inner.rounds_bound(config)

    def check_config(self, config):
        return self.inner.check_config(config)

    def fanout_bound(self, config):
        return self.inner.fanout_bound(config)

    def params(self):
        return self.inner.params()

    def validate_input(self, config, data):
        return self.inner.validate_input(config, data)

    def initial_state(self, config, data):
        return self.inner.initial_state(config, data)

    def output(self, config, state):
        return self.inner.output(config, state)

    def verify(self, data, output):
        return self.inner.verify(data, output)


def assert_same_report(dask, local) -> None:
    """A distributed run's trace is the local run's, round by round: stats, violations, output stats, peaks
    and (when recorded) every message; only wall times, retries and the style that ran may differ."""
    assert dask.counts() == local.counts()
    assert dask.rounds == local.rounds and dask.output == local.output and dask.violations == local.violations
    assert dask.peaks == local.peaks and len(local.peaks) == local.num_rounds + 1
    assert (dask.messages is None) == (local.messages is None)
    for theirs, ours in zip(dask.messages or (), local.messages or ()):
        assert theirs.round == ours.round
        for name in ("src", "dst", "words"):
            assert np.array_equal(getattr(theirs, name), getattr(ours, name)), (ours.round, name)
