"""The block functions a distributed backend runs, and checkpoint files, without any cluster:
blocks reproduce the whole-cluster rounds exactly, the all-to-all split loses and reorders nothing,
accounting merged over blocks equals the whole cluster's, checkpoint files are exact and atomic."""
import hashlib
import json
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpc_sim import ClusterState, MessageBatch, MPCConfig, Protocol, ProtocolError, Simulator, route
from mpc_sim.backends import CheckpointError
from mpc_sim.errors import StepError
from mpc_sim.backends.base import Limits, Traffic, concat_batches, over_limit
from mpc_sim.backends.blocks import (BlockError, BlockPlan, block_state, compute_block, deliver_block,
                                     partition, split_by_block)
from mpc_sim.backends.checkpoint import CheckpointStore, load_block, save_block
from mpc_sim.strategies import MachineOnly, message_batches, random_words, schedules


def bits(a):
    return np.asarray(a).view(np.int64)


class Words(Protocol):
    """A protocol of a given word dtype, for plans whose protocol is never stepped."""

    name = "words"

    def __init__(self, dtype):
        self.word_dtype = np.dtype(dtype)


def square_config(machines: int) -> MPCConfig:
    """A config of exactly ``machines`` machines (and s = machines)."""
    cfg = MPCConfig(n=machines * machines, eps=0.5)
    assert cfg.machines == machines
    return cfg


@st.composite
def bounds_for(draw, machines: int):
    cuts = draw(st.lists(st.integers(1, machines - 1), max_size=5, unique=True)) if machines > 1 else []
    return tuple([0] + sorted(cuts) + [machines])


# --- partition ------------------------------------------------------------------------------------------
@given(machines=st.integers(1, 500), blocks=st.integers(1, 40))
def test_partition_covers_every_machine_once_in_nearly_equal_blocks(machines, blocks):
    bounds = partition(machines, blocks)
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == machines and len(sizes) == min(blocks, machines)
    assert sizes.min() >= 1 and sizes.max() - sizes.min() <= 1


@given(weights=st.lists(st.integers(0, 10**6), min_size=1, max_size=300), blocks=st.integers(1, 40))
def test_weighted_partition_gives_blocks_of_nearly_equal_weight(weights, blocks):
    weights = np.array(weights)
    bounds = partition(weights.shape[0], blocks, weights=weights)
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == weights.shape[0] and len(sizes) == min(blocks, weights.shape[0])
    assert sizes.min() >= 1
    per_block = np.add.reduceat(weights, np.array(bounds[:-1]))
    assert per_block.max() <= weights.sum() / len(sizes) + 2 * weights.max()


def test_partition_and_plans_refuse_nonsense():
    with pytest.raises(ValueError, match="blocks must be >= 1"):
        partition(4, 0)
    for bad in (np.ones(3), np.array([1.0, -1.0, 0.0, 0.0]), np.array([1.0, np.nan, 0.0, 0.0])):
        with pytest.raises(ValueError, match="weights must be 4 finite non-negative"):
            partition(4, 2, weights=bad)
    cfg = square_config(4)
    with pytest.raises(ValueError, match="rise from 0 to 4"):
        BlockPlan(Words(np.int64), cfg, 0, "machine", (0, 2, 2, 4))
    with pytest.raises(ValueError, match="single block"):
        BlockPlan(Words(np.int64), cfg, 0, "cluster", (0, 2, 4))
    with pytest.raises(ValueError, match="style"):
        BlockPlan(Words(np.int64), cfg, 0, "fast", (0, 4))


# --- the all-to-all: split by destination block, concatenate by source block, route ----------------------
@given(case=message_batches(), data=st.data())
def test_split_by_block_keeps_each_blocks_messages_in_batch_order(case, data):
    batch, machines = case
    bounds = data.draw(bounds_for(machines))
    pieces = split_by_block(batch, bounds)
    assert len(pieces) == len(bounds) - 1
    for d, piece in enumerate(pieces):
        mine = np.flatnonzero((batch.dst >= bounds[d]) & (batch.dst < bounds[d + 1]))
        assert np.array_equal(piece.src, batch.src[mine]) and np.array_equal(piece.dst, batch.dst[mine])
        assert piece.dtype == batch.dtype
        assert [bits(piece.payload(j)).tolist() for j in range(piece.num_messages)] == \
            [bits(batch.payload(j)).tolist() for j in mine]


@given(case=message_batches(), data=st.data())
def test_delivering_pieces_from_every_source_block_gives_exactly_the_whole_clusters_inboxes(case, data):
    batch, machines = case
    bounds = data.draw(bounds_for(machines))
    batch = _take(batch, np.argsort(batch.src, kind="stable"))   # the cluster's batch lists sources in order
    whole = route(batch, machines)
    plan = BlockPlan(Words(batch.dtype), square_config(machines), 0, "machine", bounds)
    # what each block sent: its messages, cut by destination block
    sent = [split_by_block(_take(batch, np.flatnonzero((batch.src >= lo) & (batch.src < hi))), bounds)
            for lo, hi in zip(bounds[:-1], bounds[1:])]
    for d in range(plan.blocks):
        lo, hi = plan.block(d)
        kept = ClusterState.empty(hi - lo)
        others = [None if b == d else sent[b][d] for b in range(plan.blocks)]
        (passed, delivery), receipt = deliver_block(plan, d, (kept, sent[d], None), *others)
        assert passed is kept and delivery.machines == hi - lo
        for m in range(lo, hi):
            want, got = whole.inbox(m), delivery.inbox(m - lo)
            assert got.sources.tolist() == want.sources.tolist()
            assert np.array_equal(bits(got.words), bits(want.words))
        assert delivery.messages.dst.tolist() == sorted(delivery.messages.dst.tolist())
        assert ((delivery.messages.dst >= lo) & (delivery.messages.dst < hi)).all()   # global ids
        received = whole.words_per_machine()[lo:hi]
        assert receipt.max_received == received.max(initial=0)
        machines_over, _ = receipt.receive_over
        assert machines_over.tolist() == (np.flatnonzero(received > plan.config.s) + lo).tolist()


def _take(batch: MessageBatch, idx: np.ndarray) -> MessageBatch:
    lengths = batch.lengths()[idx]
    words = [batch.payload(j) for j in idx]
    return MessageBatch(batch.src[idx], batch.dst[idx], np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                        np.concatenate(words) if words else np.zeros(0, dtype=batch.dtype))


def test_concat_of_no_pieces_is_an_empty_batch_of_the_dtype():
    empty = concat_batches([], np.dtype(np.float64))
    assert empty.num_messages == 0 and empty.dtype == np.float64


# --- a whole run on blocks, by hand, against the local engine ---------------------------------------------
@given(schedule=schedules(), data=st.data())
def test_rounds_computed_block_by_block_reproduce_the_local_engine_exactly(schedule, data):
    cfg = schedule.config
    bounds = data.draw(bounds_for(cfg.machines))
    local = Simulator(cfg, mode="machine").run(MachineOnly(schedule), schedule.input_data(), record_states=True)
    protocol = MachineOnly(schedule)
    plan = BlockPlan(protocol, cfg, 0, "machine", bounds)
    start = protocol.initial_state(cfg, schedule.input_data())
    held = [(block_state(start, *plan.block(b)), None) for b in range(plan.blocks)]
    for r in range(1, schedule.rounds + 2):
        outputs = [compute_block(plan, b, r, held[b]) for b in range(plan.blocks)]
        reports = [out[2] for out in outputs]
        assert all(rep.error is None for rep in reports)
        states = [out[0] for out in outputs]
        joined = ClusterState(np.concatenate([s.words for s in states]),
                              np.concatenate([[0], np.cumsum(np.concatenate([s.sizes() for s in states]))]).astype(np.int64))
        assert joined.equals(local.states[r - 1])
        traffic = reports[0].traffic
        for rep in reports[1:]:
            traffic = traffic + rep.traffic
        if r == schedule.rounds + 1:
            assert sum(rep.messages for rep in reports) == 0
            kept = max(rep.max_kept for rep in reports)
            assert traffic.output_stats(kept, 0.0).counts() == local.trace.output.counts()
            break
        delivered = [deliver_block(plan, d, outputs[d], *(None if b == d else out[1][d] for b, out in enumerate(outputs)))
                     for d in range(plan.blocks)]
        held = [x[0] for x in delivered]
        stats = traffic.round_stats(r, max_received=max(x[1].max_received for x in delivered), wall_time=0.0)
        assert stats.counts() == local.trace.rounds[r - 1].counts()


def test_block_errors_are_returned_with_their_phase_never_raised():
    class BadStep(Protocol):
        name = "bad"

        def step(self, ctx, machine, memory, inbox):
            if machine == 3:
                raise KeyError("machine 3 fails")
            return memory, [(99, memory)] if machine == 1 else []

    cfg = square_config(4)
    plan = BlockPlan(BadStep(), cfg, 0, "machine", (0, 2, 4))
    start = ClusterState.from_list([np.arange(2)] * 4)
    _, pieces, report = compute_block(plan, 0, 1, (block_state(start, 0, 2), None))
    assert report.error.phase == 6 and report.messages == 1          # destinations checked: 99 is unknown
    assert all(p.num_messages == 0 for p in pieces)                  # nothing invalid is ever routed
    assert "unknown machine 99" in str(report.error.exception())
    _, _, report = compute_block(plan, 1, 1, (block_state(start, 2, 4), None))
    error = report.error.exception()          # the user's KeyError, with where it was raised
    assert report.error.phase == 0 and isinstance(error, StepError) and isinstance(error.__cause__, KeyError)
    assert error.round == 1 and error.machine == 3


def test_block_errors_that_do_not_pickle_still_travel():
    class Unpicklable(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a} and {b}")

    error = BlockError.capture(0, 2, Unpicklable(1, 2))
    assert isinstance(error.exception(), ProtocolError) and "Unpicklable: 1 and 2" in str(error.exception())


# --- accounting and limits over blocks ---------------------------------------------------------------------
@given(holding=st.lists(st.integers(0, 50), min_size=1, max_size=30), data=st.data())
def test_traffic_merged_over_any_blocks_equals_the_whole_clusters(holding, data):
    holding = np.array(holding)
    sent = np.array(data.draw(st.lists(st.integers(0, 50), min_size=len(holding), max_size=len(holding))))
    bounds = data.draw(bounds_for(len(holding)))
    whole = Traffic.measure(holding, sent, words=int(sent.sum()), messages=7)
    parts = [Traffic.measure(holding[lo:hi], sent[lo:hi], words=int(sent[lo:hi].sum()), messages=0)
             for lo, hi in zip(bounds[:-1], bounds[1:])]
    merged = parts[0]
    for part in parts[1:]:
        merged = merged + part
    assert merged.round_stats(1, max_received=0, wall_time=0).counts()[:4] == \
        whole.round_stats(1, max_received=0, wall_time=0).counts()[:4]
    assert merged.mean_holding == float(holding.mean())        # the local engine's former formula
    assert (merged.active, merged.words) == (whole.active, whole.words)
    limits = Limits(25, strict=False)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        limits.report("send", 1, *over_limit(sent[lo:hi], 25, lo))
    reference = Limits(25, strict=False)
    reference.check("send", 1, sent)
    assert limits.violations == reference.violations


# --- checkpoint files ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.int64, np.float64])
@pytest.mark.parametrize("with_inbox", [False, True])
def test_checkpoint_blocks_round_trip_bit_exactly_without_pickle(tmp_path, dtype, with_inbox):
    rng = np.random.default_rng(0)
    state = ClusterState.from_list([random_words(rng, k, dtype) for k in (3, 0, 5)], dtype)
    batch = MessageBatch.from_list([(0, 2, random_words(rng, 2, dtype)), (1, 0, random_words(rng, 1, dtype))], dtype)
    delivery = route(batch, 3) if with_inbox else None
    path = tmp_path / "round-000001" / "block-0000.npz"
    size, digest = save_block(str(path), (state, delivery))
    assert size == path.stat().st_size and digest == hashlib.sha256(path.read_bytes()).hexdigest()
    with np.load(path, allow_pickle=False) as z:      # plain arrays: loadable with pickle refused
        assert all(z[name].dtype != object for name in z.files)
    loaded, inbox = load_block(str(path), size=size, sha256=digest)
    assert loaded.equals(state) and loaded.dtype == dtype
    if with_inbox:
        for m in range(3):
            assert inbox.inbox(m).sources.tolist() == delivery.inbox(m).sources.tolist()
            assert np.array_equal(bits(inbox.inbox(m).words), bits(delivery.inbox(m).words))
    else:
        assert inbox is None
    assert sorted(os.listdir(path.parent)) == ["block-0000.npz"]            # no temporary file left


def test_checkpoint_commit_is_the_last_complete_round_and_prunes_the_others(tmp_path):
    store = CheckpointStore(tmp_path)
    state = ClusterState.from_list([np.arange(3)])
    for r in (0, 1):
        size, digest = save_block(str(store.block_path(r, 0)), (state, None))
        store.commit({"round": r, "files": [str(store.block_path(r, 0).relative_to(store.root))], "bytes": [size],
                      "sha256": [digest]})
    save_block(str(store.block_path(2, 0)), (state, None))        # round 2 written, never committed (a crash)
    assert store.manifest()["round"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json", "round-000001", "round-000002"]
    assert [p.name for p, _, _ in store.files(store.manifest())] == ["block-0000.npz"]
    assert json.loads((tmp_path / "checkpoint.json").read_text())["format"] == "anna-mpc/checkpoint/2"


def test_unreadable_checkpoints_are_refused_naming_the_file(tmp_path):
    store = CheckpointStore(tmp_path)
    (tmp_path / "checkpoint.json").write_text('{"format": "other"}')
    with pytest.raises(CheckpointError, match="not an anna-mpc checkpoint"):
        store.manifest()
    (tmp_path / "checkpoint.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read the checkpoint manifest"):
        store.manifest()
    with pytest.raises(CheckpointError, match="round 3 .* is missing block file .*block-0000.npz"):
        store.files({"round": 3, "files": ["round-000003/block-0000.npz"], "bytes": [1], "sha256": ["0" * 64]})
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(CheckpointError, match="cannot read checkpoint block"):
        load_block(str(tmp_path / "bad.npz"))
