"""Fault tolerance of the Dask backend on a LocalCluster of 2 worker processes: a worker killed in
the middle of a round (SIGKILL from inside one machine's step) does not change the result; the
round is recomputed from the checkpoint, or from the input without one, and the trace records it."""
import os

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="the dask backend needs the optional extra anna-mpc[dask]")

from mpc_sim import MPCConfig, Simulator  # noqa: E402
from mpc_sim.backends import BackendError  # noqa: E402
from mpc_sim.backends.dask import DaskOptions  # noqa: E402
from tests.strategies.backends import KillingDigesting, KillingSort  # noqa: E402
from tests.strategies.mpc import make_schedule  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


def killing_sort(tmp_path, kill_round=3):
    return KillingSort(kill_round=kill_round, kill_machine=0, marker=str(tmp_path / "killed"), driver_pid=os.getpid())


def test_a_worker_killed_mid_round_is_recovered_from_the_checkpoint_with_the_identical_result(cluster, tmp_path):
    protocol = killing_sort(tmp_path)
    config = protocol.default_config(3000, 0.5)
    data = protocol.generate_input(config, seed=4)
    local = Simulator(config).run(protocol, data, seed=1)
    result = Simulator(config, backend="dask", client=cluster, checkpoint=tmp_path / "ckpt").run(protocol, data, seed=1)
    assert os.path.exists(tmp_path / "killed")                     # a worker did die
    assert result.trace.counts() == local.trace.counts()
    assert np.array_equal(result.output, local.output) and np.array_equal(result.output, np.sort(data))
    sources = [(r.round, r.restarted_from, r.source) for r in result.trace.retries]
    assert sources == [(3, 2, "checkpoint")], result.trace.retries
    assert result.trace.retries[0].error                            # says what was lost


def test_without_a_checkpoint_the_run_restarts_from_its_input_and_replays_the_rounds(cluster, tmp_path):
    schedule = make_schedule(MPCConfig(n=200, eps=0.5), 4, seed=7)
    protocol = KillingDigesting(schedule, kill_round=3, kill_machine=5, marker=str(tmp_path / "killed"))
    local = Simulator(schedule.config, mode="machine").run(protocol, schedule.input_data(), record_states=True)
    result = Simulator(schedule.config, backend="dask", client=cluster).run(protocol, schedule.input_data(),
                                                                          record_states=True)
    assert os.path.exists(tmp_path / "killed")
    assert result.trace.counts() == local.trace.counts()
    assert all(a.equals(b) for a, b in zip(local.states, result.states)) and len(result.states) == len(local.states)
    assert [(r.round, r.restarted_from, r.source) for r in result.trace.retries] == [(3, 0, "input")]


def test_losing_workers_beyond_the_retry_budget_is_a_backend_error_naming_the_round(cluster, tmp_path):
    protocol = killing_sort(tmp_path, kill_round=2)
    config = protocol.default_config(3000, 0.5)
    with pytest.raises(BackendError, match="round 2: the Dask cluster lost workers or data 1 times \\(max_retries = 0\\)"):
        Simulator(config, backend="dask", client=cluster, dask=DaskOptions(max_retries=0)).run(
            protocol, protocol.generate_input(config, seed=4))


class Stop(Exception):
    pass


def test_a_worker_lost_after_a_resume_is_recomputed_by_dask_from_the_checkpoint_files(cluster, tmp_path):
    protocol = killing_sort(tmp_path, kill_round=3)
    config = protocol.default_config(3000, 0.5)
    data = protocol.generate_input(config, seed=4)
    local = Simulator(config).run(protocol, data, seed=1)

    def stop_after_round_2(stats):
        if stats.round == 2:
            raise Stop

    with pytest.raises(Stop):
        Simulator(config, backend="dask", client=cluster, checkpoint=tmp_path / "ckpt",
                  on_round=stop_after_round_2).run(protocol, data, seed=1)
    assert not os.path.exists(tmp_path / "killed")
    # resumed, the blocks come from tasks reading the checkpoint: Dask can recompute what the
    # killed worker held by itself, and the run never stops
    result = Simulator(config, backend="dask", client=cluster, resume=tmp_path / "ckpt").run(protocol, data, seed=1)
    assert os.path.exists(tmp_path / "killed")
    assert result.trace.counts() == local.trace.counts() and np.array_equal(result.output, local.output)
    assert [(r.round, r.restarted_from, r.source) for r in result.trace.retries] == [(3, 2, "dask")]
    assert "recomputed from their lineage" in result.trace.retries[0].error
