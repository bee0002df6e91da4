"""The Dask backend: the same rounds on a real distributed engine, with checkpoints and retries.

``Simulator(config, backend="dask", dask=DaskOptions(...))``, or ``backend=DaskBackend(options)``.
The round loop, the checks and the trace are the engine's, as for every backend
(:mod:`mpc_sim.backends.interface`); this module says where a round runs, how a lost worker is
recovered from, and how rounds are checkpointed.

What runs where. The machines are cut into contiguous blocks (two per worker by default): of
equal machine counts when workers run per-machine steps, of equal initial words (each machine
counted as its words plus one) when they run a block-local batch step, whose cost follows the
words (sample sort keeps all its data on the first ``n / s`` machines). The blocks are fixed for
the run and recorded in checkpoints. The driver (the process calling :meth:`Simulator.run`)
computes the initial state and scatters it, block by block, round-robin over the workers; after that the words stay on the workers. Every
round is a small task graph, submitted at once (``B**2 + 4 B`` tasks for ``B`` blocks):

* ``compute_block(b)`` for every block: the protocol's computation on the block's machines, the
  checks, the block's accounting, and its messages cut by destination block;
* ``deliver_block(d)`` for every block: the pieces addressed to ``d`` (one per source block, an
  all-to-all of array batches moved by Dask between workers) concatenated in source order and
  delivered with the numba route kernel, and what each machine received;

then the driver gathers only the reports (sums, maxima, the machines over a limit, each block's
:data:`~mpc_sim.trace.PEAK_MACHINES` largest amounts held, sent and received, the errors met) and
hands them to the engine, which raises the error the local backend would have raised first,
reduces them into the round's :class:`~mpc_sim.trace.RoundStats` and
:class:`~mpc_sim.trace.RoundPeaks` (:func:`~mpc_sim.trace.merge_top`: the same machines as the
local backend's) and goes on. Only the final state travels back (for the protocol's output), and,
when the run records its messages (``record_messages=True``), every block's delivered sources,
destinations and lengths, in the local engine's delivery order. See
:mod:`mpc_sim.backends.blocks` for the block functions. Tasks carry no worker restrictions: a
block's round runs where its memories are because that is where its largest input is, and a task
whose preferred worker died never waits for it.

Faults. A lost worker loses the blocks it held. Results Dask can recompute from their lineage it
recomputes by itself (the round goes on; the trace records a ``dask`` retry). When it cannot
(scattered input gone, a task killed too often), gathering the round fails and the driver
restarts the run from the last complete round of the checkpoint, or from the input when there is
no checkpoint; the engine replays the rounds already recorded and checks they give the same counts;
the trace records a ``checkpoint`` or ``input`` retry. At most ``max_retries`` restarts per run.
Nothing waits forever: a cluster left without any worker for ``worker_timeout`` seconds, or a
round past its ``round_timeout``, ends the run with a :class:`BackendError` naming the round.

Checkpoints (``DaskOptions(checkpoint=DIR)``): after every round each worker writes its blocks (kept memories
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
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..config import MPCConfig
from ..errors import ParameterError
from ..protocol import Protocol
from ..state import ClusterState
from ..trace import Retry, RoundPeaks, RoundStats, Violation, merge_top
from .base import BackendError, CheckpointError, Traffic, initial_state
from .blocks import (COMPUTE_PHASES, BlockPlan, ComputeReport, block_state, compute_block,
                     deliver_block, delivered_messages, partition)
from .checkpoint import CheckpointStore, load_block, save_block
from .interface import Backend, BackendRun, Computed, History, Job, Lost, Routed, take_input

__all__ = ["DaskOptions", "DaskBackend", "connect"]

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
    client : distributed.Client or str, optional
        The cluster to use as is, or a scheduler address to connect to (within
        ``connect_timeout``). Without one, a ``LocalCluster`` is started for each run and closed
        after it.
    checkpoint : path, optional
        Write the cluster's state after every round to this (empty or new) directory, as
        ``.npz`` arrays and a JSON manifest.
    resume : path, optional
        Continue the run checkpointed in this directory from its last complete round (the input
        may then be ``None``); checkpoints go on being written there (or to ``checkpoint``).
        ``record_states`` then holds the rounds run after the resume.

    Every field is checked on creation (:class:`~mpc_sim.errors.ParameterError` naming it);
    paths are kept as :class:`~pathlib.Path`.

    Examples
    --------
    >>> DaskOptions(client="tcp://scheduler:8786", checkpoint="ckpt").checkpoint
    PosixPath('ckpt')
    >>> DaskOptions(resume=3)
    Traceback (most recent call last):
    ...
    mpc_sim.errors.ParameterError: resume must be None or a directory path, got 3
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
    client: object = None
    checkpoint: Path | None = None
    resume: Path | None = None

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
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ParameterError(f"max_retries must be an integer >= 0, got {self.max_retries!r}")
        if not isinstance(self.processes, bool):
            raise ParameterError(f"processes must be True or False, got {self.processes!r}")
        client = self.client
        if not (client is None or (isinstance(client, str) and client.strip())
                or (callable(getattr(client, "submit", None)) and callable(getattr(client, "gather", None)))):
            raise ParameterError(f"client must be None, a scheduler address or a distributed.Client, got {client!r}")
        for name in ("checkpoint", "resume"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
                raise ParameterError(f"{name} must be None or a directory path, got {value!r}")
            object.__setattr__(self, name, Path(value))

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



def _first(errors: list) -> BaseException | None:
    """The error the local engine meets first (earliest phase, then lowest machine), or None."""
    return min(errors, key=lambda e: (e.phase, e.block)).exception() if errors else None


def _raise_first(errors: list) -> None:
    if errors:
        raise _first(errors)


class DaskBackend(Backend):
    """Runs the rounds on a Dask cluster (registered as ``"dask"``; see the module docstring).

    Under ``mode="auto"`` it runs the per-machine step unless the protocol's batch step is
    block-local (:attr:`Protocol.block_batch`): a batch step that is not block-local runs as one
    task over the whole cluster. ``data`` may be ``None`` when resuming a checkpoint.

    The trace is the local backend's: the same :class:`~mpc_sim.trace.RoundStats` (words and
    messages), violations and output stats, the same per-round :class:`~mpc_sim.trace.RoundPeaks`
    (measured per block on the workers and merged exactly) and, with ``record_messages``, the same
    messages; strict limits raise the same typed error naming the same machine, round and amount.
    Only wall times differ, and ``mode`` where the local backend prefers the batch style; a run
    resumed from a checkpoint written before peaks were checkpointed lacks the earlier rounds'
    peaks. :meth:`Simulator.steps` needs the local backend (the state stays on the workers).
    """

    name = "dask"
    records_messages = True

    def __init__(self, options: DaskOptions | None = None):
        if options is None:
            options = DaskOptions()
        if not isinstance(options, DaskOptions):
            raise TypeError(f"dask options must be a DaskOptions, got {type(options).__name__}")
        self.options = options

    def auto_mode(self, protocol: Protocol) -> str:
        if protocol.has_step() and not protocol.block_batch:
            return "machine"        # runs on blocks; a batch step that is not block-local would not
        return super().auto_mode(protocol)

    def take_input(self, protocol: Protocol, config: MPCConfig, data: object) -> np.ndarray | None:
        if data is None:
            if self.options.resume is None:
                raise ValueError("data may be None only when resuming from a checkpoint")
            return None
        return take_input(protocol, config, data, copy=False)       # the workers get copies of the blocks

    @contextlib.contextmanager
    def open(self, job: Job) -> Iterator[BackendRun]:
        options = self.options
        with _session(options.client, options) as client:
            run = _DaskRun(client, options, job)
            run._wait_for_workers(options.connect_timeout)
            client.subscribe_topic("all", run._on_event)
            try:
                yield run
                # removal events still on their way to this client: the scheduler's log has them all
                run.removals.extend(message for _, message in client.get_events("all")
                                    if isinstance(message, dict) and message.get("action") == "remove-worker")
                run._note_removals()
            finally:
                client.unsubscribe_topic("all")
                run._release()


class _DaskRun(BackendRun):
    """One run of a protocol on a Dask client (see the module docstring)."""

    def __init__(self, client, options: DaskOptions, job: Job):
        self.client, self.options, self.job = client, options, job
        self.protocol, self.config, self.seed = job.protocol, job.config, job.seed
        self.style = "machine" if job.mode == "machine" else ("block" if job.protocol.block_batch else "cluster")
        self.retries: list[Retry] = []
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
        self.pending: tuple | None = None            # the round computed: its reports and next blocks
        self.peaks: dict[int, RoundPeaks] = {}       # every communication round's peaks (checkpointed)
        writing = options.checkpoint if options.checkpoint is not None else options.resume
        self.store = CheckpointStore(writing) if writing is not None else None

    # --- the hooks ----------------------------------------------------------------------------------
    def start(self, words: np.ndarray | None) -> History:
        try:
            return self._resume(words) if self.options.resume is not None else self._start(words)
        except Lost as lost:
            raise BackendError(f"could not place the cluster's state on the Dask workers: "
                               f"{_describe(lost.error)}") from lost.error

    def compute(self, r: int, keep_state: bool) -> Computed:
        """Round ``r`` as one task graph (compute and deliver), submitted at once; only the reports
        (and the state, when wanted) come back. Everything Dask may fail on happens here, before
        the engine records anything of the round, so a round that fails is replayed from scratch."""
        self.current = r
        if self.options.round_timeout is not None:
            self.deadline = time.monotonic() + self.options.round_timeout
        if self.checkpoint_due is not None:
            self._checkpoint(self.checkpoint_due, (), ())
            self.checkpoint_due = None
        blocks, submit, dtype = self.plan.blocks, self._submit, np.dtype(self.protocol.word_dtype)
        outputs = [submit(compute_block, self.plan_future, b, r, self.held[b]) for b in range(blocks)]
        reports = [submit(_item, out, 2) for out in outputs]
        pieces = [[None if b == d else submit(_piece, out, d) for d in range(blocks)] for b, out in enumerate(outputs)]
        delivered = [submit(deliver_block, self.plan_future, d, outputs[d], *(pieces[b][d] for b in range(blocks)))
                     for d in range(blocks)]
        held = [submit(_item, out, 0) for out in delivered]
        receipts = [submit(_item, out, 1) for out in delivered]
        recordings = [submit(delivered_messages, out) for out in delivered] if self.job.record_messages else []
        self._remember(r, outputs + reports + [p for row in pieces for p in row if p is not None] + delivered
                       + held + receipts + recordings)
        gathered = self._gather(reports + receipts + recordings)
        compute_reports, receive_reports = gathered[:blocks], gathered[blocks:2 * blocks]
        recorded = tuple(np.concatenate(parts) for parts in zip(*gathered[2 * blocks:])) or None
        messages = sum(rep.messages for rep in compute_reports)
        errors = [rep.error for rep in compute_reports if rep.error is not None]
        final = messages == 0 and not errors
        state = (_join_states(self._gather([submit(_item, out, 0) for out in outputs]), dtype)
                 if final or keep_state else None)
        # from here on nothing fails on Dask's side
        _raise_first([e for e in errors if e.phase == _INTERNAL_PHASE])
        holding_over = _joined([rep.memory_over for rep in compute_reports])
        if not final:
            self.pending = (compute_reports, receive_reports, held, recorded)
            return Computed(holding_over, error=_first([e for e in errors if e.phase in COMPUTE_PHASES]),
                            messages=messages, state=state)
        return Computed(holding_over, state=state, kept_over=_joined([rep.kept_over for rep in compute_reports]),
                        max_kept=max(rep.max_kept for rep in compute_reports), traffic=_total(compute_reports),
                        peaks=RoundPeaks(r, merge_top(rep.final_top for rep in compute_reports)))

    def route(self, r: int) -> Routed:
        """The messages were delivered by the graph :meth:`compute` submitted: report it."""
        compute_reports, receive_reports, held, recorded = self.pending
        self.pending = None
        _raise_first([rep.error for rep in compute_reports if rep.error is not None])
        self.held = held
        self._note_removals()
        peaks = RoundPeaks(r, merge_top(rep.memory_top for rep in compute_reports),
                           merge_top(rep.sent_top for rep in compute_reports),
                           merge_top(rep.received_top for rep in receive_reports))
        self.peaks[r] = peaks           # for the checkpoints
        return Routed(_joined([rep.send_over for rep in compute_reports]),
                      _joined([rep.receive_over for rep in receive_reports]),
                      max(rep.max_received for rep in receive_reports), _total(compute_reports), peaks,
                      recorded=recorded)

    def commit(self, r: int, rounds: Sequence[RoundStats], violations: Sequence[Violation]) -> None:
        if self.store is not None:
            self._checkpoint(r, rounds, violations)

    def recover(self, r: int, error: BaseException) -> int:
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
            except Lost as lost:                      # lost again while restarting: try again
                error = lost.error
                continue
            self.retries.append(Retry(r, restart, source, _describe(error)))
            return restart + 1

    # --- starting ------------------------------------------------------------------------------------
    def _start(self, words: np.ndarray) -> History:
        config, protocol = self.config, self.protocol
        state = initial_state(protocol, config, words)
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
        return History()

    def _resume(self, words: np.ndarray | None) -> History:
        resume = self.options.resume
        manifest = CheckpointStore(resume).manifest()
        if manifest is None:
            raise CheckpointError(f"nothing to resume: {resume} holds no checkpoint manifest")
        if self.store is not None and self.store.root != CheckpointStore(resume).root \
                and self.store.manifest() is not None:
            raise CheckpointError(f"{self.store.root} already holds a checkpoint: write to an empty directory")
        mine = self._identity()
        if not isinstance(manifest.get("run"), dict):
            raise CheckpointError(f"{resume}: the manifest's field 'run' is missing or not an object")
        different = [f"{key}: checkpoint has {manifest['run'].get(key)!r}, this run {mine[key]!r}"
                     for key in mine if manifest["run"].get(key) != mine[key]]
        if different:
            raise CheckpointError(f"{resume} holds a checkpoint of another run: " + "; ".join(different))
        self.input_digest = manifest["input_digest"]
        if words is not None and _digest(words) != self.input_digest:
            raise CheckpointError(f"the input differs from the one of the run checkpointed in {resume}")
        if manifest["bounds"][-1] != self.config.machines:
            raise CheckpointError(f"{resume}: field 'bounds' ends at {manifest['bounds'][-1]}, "
                                  f"the cluster has {self.config.machines} machines")
        self.plan = BlockPlan(self.protocol, self.config, self.seed, self.style, tuple(manifest["bounds"]))
        self.plan_future = self._submit(_constant, self.plan)
        trace = manifest["trace"]
        try:
            rounds = tuple(RoundStats(**r) for r in trace["rounds"])
            violations = tuple(Violation(**v) for v in trace["violations"])
            self.retries = [Retry(**r) for r in trace["retries"]]
            # checkpoints written before the peaks were recorded have none: the trace then has the later rounds'
            peaks = tuple(RoundPeaks.from_dict(p) for p in trace.get("peaks", ()))
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"{CheckpointStore(resume).manifest_path}: field 'trace' is malformed: "
                                  f"{exc}") from exc
        self.peaks = {p.round: p for p in peaks}
        self._load(CheckpointStore(resume), manifest)
        if self.store is not None and self.store.root != CheckpointStore(resume).root:
            self._checkpoint(int(manifest["round"]), rounds, violations)          # a copy in the new directory
        return History(rounds, violations, peaks)

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
            raise Lost(exc) from exc

    def _gather(self, futures: list) -> list:
        self._wait(futures)
        try:
            return self.client.gather(futures)
        except CheckpointError:         # a corrupt or missing checkpoint file: no retry reads it better
            raise
        except Exception as exc:        # the block tasks never raise: this is Dask losing something
            raise Lost(exc) from exc

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
                raise Lost(exc) from exc
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

    def _scatter_input(self, state: ClusterState | None = None) -> None:
        """The initial state, block by block, spread over the workers (round-robin)."""
        if state is None:
            state = initial_state(self.protocol, self.config, self.words)
        blocks = [(block_state(state, *self.plan.block(b)), None) for b in range(self.plan.blocks)]
        del state
        try:
            self.held = self.client.scatter(blocks, hash=False, timeout=self.options.worker_timeout)
        except Exception as exc:
            raise Lost(exc) from exc
        self._remember(1, self.held)

    def _load(self, store: CheckpointStore, manifest: dict) -> None:
        """The blocks of the checkpoint's round, read by tasks on the workers (so Dask can read
        them again if a worker holding them is lost)."""
        self.held = [self._submit(load_block, str(path), size=size, sha256=digest)
                     for path, size, digest in store.files(manifest)]
        self._remember(int(manifest["round"]) + 1, self.held)

    def _checkpoint(self, r: int, rounds: Sequence[RoundStats], violations: Sequence[Violation]) -> None:
        """Write the blocks after round ``r`` and commit them with the trace so far."""
        paths = [self.store.block_path(r, b) for b in range(self.plan.blocks)]
        written = self._gather([self._submit(save_block, str(path), held) for path, held in zip(paths, self.held)])
        self.store.commit({
            "round": r, "run": self._identity(), "input_digest": self.input_digest, "bounds": list(self.plan.bounds),
            "files": [str(p.relative_to(self.store.root)) for p in paths], "bytes": [size for size, _ in written],
            "sha256": [digest for _, digest in written],
            "trace": {"rounds": [asdict(s) for s in rounds[:r]],
                      "violations": [asdict(v) for v in violations if v.round <= r],
                      "retries": [asdict(x) for x in self.retries],
                      "peaks": [self.peaks[k].to_dict() for k in sorted(self.peaks) if k <= r]},
        })
        self.words = None        # from now on a restart reloads the checkpoint

    def _identity(self) -> dict:
        protocol = self.protocol
        return {"protocol": protocol.name, "class": f"{type(protocol).__module__}.{type(protocol).__qualname__}",
                "params": _jsonable(protocol.params()), "config": self.config.to_dict(), "seed": self.seed,
                "strict": self.job.strict, "style": self.style, "word_dtype": str(np.dtype(protocol.word_dtype))}

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
