"""The Dask backend: the same rounds on a real distributed engine, with checkpoints and retries.

What runs where. The machines are cut into contiguous blocks (two per worker by default): of
equal machine counts when workers run per-machine steps, of equal initial words (each machine
counted as its words plus one) when they run a block-local batch step, whose cost follows the
words (sample sort keeps all its data on the first ``n / s`` machines). The blocks are fixed for
the run and recorded in checkpoints. The driver (the process calling :meth:`Simulator.run`) computes the initial state and scatters it,
block by block, round-robin over the workers; after that the words stay on the workers. Every
round is a small task graph, submitted at once (``B**2 + 4 B`` tasks for ``B`` blocks):

* ``compute_block(b)`` for every block: the protocol's computation on the block's machines, the
  checks, the block's accounting, and its messages cut by destination block;
* ``deliver_block(d)`` for every block: the pieces addressed to ``d`` (one per source block, an
  all-to-all of array batches moved by Dask between workers) concatenated in source order and
  delivered with the numba route kernel, and what each machine received;

then the driver gathers only the reports (sums, maxima and the machines over a limit), raises the
error the local engine would have raised first, reduces the reports into the round's
:class:`~mpc_sim.trace.RoundStats` and goes on. Only the final state travels back (for the
protocol's output). See :mod:`mpc_sim.backends.blocks` for the block functions. Tasks carry no
worker restrictions: a block's round runs where its memories are because that is where its
largest input is, and a task whose preferred worker died never waits for it.

Faults. A lost worker loses the blocks it held. Results Dask can recompute from their lineage it
recomputes by itself (the round goes on; the trace records a ``dask`` retry). When it cannot
(scattered input gone, a task killed too often), gathering the round fails and the driver
restarts the run from the last complete round of the checkpoint, or from the input when there is
no checkpoint, replaying the rounds already recorded and checking they give the same counts; the
trace records a ``checkpoint`` or ``input`` retry. At most ``max_retries`` restarts per run.
Nothing waits forever: a cluster left without any worker for ``worker_timeout`` seconds, or a
round past its ``round_timeout``, ends the run with a :class:`BackendError` naming the round.

Checkpoints (``checkpoint=DIR``): after every round each worker writes its blocks (kept memories
and the inbox of the next round) as ``.npz`` files, then the driver commits a JSON manifest naming
them with the trace so far (:mod:`mpc_sim.backends.checkpoint`). ``resume=DIR`` loads the blocks
of the last committed round on the workers and continues; the result and the trace counts are
those of an uninterrupted run. Workers and driver must see ``DIR`` at the same path (a shared
file system on a real cluster).

``on_round`` is called once a round is complete and, with checkpoints, committed. The driver
listens to the scheduler's ``"all"`` event topic during a run (for worker removals), replacing any
handler a given client had for it.

``distributed`` is imported only when a run starts, so this module imports without it.

Examples
--------
>>> DaskOptions(workers=4).blocks_for(4)
8
>>> DaskOptions(workers=0)
Traceback (most recent call last):
...
mpc_sim.errors.ParameterError: workers must be >= 1, got 0
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ParameterError, ProtocolError
from ..protocol import Protocol
from ..randomness import normalize_seed
from ..state import ClusterState
from ..trace import Retry, RoundStats, Trace, Violation
from .base import BackendError, CheckpointError, Limits, Traffic, check_state
from .blocks import (COMPUTE_PHASES, BlockPlan, ComputeReport, block_state, compute_block,
                     deliver_block, partition)
from .checkpoint import CheckpointStore, load_block, save_block

__all__ = ["DaskOptions", "connect", "run_on_dask"]

_INTERNAL_PHASE = 8
_POLL_SECONDS = 0.5          # how often a waiting driver checks the cluster still has workers


@dataclass(frozen=True)
class DaskOptions:
    """How the Dask backend runs.

    Parameters
    ----------
    workers : int
        Workers of the ``LocalCluster`` started when no client is given (default 2).
    threads_per_worker : int
        Threads per worker of that cluster (default 1: protocols are mostly Python).
    processes : bool
        Workers as separate processes (default, like a real cluster) or threads of this process.
    blocks : int, optional
        Blocks the machines are cut into (default: two per worker). Batch steps that are not
        block-local always run as one block.
    connect_timeout : float
        Seconds to wait for a scheduler given by address, and for the first worker.
    max_retries : int
        Restarts from a checkpoint or the input allowed in one run before giving up.
    worker_timeout : float
        Seconds the run waits while the cluster has no worker at all (every worker lost and none
        back yet, e.g. a nanny restarting a killed process on a loaded machine) before it gives
        up with :class:`BackendError`. Nothing waits forever for a cluster that is gone.
    round_timeout : float, optional
        Seconds one round (with its checkpoint) may take before :class:`BackendError`; ``None``
        (the default) sets no limit, since a round of a large input may legitimately take long.
    lost_worker_grace : float
        For the ``LocalCluster`` started here only: seconds a lost worker's nanny has to bring
        it back before the cluster gives up on it. Dask's default (15 s) is shorter than a
        worker restart can take on a busy machine; a worker given up on never comes back.
        (Dask's setting ``distributed.deploy.lost-worker-timeout``, set while the run lasts.)
    """

    workers: int = 2
    threads_per_worker: int = 1
    processes: bool = True
    blocks: int | None = None
    connect_timeout: float = 10.0
    max_retries: int = 3
    worker_timeout: float = 60.0
    round_timeout: float | None = None
    lost_worker_grace: float = 600.0

    def __post_init__(self) -> None:
        for name in ("workers", "threads_per_worker"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ParameterError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.blocks is not None and (not isinstance(self.blocks, int) or self.blocks < 1):
            raise ParameterError(f"blocks must be None or >= 1, got {self.blocks!r}")
        for name in ("connect_timeout", "worker_timeout", "lost_worker_grace"):
            if isinstance(getattr(self, name), bool) or not (_is_number(getattr(self, name)) and getattr(self, name) > 0):
                raise ParameterError(f"{name} must be > 0 seconds, got {getattr(self, name)!r}")
        if self.round_timeout is not None and (isinstance(self.round_timeout, bool)
                                               or not (_is_number(self.round_timeout) and self.round_timeout > 0)):
            raise ParameterError(f"round_timeout must be None or > 0 seconds, got {self.round_timeout!r}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ParameterError(f"max_retries must be an integer >= 0, got {self.max_retries!r}")

    def blocks_for(self, workers: int) -> int:
        """The number of blocks on a cluster of ``workers`` workers."""
        return self.blocks if self.blocks is not None else 2 * max(1, workers)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and bool(np.isfinite(value))


def connect(address: str, timeout: float = 10.0):
    """A ``distributed.Client`` connected to the scheduler at ``address``; :class:`BackendError`
    naming the address and the timeout if it cannot be reached within ``timeout`` seconds."""
    from distributed import Client
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except Exception as exc:        # refused, timed out, unresolvable, malformed: all mean "not reachable"
        reason = f"{type(exc).__name__}: {exc}"
    # The half-built Client survives in a reference cycle and closes itself when collected. Collected
    # later, in the middle of another Client's start, its close waits for the lock Dask's loop runners
    # share (a class attribute) while that start holds it: a deadlock (seen with distributed 2026.8).
    # Collect it now, while no Client is starting.
    gc.collect()
    raise BackendError(f"could not reach the Dask scheduler at {address} within the {timeout:g} s "
                       f"connect timeout ({reason})")


@contextlib.contextmanager
def _session(client: object, options: DaskOptions) -> Iterator:
    """The client to run on: the given one as is, one connected to a given address, or one on a
    LocalCluster started here; whatever was opened here is closed on the way out."""
    if client is None:
        import dask
        from distributed import Client, LocalCluster
        # read by the cluster each time a worker is lost: set for the cluster's whole life
        with dask.config.set({"distributed.deploy.lost-worker-timeout": f"{options.lost_worker_grace}s"}):
            cluster = LocalCluster(n_workers=options.workers, threads_per_worker=options.threads_per_worker,
                                   processes=options.processes, dashboard_address=":0", silence_logs=logging.ERROR)
            try:
                own = Client(cluster, set_as_default=False)
                try:
                    yield own
                finally:
                    own.close()
            finally:
                cluster.close()
    elif isinstance(client, str):
        own = connect(client, options.connect_timeout)
        try:
            yield own
        finally:
            own.close()
    else:
        yield client


def run_on_dask(sim, protocol: Protocol, data: object, seed: int | None, *, record_states: bool = False):
    """What :meth:`Simulator.run` does when ``backend="dask"``."""
    options = sim.dask if sim.dask is not None else DaskOptions()
    if not isinstance(options, DaskOptions):
        raise TypeError(f"dask options must be a DaskOptions, got {type(options).__name__}")
    if data is None and sim.resume is None:
        raise ValueError("data may be None only when resuming from a checkpoint")
    with _session(sim.client, options) as client:
        return _DaskRun(sim, client, options, protocol, seed, record_states).run(data)


class _Lost(Exception):
    """Dask lost something this run needed (a worker, its data, a task killed too often)."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def _item(value: tuple, index: int):
    return value[index]


def _piece(computed: tuple, block: int):
    return computed[1][block]


def _constant(value):
    return value


def _describe(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= 300 else text[:297] + "..."


def _jsonable(value: object) -> object:
    return json.loads(json.dumps(value, default=repr))


def _digest(words: np.ndarray) -> str:
    return hashlib.blake2b(memoryview(np.ascontiguousarray(words)).cast("B"), digest_size=16).hexdigest()


def _joined(overs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([o[0] for o in overs]), np.concatenate([o[1] for o in overs])


def _total(reports: list[ComputeReport]) -> Traffic:
    total = reports[0].traffic
    for report in reports[1:]:
        total = total + report.traffic
    return total


def _join_states(blocks: list[ClusterState], dtype: np.dtype) -> ClusterState:
    sizes = np.concatenate([b.sizes() for b in blocks])
    words = np.concatenate([b.words for b in blocks]) if blocks else np.zeros(0, dtype=dtype)
    offsets = np.zeros(sizes.shape[0] + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return ClusterState(words.astype(dtype, copy=False), offsets)


class _DaskRun:
    """One run of a protocol on a Dask client (see the module docstring)."""

    def __init__(self, sim, client, options: DaskOptions, protocol: Protocol, seed: int | None, record_states: bool):
        self.sim, self.client, self.options, self.protocol = sim, client, options, protocol
        self.config = sim.config
        self.seed = normalize_seed(seed)
        self.record_states = record_states
        mode = sim.resolve_mode(protocol)
        self.style = "machine" if mode == "machine" else ("block" if protocol.block_batch else "cluster")
        protocol.check_config(self.config)
        self.limits = Limits(self.config.s, sim.strict)
        self.rounds: list[RoundStats] = []
        self.retries: list[Retry] = []
        self.states: list[ClusterState] = []
        self.failures = 0
        self.words: np.ndarray | None = None        # kept while a restart may need the input
        self.input_digest: str | None = None
        self.held: list = []                         # per block: (kept memories, inbox) on a worker
        self.keys: dict[str, int] = {}               # keys of the last rounds' tasks -> round
        self.removals: list[dict] = []               # workers the scheduler removed (its events)
        self.noted: set[tuple] = set()               # removals already looked at
        self.checkpoint_due: int | None = None       # a round to checkpoint before going on
        self.current = 0                             # the round being run (for error messages)
        self.deadline: float | None = None           # when the current round passes its round_timeout
        writing = sim.checkpoint if sim.checkpoint is not None else sim.resume
        self.store = CheckpointStore(writing) if writing is not None else None

    # --- the run ----------------------------------------------------------------------------------
    def run(self, data: object):
        from ..simulator import RunResult
        self._wait_for_workers(self.options.connect_timeout)
        self.client.subscribe_topic("all", self._on_event)
        try:
            try:
                first = self._resume(data) if self.sim.resume is not None else self._start(data)
            except _Lost as lost:
                raise BackendError(f"could not place the cluster's state on the Dask workers: "
                                   f"{_describe(lost.error)}") from lost.error
            final, output_stats = self._rounds(first + 1)
            # removal events still on their way to this client: the scheduler's log has them all
            self.removals.extend(message for _, message in self.client.get_events("all")
                                 if isinstance(message, dict) and message.get("action") == "remove-worker")
            self._note_removals()
        finally:
            self.client.unsubscribe_topic("all")
            self._release()
        protocol, config = self.protocol, self.config
        output = protocol.output(config, final)
        trace = Trace(protocol.name, config, tuple(self.rounds), rounds_bound=int(protocol.rounds_bound(config)),
                      output=output_stats, violations=tuple(self.limits.violations), seed=self.seed,
                      params=protocol.params(), strict=self.sim.strict, retries=tuple(self.retries))
        return RunResult(output, trace, final, tuple(self.states))

    def _start(self, data: object) -> int:
        config, protocol = self.config, self.protocol
        words = protocol.validate_input(config, data)
        state = self._initial_state(words)
        blocks = 1 if self.style == "cluster" else self.options.blocks_for(len(self.workers))
        # a block-local batch step costs about its words, a per-machine step about its machines
        weights = state.sizes() + 1 if self.style == "block" else None
        self.plan = BlockPlan(protocol, config, self.seed, self.style, partition(config.machines, blocks, weights))
        self.plan_future = self._submit(_constant, self.plan)
        if self.store is not None:
            if self.store.manifest() is not None:
                raise CheckpointError(f"{self.store.root} already holds a checkpoint: resume from it "
                                      f"(resume=...) or write to an empty directory")
            self.input_digest = _digest(words)
        self.words = words
        self._scatter_input(state)
        if self.store is not None:
            self.checkpoint_due = 0
        return 0

    def _resume(self, data: object) -> int:
        manifest = CheckpointStore(self.sim.resume).manifest()
        if manifest is None:
            raise CheckpointError(f"nothing to resume: {self.sim.resume} holds no checkpoint manifest")
        if self.store is not None and self.store.root != CheckpointStore(self.sim.resume).root \
                and self.store.manifest() is not None:
            raise CheckpointError(f"{self.store.root} already holds a checkpoint: write to an empty directory")
        mine = self._identity()
        if not isinstance(manifest.get("run"), dict):
            raise CheckpointError(f"{self.sim.resume}: the manifest's field 'run' is missing or not an object")
        different = [f"{key}: checkpoint has {manifest['run'].get(key)!r}, this run {mine[key]!r}"
                     for key in mine if manifest["run"].get(key) != mine[key]]
        if different:
            raise CheckpointError(f"{self.sim.resume} holds a checkpoint of another run: " + "; ".join(different))
        self.input_digest = manifest["input_digest"]
        if data is not None and _digest(self.protocol.validate_input(self.config, data)) != self.input_digest:
            raise CheckpointError(f"the input differs from the one of the run checkpointed in {self.sim.resume}")
        if manifest["bounds"][-1] != self.config.machines:
            raise CheckpointError(f"{self.sim.resume}: field 'bounds' ends at {manifest['bounds'][-1]}, "
                                  f"the cluster has {self.config.machines} machines")
        self.plan = BlockPlan(self.protocol, self.config, self.seed, self.style, tuple(manifest["bounds"]))
        self.plan_future = self._submit(_constant, self.plan)
        trace = manifest["trace"]
        try:
            self.rounds = [RoundStats(**r) for r in trace["rounds"]]
            self.limits.violations = [Violation(**v) for v in trace["violations"]]
            self.retries = [Retry(**r) for r in trace["retries"]]
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{CheckpointStore(self.sim.resume).manifest_path}: field 'trace' is malformed: "
                                  f"{exc}") from exc
        self._load(CheckpointStore(self.sim.resume), manifest)
        if self.store is not None and self.store.root != CheckpointStore(self.sim.resume).root:
            self._checkpoint(int(manifest["round"]))          # a copy in the new directory
        return int(manifest["round"])

    def _rounds(self, r: int):
        """Run rounds from ``r`` on until the final local computation; restart on losses."""
        while True:
            self.current = r
            if self.options.round_timeout is not None:
                self.deadline = time.monotonic() + self.options.round_timeout
            try:
                if self.checkpoint_due is not None:
                    self._checkpoint(self.checkpoint_due)
                    self.checkpoint_due = None
                outcome = self._round(r)
                if isinstance(outcome, tuple):
                    return outcome
                if self.store is not None:
                    self._checkpoint(r)
                if outcome == "new" and self.sim.on_round is not None:     # after its checkpoint: durable
                    self.sim.on_round(self.rounds[r - 1])
                r += 1
            except _Lost as lost:
                r = self._recover(r, lost.error)

    # --- one round ----------------------------------------------------------------------------------
    def _round(self, r: int):
        """Round ``r``: ``"new"``, ``"replayed"`` (a round recorded before a restart, recomputed and
        checked), or the final state and output stats after the final computation.
        Everything Dask may fail on happens before the round's first side effect, so a round
        that fails is replayed from scratch."""
        start = time.perf_counter()
        blocks, submit, dtype = self.plan.blocks, self._submit, np.dtype(self.protocol.word_dtype)
        outputs = [submit(compute_block, self.plan_future, b, r, self.held[b]) for b in range(blocks)]
        reports = [submit(_item, out, 2) for out in outputs]
        pieces = [[None if b == d else submit(_piece, out, d) for d in range(blocks)] for b, out in enumerate(outputs)]
        delivered = [submit(deliver_block, self.plan_future, d, outputs[d], *(pieces[b][d] for b in range(blocks)))
                     for d in range(blocks)]
        held = [submit(_item, out, 0) for out in delivered]
        receipts = [submit(_item, out, 1) for out in delivered]
        self._remember(r, outputs + reports + [p for row in pieces for p in row if p is not None] + delivered
                       + held + receipts)
        gathered = self._gather(reports + receipts)
        compute_reports, receive_reports = gathered[:blocks], gathered[blocks:]
        final = sum(rep.messages for rep in compute_reports) == 0 and all(rep.error is None for rep in compute_reports)
        replay = r <= len(self.rounds)
        state = (_join_states(self._gather([submit(_item, out, 0) for out in outputs]), dtype)
                 if final or (self.record_states and not replay) else None)
        # from here on nothing fails on Dask's side
        limits = Limits(self.config.s, self.sim.strict) if replay else self.limits
        self._check_computed(r, compute_reports, limits)
        if self.record_states and not replay:
            self.states.append(state)
        if final:
            if replay:
                raise BackendError(f"round {r} sent messages when first run and none when recomputed after a lost "
                                   f"worker: is the protocol deterministic in its seed?")
            limits.report("memory", r, *_joined([rep.kept_over for rep in compute_reports]))
            self._note_removals()
            traffic = _total(compute_reports)
            return state, traffic.output_stats(max(rep.max_kept for rep in compute_reports),
                                               time.perf_counter() - start)
        if r > self.sim.max_rounds:
            raise ProtocolError(f"{self.protocol.name} still sending after max_rounds = {self.sim.max_rounds}", round=r)
        self._raise_first([rep.error for rep in compute_reports if rep.error is not None])
        limits.report("send", r, *_joined([rep.send_over for rep in compute_reports]))
        limits.report("receive", r, *_joined([rep.receive_over for rep in receive_reports]))
        stats = _total(compute_reports).round_stats(r, max_received=max(rep.max_received for rep in receive_reports),
                                                    wall_time=time.perf_counter() - start)
        self.held = held
        self._note_removals()
        if replay:
            if stats.counts() != self.rounds[r - 1].counts():
                raise BackendError(f"round {r} recomputed after a lost worker gave {stats.counts()}, first "
                                   f"{self.rounds[r - 1].counts()}: is the protocol deterministic in its seed?")
            return "replayed"
        self.rounds.append(stats)
        return "new"

    def _check_computed(self, r: int, reports: list[ComputeReport], limits: Limits) -> None:
        """What the local engine checks before it looks at the messages, in its order."""
        errors = [rep.error for rep in reports if rep.error is not None]
        self._raise_first([e for e in errors if e.phase == _INTERNAL_PHASE])
        limits.report("memory", r, *_joined([rep.memory_over for rep in reports]))
        self._raise_first([e for e in errors if e.phase in COMPUTE_PHASES])

    @staticmethod
    def _raise_first(errors: list) -> None:
        """Raise the error the local engine meets first: earliest phase, then lowest machine."""
        if errors:
            raise min(errors, key=lambda e: (e.phase, e.block)).exception()

    # --- data placement, gathering, checkpoints -----------------------------------------------------
    @property
    def workers(self) -> list[str]:
        return sorted(self.client.nthreads())

    def _wait_for_workers(self, timeout: float, round: int | None = None) -> None:
        try:
            self.client.wait_for_workers(1, timeout=timeout)
        except Exception as exc:
            where = "" if round is None else f"round {round}: "
            raise BackendError(f"{where}the Dask cluster has no worker after {timeout:g} s "
                               f"({type(exc).__name__}: {exc})") from None

    def _submit(self, fn, *args, **kwargs):
        """Submit a task. No worker restrictions: tasks follow their data (a block's round runs
        where its memories are), and nothing waits for a worker that is gone."""
        try:
            return self.client.submit(fn, *args, pure=False, **kwargs)
        except Exception as exc:
            raise _Lost(exc) from exc

    def _gather(self, futures: list) -> list:
        self._wait(futures)
        try:
            return self.client.gather(futures)
        except CheckpointError:         # a corrupt or missing checkpoint file: no retry reads it better
            raise
        except Exception as exc:        # the block tasks never raise: this is Dask losing something
            raise _Lost(exc) from exc

    def _wait(self, futures: list) -> None:
        """Wait until every future is finished or failed, but not forever: :class:`BackendError`
        once the cluster has had no worker for ``worker_timeout`` seconds, or once the round is
        past its ``round_timeout``."""
        from distributed import wait
        alone_since = None
        while True:
            try:
                with self.client.as_current():          # wait() asks for the current client
                    wait(futures, timeout=_POLL_SECONDS)
                return
            except TimeoutError:        # not done yet: look at the cluster, then wait again
                pass
            except Exception as exc:
                raise _Lost(exc) from exc
            now = time.monotonic()
            if self.deadline is not None and now > self.deadline:
                raise BackendError(f"round {self.current}: not done after the round_timeout of "
                                   f"{self.options.round_timeout:g} s")
            if self._has_workers():
                alone_since = None
            elif alone_since is None:
                alone_since = now
            elif now - alone_since > self.options.worker_timeout:
                raise BackendError(f"round {self.current}: the Dask cluster has had no worker for "
                                   f"{self.options.worker_timeout:g} s (worker_timeout); every worker was lost "
                                   f"and none came back")

    def _has_workers(self) -> bool:
        try:
            return len(self.client.nthreads(callback_timeout=_POLL_SECONDS * 10)) > 0
        except Exception:               # the scheduler does not answer: no worker to count on
            return False

    def _initial_state(self, words: np.ndarray) -> ClusterState:
        state = self.protocol.initial_state(self.config, words)
        check_state(state, self.config.machines, self.protocol, round=0)
        return state

    def _scatter_input(self, state: ClusterState | None = None) -> None:
        """The initial state, block by block, spread over the workers (round-robin)."""
        if state is None:
            state = self._initial_state(self.words)
        blocks = [(block_state(state, *self.plan.block(b)), None) for b in range(self.plan.blocks)]
        del state
        try:
            self.held = self.client.scatter(blocks, hash=False, timeout=self.options.worker_timeout)
        except Exception as exc:
            raise _Lost(exc) from exc
        self._remember(1, self.held)

    def _load(self, store: CheckpointStore, manifest: dict) -> None:
        """The blocks of the checkpoint's round, read by tasks on the workers (so Dask can read
        them again if a worker holding them is lost)."""
        self.held = [self._submit(load_block, str(path), size=size, sha256=digest)
                     for path, size, digest in store.files(manifest)]
        self._remember(int(manifest["round"]) + 1, self.held)

    def _checkpoint(self, r: int) -> None:
        paths = [self.store.block_path(r, b) for b in range(self.plan.blocks)]
        written = self._gather([self._submit(save_block, str(path), held) for path, held in zip(paths, self.held)])
        self.store.commit({
            "round": r, "run": self._identity(), "input_digest": self.input_digest, "bounds": list(self.plan.bounds),
            "files": [str(p.relative_to(self.store.root)) for p in paths], "bytes": [size for size, _ in written],
            "sha256": [digest for _, digest in written],
            "trace": {"rounds": [asdict(s) for s in self.rounds[:r]],
                      "violations": [asdict(v) for v in self.limits.violations if v.round <= r],
                      "retries": [asdict(x) for x in self.retries]},
        })
        self.words = None        # from now on a restart reloads the checkpoint

    def _identity(self) -> dict:
        protocol = self.protocol
        return {"protocol": protocol.name, "class": f"{type(protocol).__module__}.{type(protocol).__qualname__}",
                "params": _jsonable(protocol.params()), "config": self.config.to_dict(), "seed": self.seed,
                "strict": self.sim.strict, "style": self.style, "word_dtype": str(np.dtype(protocol.word_dtype))}

    def _release(self) -> None:
        """Release what this run holds on the cluster (its blocks and its plan): the scheduler
        forgets them once nothing wants them. Releasing, not ``Client.cancel``: cancelling keys
        whose dependents nobody wants any more trips an assertion in the scheduler
        (``stimulus_cancel``, distributed 2026.8) that drops the client's connection and cancels
        every future of the next run."""
        live, self.held = self.held + [getattr(self, "plan_future", None)], []
        self.plan_future = None
        self.keys.clear()
        for future in live:
            if future is not None:
                with contextlib.suppress(Exception):
                    future.release()

    # --- faults -------------------------------------------------------------------------------------
    def _recover(self, r: int, error: BaseException) -> int:
        """Restart after Dask lost something it could not recompute: from the checkpoint's last
        complete round, else from the input. Returns the round to run next."""
        while True:
            self.failures += 1
            if self.failures > self.options.max_retries:
                raise BackendError(f"round {r}: the Dask cluster lost workers or data {self.failures} times "
                                   f"(max_retries = {self.options.max_retries}); last: {_describe(error)}") from error
            self._release()
            self.removals.clear()
            self._wait_for_workers(self.options.worker_timeout, round=r)
            try:
                self.plan_future = self._submit(_constant, self.plan)       # a restarted cluster forgot it
                if self.words is not None:            # no round committed yet: the input is still here
                    self._scatter_input()
                    restart, source = 0, "input"
                    self.checkpoint_due = 0 if self.store is not None else None
                else:
                    manifest = self.store.manifest()
                    self._load(self.store, manifest)
                    restart, source = int(manifest["round"]), "checkpoint"
            except _Lost as lost:                     # lost again while restarting: try again
                error = lost.error
                continue
            self.retries.append(Retry(r, restart, source, _describe(error)))
            return restart + 1

    def _remember(self, r: int, futures: list) -> None:
        self.keys = {k: v for k, v in self.keys.items() if v >= r - 1}
        self.keys.update((f.key, r) for f in futures)

    def _on_event(self, event: tuple) -> None:
        message = event[1]
        if isinstance(message, dict) and message.get("action") == "remove-worker":
            self.removals.append(message)

    def _note_removals(self) -> None:
        """Workers lost while the last rounds ran, whose tasks Dask reran without failing: retries."""
        pending, self.removals = self.removals, []
        for message in pending:
            seen = (message.get("worker"), message.get("stimulus_id"))
            if seen in self.noted:
                continue
            self.noted.add(seen)
            rerun = [k for k in message.get("processing-tasks", ()) if k in self.keys]
            recomputed = [k for k in message.get("lost-computed-tasks", ()) if k in self.keys]
            if rerun or recomputed:
                lost_round = max(1, min(self.keys[k] for k in rerun + recomputed))
                self.retries.append(Retry(lost_round, lost_round - 1, "dask",
                                          f"worker {message.get('worker')} lost: {len(rerun)} running task(s) rerun, "
                                          f"{len(recomputed)} result(s) recomputed from their lineage"))
