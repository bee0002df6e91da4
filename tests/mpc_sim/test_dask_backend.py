"""The Dask backend runs the same protocols as the local engine with identical results: outputs,
every round's states and inboxes, trace counts, violations and errors; it checkpoints and resumes
to the identical result; it fails cleanly on an unreachable scheduler. Workers here are threads of
the test process (fast); the worker-kill tests, which need processes, are in test_dask_faults.py."""
import json
import socket
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

distributed = pytest.importorskip("distributed", reason="the dask backend needs the optional extra anna-mpc[dask]")
import dask  # noqa: E402  (installed with distributed)

from mpc_sim import (MPCConfig, Protocol, ProtocolError, Simulator, UnknownDestination, make_protocol,  # noqa: E402
                     simulate)
from mpc_sim.backends import BackendError, CheckpointError  # noqa: E402
from mpc_sim.backends.blocks import partition  # noqa: E402
from mpc_sim.backends.dask import DaskOptions, connect  # noqa: E402
from mpc_sim.errors import StepError  # noqa: E402
from mpc_sim.testing import budget_problems  # noqa: E402
from mpc_sim.trace import Retry, Trace  # noqa: E402
from reductions.cli import main as cli_main  # noqa: E402
from tests.strategies.engine import (BATCH_MALFORMED, LIMIT_ERRORS, MACHINE_MALFORMED, Returns,  # noqa: E402
                                     Rounds, SendTo)
from tests.strategies.backends import (BlockDigesting, Digesting, assert_same_report,  # noqa: E402
                                       in_process_client)
from mpc_sim.strategies import ScriptedProtocol, make_schedule, schedules  # noqa: E402


client = pytest.fixture(scope="module", name="client")(in_process_client)


def on_dask(config, client, blocks=None, **kwargs) -> Simulator:
    return Simulator(config, backend="dask", dask=DaskOptions(blocks=blocks, client=client), **kwargs)


def bits(a):
    return np.asarray(a).view(np.int64)


def assert_identical(local, dask):
    assert_same_report(dask.trace, local.trace)                 # counts, peaks, messages when recorded
    assert dask.output.dtype == local.output.dtype and np.array_equal(bits(dask.output), bits(local.output))
    assert dask.state.equals(local.state)
    assert len(dask.states) == len(local.states)
    for r, (a, b) in enumerate(zip(local.states, dask.states), start=1):
        assert b.equals(a), f"states differ after round {r}"


# --- equivalence ---------------------------------------------------------------------------------------------
@settings(max_examples=12)
@given(schedule=schedules(), seed=st.integers(0, 2**32 - 1), blocks=st.integers(1, 4))
def test_per_machine_runs_on_blocks_equal_local_runs_state_by_state_peaks_and_messages_included(client, schedule,
                                                                                                seed, blocks):
    local = Simulator(schedule.config, mode="machine").run(Digesting(schedule), schedule.input_data(), seed=seed,
                                                          record_states=True, record_messages=True)
    dask = on_dask(schedule.config, client, blocks).run(Digesting(schedule), schedule.input_data(), seed=seed,
                                                        record_states=True, record_messages=True)
    assert dask.trace.messages is not None
    assert_identical(local, dask)
    assert dask.trace.retries == () and dask.trace.check() == []


@settings(max_examples=8)
@given(schedule=schedules(), blocks=st.integers(1, 4))
def test_block_local_batch_steps_run_per_block_and_equal_the_whole_cluster_batch(client, schedule, blocks):
    local = Simulator(schedule.config, mode="batch").run(BlockDigesting(schedule), schedule.input_data(),
                                                         record_states=True)
    dask = on_dask(schedule.config, client, blocks, mode="batch").run(BlockDigesting(schedule), schedule.input_data(),
                                                                      record_states=True)
    assert_identical(local, dask)


@settings(max_examples=8)
@given(schedule=schedules(loose=True, max_rounds=2), blocks=st.integers(1, 3))
def test_violations_are_recorded_identically_and_strict_runs_raise_the_same_first_error(client, schedule, blocks):
    local = Simulator(schedule.config, strict=False, mode="machine").run(Digesting(schedule), schedule.input_data())
    dask = on_dask(schedule.config, client, blocks, strict=False).run(Digesting(schedule), schedule.input_data())
    assert dask.trace.counts() == local.trace.counts()          # includes the violations, in order
    assert dask.trace.peaks == local.trace.peaks                # the machines over a budget, as assert_within names them
    assert budget_problems(dask.trace, memory=schedule.config.s, sent=schedule.config.s,
                           received=schedule.config.s) == budget_problems(local.trace, memory=schedule.config.s,
                                                                          sent=schedule.config.s,
                                                                          received=schedule.config.s)
    assert np.array_equal(bits(dask.output), bits(local.output))
    if not local.trace.violations:
        return
    first = local.trace.violations[0]
    with pytest.raises(LIMIT_ERRORS[first.kind]) as info:
        on_dask(schedule.config, client, blocks).run(Digesting(schedule), schedule.input_data())
    assert (info.value.round, info.value.machine, info.value.observed) == (first.round, first.machine, first.observed)


# every library protocol against the local engine: the dask stage of the shared case table (tests/test_stages.py)
@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 4000), eps=st.sampled_from([0.5, 0.6, 0.75]), seed=st.integers(0, 2**32 - 1),
       blocks=st.integers(1, 9), duplicates=st.booleans(), mode=st.sampled_from(["batch", "machine"]))
def test_sample_sort_on_any_blocks_equals_the_whole_cluster_batch_round_by_round(client, n, eps, seed, blocks,
                                                                                 duplicates, mode):
    protocol = make_protocol("sort")
    assert protocol.block_batch
    config = protocol.default_config(n, eps)
    data = (np.random.default_rng(seed).integers(-3, 4, n) if duplicates
            else protocol.generate_input(config, seed=seed % 1000))
    local = Simulator(config).run(protocol, data, seed=seed, record_states=True)
    dask = on_dask(config, client, blocks, mode=mode).run(protocol, data, seed=seed, record_states=True)
    assert_identical(local, dask)                # every round's states, the counts, the output
    assert np.array_equal(dask.output, np.sort(data))


@pytest.mark.parametrize("eps, memory_factor, n, depth", [(0.45, 12, 30_000, 3), (0.4, 16, 10_000, 6)])
def test_sample_sort_with_a_deep_splitter_tree_runs_on_blocks_like_the_whole_cluster(client, eps, memory_factor, n,
                                                                                     depth):
    protocol = make_protocol("sort")
    config = MPCConfig(n=n, eps=eps, memory_factor=memory_factor, machines_factor=4)
    assert protocol.plan(config).tree().depth == depth          # splitters spread over several rounds
    data = protocol.generate_input(config, seed=3)
    local = Simulator(config).run(protocol, data, seed=4, record_states=True)
    dask = on_dask(config, client, blocks=7).run(protocol, data, seed=4, record_states=True)
    assert_identical(local, dask)
    assert np.array_equal(dask.output, np.sort(data))


def test_blocks_are_computed_on_both_workers_and_messages_cross_between_them(client):
    protocol = make_protocol("sort")
    config = protocol.default_config(3000, 0.5)
    with distributed.get_task_stream(client=client) as stream:
        result = on_dask(config, client, blocks=4).run(protocol, protocol.generate_input(config, seed=1))
    assert protocol.verify(protocol.generate_input(config, seed=1), result.output)

    def tasks(name):
        return [t for t in stream.data if str(t["key"]).startswith(name)]
    assert {t["worker"] for t in tasks("compute_block")} == set(client.nthreads())
    transfers = [s for t in tasks("deliver_block") for s in t["startstops"] if s["action"] == "transfer"]
    assert transfers, "the all-to-all moved no piece between workers"


def test_block_local_steps_get_blocks_of_equal_initial_words_and_per_machine_steps_equal_machine_counts(client,
                                                                                                        tmp_path):
    protocol = make_protocol("sort")
    config = protocol.default_config(20_000, 0.5)
    data = protocol.generate_input(config, seed=2)

    def bounds(directory, mode):
        on_dask(config, client, blocks=4, mode=mode, checkpoint=tmp_path / directory).run(protocol, data, seed=1)
        return json.loads((tmp_path / directory / "checkpoint.json").read_text())["bounds"]

    weights = protocol.initial_state(config, protocol.validate_input(config, data)).sizes() + 1
    cut = bounds("block", "batch")
    per_block = np.add.reduceat(weights, np.array(cut[:-1]))
    assert per_block.max() <= weights.sum() / 4 + 2 * weights.max()
    assert cut[3] < config.machines // 4          # the input sits on the first n / s machines: 3 blocks share it
    assert bounds("machine", "machine") == list(partition(config.machines, 4))


def test_auto_mode_on_dask_prefers_per_machine_steps_unless_the_batch_step_is_block_local(client):
    schedule = make_schedule(MPCConfig(n=20, eps=0.5), 1, seed=0)
    sim = on_dask(schedule.config, client)
    assert sim.resolve_mode(ScriptedProtocol(schedule)) == "machine"
    assert sim.resolve_mode(BlockDigesting(schedule)) == "batch"
    assert Simulator(schedule.config).resolve_mode(ScriptedProtocol(schedule)) == "batch"


def test_a_batch_step_that_is_not_block_local_runs_as_one_task_over_the_whole_cluster(client):
    schedule = make_schedule(MPCConfig(n=60, eps=0.5), 2, seed=3)
    local = Simulator(schedule.config, mode="batch").run(ScriptedProtocol(schedule, "script"), schedule.input_data())
    dask = on_dask(schedule.config, client, blocks=4, mode="batch").run(ScriptedProtocol(schedule, "script"),
                                                                      schedule.input_data())
    assert_identical(local, dask)


# --- errors: the ones the local engine raises, in its order --------------------------------------------------
@pytest.mark.parametrize("name", sorted(MACHINE_MALFORMED))
def test_malformed_steps_raise_the_local_engines_error(client, name):
    make, message = MACHINE_MALFORMED[name]
    cfg = MPCConfig(n=16, eps=0.5)
    with pytest.raises(ProtocolError, match=message) as local:
        Simulator(cfg, mode="machine").run(Returns(make), np.arange(16))
    with pytest.raises(ProtocolError, match=message) as dask:
        on_dask(cfg, client, blocks=2, mode="machine").run(Returns(make), np.arange(16))
    assert str(dask.value) == str(local.value) and dask.value.round == 1


@pytest.mark.parametrize("name", sorted(BATCH_MALFORMED))
def test_malformed_batch_steps_raise_the_local_engines_error(client, name):
    make, message = BATCH_MALFORMED[name]
    cfg = MPCConfig(n=16, eps=0.5)
    with pytest.raises(ProtocolError, match=message) as local:
        Simulator(cfg, mode="batch").run(Returns(make), np.arange(16))
    with pytest.raises(ProtocolError, match=message) as dask:
        on_dask(cfg, client, mode="batch").run(Returns(make), np.arange(16))
    assert str(dask.value) == str(local.value)


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("destination", [-1, 4, 11])
def test_unknown_destinations_raise_the_typed_error_on_dask_too(client, strict, destination):
    with pytest.raises(UnknownDestination) as info:
        on_dask(MPCConfig(n=16, eps=0.5), client, blocks=2, strict=strict).run(SendTo(destination), np.arange(16))
    assert (info.value.round, info.value.machine, info.value.destination) == (1, 0, destination)


def test_empty_messages_and_never_halting_protocols_are_stopped_as_locally(client):
    cfg = MPCConfig(n=16, eps=0.5)
    with pytest.raises(ProtocolError, match="carries 0 words"):
        on_dask(cfg, client).run(SendTo(2, payload=()), np.arange(16))
    with pytest.raises(ProtocolError, match="still sending after max_rounds = 3") as info:
        on_dask(cfg, client, max_rounds=3).run(Rounds(10**9), np.arange(16))
    assert info.value.round == 4
    assert on_dask(cfg, client, max_rounds=3).run(Rounds(3), np.arange(16)).trace.num_rounds == 3


def test_an_exception_in_a_step_arrives_with_its_type_message_and_remote_traceback(client):
    class Fails(Protocol):
        name = "fails"

        def step(self, ctx, machine, memory, inbox):
            if machine == 2:
                raise ZeroDivisionError(f"machine {machine} divides by zero")
            return memory, []

    with pytest.raises(StepError, match="round 1, machine 2: the protocol's step raised ZeroDivisionError: "
                                         "machine 2 divides by zero") as info:
        on_dask(MPCConfig(n=16, eps=0.5), client, blocks=2).run(Fails(), np.arange(16))
    assert isinstance(info.value.__cause__, ZeroDivisionError) and info.value.machine == 2
    assert any("step phase of block 1" in note for note in info.value.__notes__)


def test_a_block_local_batch_step_sending_from_outside_its_block_is_refused(client):
    class Outside(Protocol):
        name = "outside"
        block_batch = True

        def batch_step(self, ctx, state, delivery):
            from mpc_sim import ClusterState, MessageBatch
            empty = ClusterState.empty(state.machines)
            if ctx.round > 1:
                return empty, MessageBatch.empty()
            return empty, MessageBatch.from_list([(0, 1, [5])])       # every block claims machine 0

    with pytest.raises(ProtocolError, match="not a machine of its block \\(2..3\\)"):
        on_dask(MPCConfig(n=16, eps=0.5), client, blocks=2, mode="batch").run(Outside(), np.arange(16))


# --- arguments ------------------------------------------------------------------------------------------------
def test_backend_arguments_are_checked():
    cfg = MPCConfig(n=16, eps=0.5)
    with pytest.raises(ValueError, match="backend must be one of"):
        Simulator(cfg, backend="spark")
    with pytest.raises(ValueError, match="client, checkpoint need backend='dask'"):
        Simulator(cfg, client="tcp://x:1", checkpoint="somewhere")
    with pytest.raises(TypeError, match="DaskOptions"):
        Simulator(cfg, backend="dask", dask={"workers": 2}).run(Rounds(1), np.arange(16))
    for bad in (dict(workers=0), dict(blocks=0), dict(connect_timeout=0), dict(max_retries=-1),
                dict(worker_timeout=0), dict(worker_timeout=float("nan")), dict(round_timeout=-1.0),
                dict(round_timeout=True), dict(lost_worker_grace=float("inf"))):
        with pytest.raises(ValueError, match=next(iter(bad))):
            DaskOptions(**bad)
    with pytest.raises(ValueError, match="only when resuming"):
        Simulator(cfg, backend="dask", client="tcp://127.0.0.1:1").run(Rounds(1), None)


def test_without_a_client_a_local_cluster_is_started_for_the_run_and_closed_after(monkeypatch):
    started, grace = [], []

    class Recorded(distributed.LocalCluster):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)
            # a lost worker's nanny gets DaskOptions.lost_worker_grace, not Dask's 15 s, to come back
            grace.append(dask.config.get("distributed.deploy.lost-worker-timeout"))

    monkeypatch.setattr(distributed, "LocalCluster", Recorded)
    protocol = make_protocol("prefix-sum")
    config = protocol.default_config(300, 0.5)
    data = protocol.generate_input(config, seed=1)
    result = simulate(protocol, data, config, backend="dask", verify=True)      # default options: 2 processes
    assert result.trace.verified and result.trace.counts() == simulate(protocol, data, config).trace.counts()
    (cluster,) = started
    assert len(cluster.workers) == 0 and cluster.status.name == "closed"
    assert grace == [f"{DaskOptions().lost_worker_grace}s"]
    assert dask.config.get("distributed.deploy.lost-worker-timeout") != grace[0]      # restored after the run


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_an_unreachable_scheduler_is_a_clean_error_naming_address_and_timeout():
    address = f"tcp://127.0.0.1:{closed_port()}"
    start = time.perf_counter()
    with pytest.raises(BackendError) as info:
        Simulator(MPCConfig(n=16, eps=0.5), backend="dask", client=address,
                  dask=DaskOptions(connect_timeout=1.0)).run(Rounds(1), np.arange(16))
    assert time.perf_counter() - start < 15          # no hang: the timeout is honoured
    assert address in str(info.value) and "1 s connect timeout" in str(info.value)
    with pytest.raises(BackendError, match="could not reach the Dask scheduler at nowhere"):
        connect("nowhere", timeout=0.5)


def test_a_failed_connection_leaves_no_half_built_client_for_the_garbage_collector():
    """A Client whose start failed closes itself when collected; collected in the middle of another
    Client's start it deadlocks on the loop runners' shared lock. connect collects it at once."""
    import gc
    enabled = gc.isenabled()
    gc.disable()
    try:
        with pytest.raises(BackendError):
            connect(f"tcp://127.0.0.1:{closed_port()}", timeout=1.0)
        # type(), not isinstance(): the heap holds dead weak proxies, on which isinstance raises
        assert not [o for o in gc.get_objects() if type(o) is distributed.Client and o.status != "running"]
    finally:
        if enabled:
            gc.enable()


def test_cli_reports_an_unreachable_scheduler_and_exits_2(capsys):
    address = f"tcp://127.0.0.1:{closed_port()}"
    status = cli_main(["simulate", "broadcast", "--n", "64", "--eps", "0.5", "--backend", "dask",
                       "--scheduler", address, "--connect-timeout", "1", "--no-table"])
    out = capsys.readouterr().out
    assert status == 2 and "BackendError" in out and address in out and "1 s" in out


def test_cli_refuses_dask_options_without_the_dask_backend_and_a_cluster_size_with_a_scheduler(capsys):
    status = cli_main(["simulate", "broadcast", "--n", "64", "--eps", "0.5", "--workers", "3", "--resume", "x"])
    assert status == 2 and "--workers, --resume need --backend dask" in capsys.readouterr().err
    status = cli_main(["simulate", "broadcast", "--n", "64", "--eps", "0.5", "--backend", "dask", "--workers", "3",
                       "--scheduler", "tcp://127.0.0.1:1"])
    assert status == 2 and "cannot be combined with --scheduler" in capsys.readouterr().err


# --- checkpoints and resume ----------------------------------------------------------------------------------
class Stop(Exception):
    pass


def stop_after(k: int, seen: list):
    def on_round(stats):
        seen.append(stats)
        if stats.round == k:
            raise Stop(f"interrupted after round {k}")
    return on_round


def test_checkpoint_files_hold_exactly_the_state_after_the_last_round_without_pickle(client, tmp_path):
    protocol = make_protocol("sort")
    config = protocol.default_config(1000, 0.5)
    data = protocol.generate_input(config, seed=1)
    local = Simulator(config).run(protocol, data, seed=2, record_states=True)
    result = on_dask(config, client, blocks=3, checkpoint=tmp_path).run(protocol, data, seed=2)
    assert result.trace.counts() == local.trace.counts() and np.array_equal(result.output, local.output)
    manifest = json.loads((tmp_path / "checkpoint.json").read_text())
    last = local.trace.num_rounds
    weights = protocol.initial_state(config, data).sizes() + 1            # sort's block step: equal words
    assert manifest["round"] == last and manifest["bounds"] == list(partition(config.machines, 3, weights))
    assert [r["round"] for r in manifest["trace"]["rounds"]] == list(range(1, last + 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json", f"round-{last:06d}"]
    words, sizes = [], []
    for name in manifest["files"]:
        with np.load(tmp_path / name, allow_pickle=False) as z:
            words.append(z["state_words"])
            sizes.append(np.diff(z["state_offsets"]))
            assert z["inbox_machine_offsets"].shape[0] == np.diff(z["state_offsets"]).shape[0] + 1
    expected = local.states[last - 1]                   # kept memories after round R's computation
    assert np.array_equal(np.concatenate(words), expected.words)
    assert np.array_equal(np.concatenate(sizes), expected.sizes())


@pytest.mark.parametrize("stop", [1, 3])
def test_resume_continues_from_the_last_complete_round_to_the_identical_result(client, tmp_path, stop):
    protocol = make_protocol("sort")
    config = protocol.default_config(1000, 0.5)
    data = protocol.generate_input(config, seed=1)
    local = Simulator(config).run(protocol, data, seed=2)
    seen = []
    with pytest.raises(Stop):
        on_dask(config, client, checkpoint=tmp_path, on_round=stop_after(stop, seen)).run(protocol, data, seed=2)
    assert json.loads((tmp_path / "checkpoint.json").read_text())["round"] == stop   # on_round: once durable
    # a crash while writing the next round: a torn file of that round must not matter
    (tmp_path / f"round-{stop + 1:06d}").mkdir()
    (tmp_path / f"round-{stop + 1:06d}" / "block-0000.npz").write_bytes(b"torn")
    resumed = on_dask(config, client, resume=tmp_path).run(protocol, data, seed=2)
    assert resumed.trace.counts() == local.trace.counts()
    assert resumed.trace.peaks == local.trace.peaks             # the checkpointed rounds' peaks come back too
    assert np.array_equal(resumed.output, local.output) and resumed.state.equals(local.state)
    # rounds up to the checkpoint come back from it losslessly, wall times included
    assert resumed.trace.rounds[:stop] == tuple(seen)
    assert [r.wall_time for r in resumed.trace.rounds[:stop]] == [r.wall_time for r in seen]
    again = on_dask(config, client, resume=tmp_path).run(protocol, None, seed=2)   # the input is not needed
    assert np.array_equal(again.output, local.output)


def test_a_checkpoint_without_peaks_resumes_with_the_peaks_of_the_rounds_run_after_it(client, tmp_path):
    """Checkpoints written before peaks were checkpointed hold none: the resumed run has the later rounds'."""
    from mpc_sim.backends.checkpoint import CheckpointStore
    protocol = make_protocol("prefix-sum")
    config = protocol.default_config(300, 0.5)
    data = protocol.generate_input(config, seed=1)
    local = Simulator(config).run(protocol, data, seed=2)
    with pytest.raises(Stop):
        on_dask(config, client, checkpoint=tmp_path, on_round=stop_after(1, [])).run(protocol, data, seed=2)
    store = CheckpointStore(tmp_path)
    manifest = store.manifest()
    assert [p["round"] for p in manifest["trace"]["peaks"]] == [1]
    del manifest["trace"]["peaks"]
    store.commit({k: v for k, v in manifest.items() if k not in ("format", "trace_sha256", "manifest_sha256")})
    resumed = on_dask(config, client, resume=tmp_path).run(protocol, data, seed=2)
    assert resumed.trace.counts() == local.trace.counts()
    assert resumed.trace.peaks == local.trace.peaks[1:]


def test_resume_refuses_another_run_a_missing_checkpoint_and_a_used_directory(client, tmp_path):
    protocol = make_protocol("prefix-sum")
    config = protocol.default_config(300, 0.5)
    data = protocol.generate_input(config, seed=1)
    on_dask(config, client, checkpoint=tmp_path).run(protocol, data, seed=2)
    with pytest.raises(CheckpointError, match="seed: checkpoint has 2, this run 3"):
        on_dask(config, client, resume=tmp_path).run(protocol, data, seed=3)
    with pytest.raises(CheckpointError, match="protocol: checkpoint has 'prefix-sum', this run 'aggregate'"):
        on_dask(config, client, resume=tmp_path).run(make_protocol("aggregate"), data, seed=2)
    with pytest.raises(CheckpointError, match="the input differs"):
        on_dask(config, client, resume=tmp_path).run(protocol, data + 1, seed=2)
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        on_dask(config, client, checkpoint=tmp_path).run(protocol, data, seed=2)
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        on_dask(config, client, resume=tmp_path / "empty").run(protocol, data, seed=2)


def test_resume_into_another_directory_copies_the_checkpoint_there(client, tmp_path):
    protocol = make_protocol("sort")
    config = protocol.default_config(1000, 0.5)
    data = protocol.generate_input(config, seed=1)
    with pytest.raises(Stop):
        on_dask(config, client, checkpoint=tmp_path / "a", on_round=stop_after(2, [])).run(protocol, data)
    result = on_dask(config, client, resume=tmp_path / "a", checkpoint=tmp_path / "b").run(protocol, data)
    assert np.array_equal(result.output, np.sort(data))
    assert json.loads((tmp_path / "b" / "checkpoint.json").read_text())["round"] == result.trace.num_rounds


def test_cli_runs_on_a_given_scheduler_with_checkpoint_and_resume(client, tmp_path, capsys):
    args = ["simulate", "sort", "--n", "1000", "--eps", "0.5", "--backend", "dask", "--no-table",
            "--scheduler", client.scheduler.address]
    assert cli_main(args + ["--checkpoint", str(tmp_path), "--trace-json", str(tmp_path / "a.json")]) == 0
    assert cli_main(args + ["--resume", str(tmp_path), "--trace-json", str(tmp_path / "b.json")]) == 0
    first, second = Trace.from_json(tmp_path / "a.json"), Trace.from_json(tmp_path / "b.json")
    assert first.counts() == second.counts() and first.verified and second.verified
    assert "verified" in capsys.readouterr().out


# --- the trace's retry records -----------------------------------------------------------------------------
def test_retries_round_trip_through_json_and_stay_out_of_the_counts():
    schedule = make_schedule(MPCConfig(n=20, eps=0.5), 2, seed=0)
    trace = Simulator(schedule.config).run(ScriptedProtocol(schedule), schedule.input_data()).trace
    retried = Trace(**{**{f: getattr(trace, f) for f in trace.__dataclass_fields__},
                       "retries": (Retry(2, 1, "checkpoint", "FutureCancelledError: lost"), Retry(2, 0, "input", "x"))})
    assert retried.counts() == trace.counts() and retried != trace
    back = Trace.from_json(retried.to_json())
    assert back == retried and back.retries == retried.retries
    assert Trace.from_dict({k: v for k, v in json.loads(trace.to_json()).items() if k != "retries"}) == trace
    with pytest.raises(ValueError, match="source"):
        Retry(2, 1, "luck", "")
    with pytest.raises(ValueError, match="earlier round"):
        Retry(2, 2, "input", "")
