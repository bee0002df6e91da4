"""Fault tolerance of the Dask backend on a LocalCluster of 2 worker processes.

A worker killed in the middle of a round (SIGKILL from inside one machine's step) does not change
the result, and the trace records the retry. Whether Dask recomputes the lost blocks by itself
(from their lineage, when copies of what they came from survive on the other worker) or the
driver restarts from the checkpoint or the input depends on where Dask placed the data, so those
tests accept either; the driver's restarts are pinned down by restarting every worker between two
rounds (nothing survives), and Dask's own recovery by a kill after a resume (blocks read from the
checkpoint files can always be read again)."""
import os

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="the dask backend needs the optional extra anna-mpc[dask]")

# Worker-kill tests run with `-m slow`, not in the default suite: they pass in the development
# environment, but in a freshly cloned checkout (CI's situation) a SIGKILLed worker's nanny did not
# bring the worker back within 120 s and a resumed run waited in Client.gather (seen 2026-11-23,
# dask/distributed 2026.8.0). Until that is understood, issue #7's fault tolerance is not claimed
# as tested in CI.
pytestmark = pytest.mark.slow

from mpc_sim import MPCConfig, Simulator  # noqa: E402
from mpc_sim.backends import BackendError  # noqa: E402
from mpc_sim.backends.dask import DaskOptions  # noqa: E402
from mpc_sim.protocols.sample_sort import SampleSort  # noqa: E402
from tests.strategies.backends import Digesting, KillingDigesting, KillingSort  # noqa: E402
from tests.strategies.mpc import make_schedule  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(autouse=True)
def both_workers_up(cluster):
    """A killed worker is restarted by its nanny: every test starts with two workers."""
    cluster.wait_for_workers(2, timeout=60)


def killing_sort(tmp_path, kill_round=3):
    return KillingSort(kill_round=kill_round, kill_machine=0, marker=str(tmp_path / "killed"), driver_pid=os.getpid())


def restart_workers_after(cluster, round):
    """An on_round callback restarting every worker once ``round`` is complete: all data is lost."""
    def on_round(stats):
        if stats.round == round:
            cluster.restart()
    return on_round


def retries(result):
    return [(r.round, r.restarted_from, r.source) for r in result.trace.retries]


# --- a worker killed in the middle of a round ------------------------------------------------------------
def test_a_worker_killed_mid_round_does_not_change_the_result_of_a_checkpointed_run(cluster, tmp_path):
    protocol = killing_sort(tmp_path)
    config = protocol.default_config(3000, 0.5)
    data = protocol.generate_input(config, seed=4)
    local = Simulator(config).run(protocol, data, seed=1)
    result = Simulator(config, backend="dask", client=cluster, checkpoint=tmp_path / "ckpt").run(protocol, data, seed=1)
    assert os.path.exists(tmp_path / "killed")                     # a worker did die, in round 3
    assert result.trace.counts() == local.trace.counts()
    assert np.array_equal(result.output, local.output) and np.array_equal(result.output, np.sort(data))
    assert retries(result) in ([(3, 2, "checkpoint")], [(3, 2, "dask")], [(2, 1, "dask")]), result.trace.retries
    assert result.trace.retries[0].error                            # says what was lost


def test_a_worker_killed_mid_round_does_not_change_any_round_of_a_run_without_checkpoint(cluster, tmp_path):
    schedule = make_schedule(MPCConfig(n=200, eps=0.5), 4, seed=7)
    protocol = KillingDigesting(schedule, kill_round=3, kill_machine=5, marker=str(tmp_path / "killed"))
    local = Simulator(schedule.config, mode="machine").run(protocol, schedule.input_data(), record_states=True)
    result = Simulator(schedule.config, backend="dask", client=cluster).run(protocol, schedule.input_data(),
                                                                          record_states=True)
    assert os.path.exists(tmp_path / "killed")
    assert result.trace.counts() == local.trace.counts()
    assert len(result.states) == len(local.states) and all(a.equals(b) for a, b in zip(local.states, result.states))
    assert retries(result) in ([(3, 0, "input")], [(3, 2, "dask")], [(2, 1, "dask")]), result.trace.retries


def test_a_worker_killed_after_a_resume_is_recomputed_by_dask_itself_from_the_checkpoint_files(cluster, tmp_path):
    protocol = killing_sort(tmp_path, kill_round=3)
    config = protocol.default_config(3000, 0.5)
    data = protocol.generate_input(config, seed=4)
    local = Simulator(config).run(protocol, data, seed=1)

    class Stop(Exception):
        pass

    def stop_after_round_2(stats):
        if stats.round == 2:
            raise Stop

    with pytest.raises(Stop):
        Simulator(config, backend="dask", client=cluster, checkpoint=tmp_path / "ckpt",
                  on_round=stop_after_round_2).run(protocol, data, seed=1)
    assert not os.path.exists(tmp_path / "killed")
    result = Simulator(config, backend="dask", client=cluster, resume=tmp_path / "ckpt").run(protocol, data, seed=1)
    assert os.path.exists(tmp_path / "killed")
    assert result.trace.counts() == local.trace.counts() and np.array_equal(result.output, local.output)
    assert retries(result) == [(3, 2, "dask")]
    assert "recomputed from their lineage" in result.trace.retries[0].error


# --- every worker lost: the driver restarts -----------------------------------------------------------------
def test_when_nothing_survives_the_round_restarts_from_the_last_checkpointed_round(cluster, tmp_path):
    schedule = make_schedule(MPCConfig(n=200, eps=0.5), 4, seed=3)
    local = Simulator(schedule.config, mode="machine").run(Digesting(schedule), schedule.input_data())
    result = Simulator(schedule.config, backend="dask", client=cluster, checkpoint=tmp_path,
                       on_round=restart_workers_after(cluster, 2)).run(Digesting(schedule), schedule.input_data())
    assert result.trace.counts() == local.trace.counts()
    assert np.array_equal(result.output.view(np.int64), local.output.view(np.int64))
    assert retries(result) == [(3, 2, "checkpoint")]


def test_without_a_checkpoint_the_run_restarts_from_its_input_and_checks_the_replayed_rounds(cluster, tmp_path):
    schedule = make_schedule(MPCConfig(n=200, eps=0.5), 4, seed=3)
    local = Simulator(schedule.config, mode="machine").run(Digesting(schedule), schedule.input_data(),
                                                           record_states=True)
    seen = []

    def on_round(stats):
        seen.append(stats.round)
        if stats.round == 2 and seen.count(2) == 1:
            cluster.restart()

    result = Simulator(schedule.config, backend="dask", client=cluster, on_round=on_round).run(
        Digesting(schedule), schedule.input_data(), record_states=True)
    assert result.trace.counts() == local.trace.counts()
    assert len(result.states) == len(local.states) and all(a.equals(b) for a, b in zip(local.states, result.states))
    assert retries(result) == [(3, 0, "input")]
    assert seen == [1, 2, 3, 4]          # replayed rounds 1 and 2 are checked, not reported again


def test_losing_workers_beyond_the_retry_budget_is_a_backend_error_naming_the_round(cluster, tmp_path):
    schedule = make_schedule(MPCConfig(n=200, eps=0.5), 4, seed=3)
    with pytest.raises(BackendError, match="round 3: the Dask cluster lost workers or data 1 times \\(max_retries = 0\\)"):
        Simulator(schedule.config, backend="dask", client=cluster, dask=DaskOptions(max_retries=0),
                  on_round=restart_workers_after(cluster, 2)).run(Digesting(schedule), schedule.input_data())


@pytest.mark.slow
def test_a_ten_million_word_sort_survives_a_worker_killed_in_its_heaviest_round(cluster, tmp_path):
    config = SampleSort().default_config(10**7, 0.5)
    heaviest = SampleSort().plan(config).classify_round          # the round every element is sent in
    protocol = KillingSort(kill_round=heaviest, kill_machine=0, marker=str(tmp_path / "killed"),
                           driver_pid=os.getpid())
    data = protocol.generate_input(config, seed=11)
    local = Simulator(config).run(protocol, data, seed=2)
    result = Simulator(config, backend="dask", client=cluster, checkpoint=tmp_path / "ckpt",
                       dask=DaskOptions(blocks=8)).run(protocol, data, seed=2)
    assert os.path.exists(tmp_path / "killed")
    assert result.trace.counts() == local.trace.counts() and np.array_equal(result.output, local.output)
    assert len(result.trace.retries) == 1 and result.trace.retries[0].round in (heaviest - 1, heaviest)
