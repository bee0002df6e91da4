"""The benchmark script runs end to end at its --quick sizes and writes the documented JSON."""
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_mpc.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_mpc", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_benchmark_writes_every_documented_number(bench, tmp_path, capsys):
    path = tmp_path / "bench.json"
    status = bench.main(["--quick", "--json", str(path)])
    data = json.loads(path.read_text())
    for key in ("routing_words_per_s", "baseline_words_per_s", "routing_speedup", "per_machine_steps_per_s",
                "round_words_per_s"):
        assert data[key] > 0, key
    assert data["routing_speedup"] == pytest.approx(data["routing_words_per_s"] / data["baseline_words_per_s"])
    assert [row["n"] for row in data["routing"]] == [10**4, 10**5]
    sort_available = importlib.util.find_spec(bench.SORT_MODULE) is not None
    if sort_available:
        assert status == 0 and data["sort_error"] is None, data["sort_error"]
        assert data["sort_1e7_seconds"] > 0 and data["sort_1e7_peak_over_input"] > 0
        assert data["sort"]["rounds"] <= data["sort"]["rounds_bound"]
    else:           # the row must fail loudly, naming the missing protocol
        assert status == 1 and "SampleSort" in data["sort_error"]
        assert data["sort_1e7_seconds"] is None
    out = capsys.readouterr().out
    assert "route() alone" in out and "per-machine API" in out


def test_all_to_all_batch_sends_every_word_once_within_the_limits(bench):
    import numpy as np

    cfg, batch = bench.all_to_all_batch(10**4)
    assert batch.num_words == 10**4
    assert np.array_equal(np.sort(batch.words), np.arange(10**4))
    sent = np.bincount(batch.src, weights=batch.lengths(), minlength=cfg.machines)
    received = np.bincount(batch.dst, weights=batch.lengths(), minlength=cfg.machines)
    assert sent.max() <= cfg.s and received.max() <= cfg.s
    assert len(set(zip(batch.src.tolist(), batch.dst.tolist()))) == batch.num_messages   # one per pair


def test_python_baseline_delivers_like_route(bench):
    import numpy as np
    from mpc_sim import route

    cfg, batch = bench.all_to_all_batch(2000)
    inboxes = bench.python_route(batch.src, batch.dst, batch.offsets, batch.words, cfg.machines)
    delivery = route(batch, cfg.machines)
    for machine in range(cfg.machines):
        got = delivery.inbox(machine)
        assert got.sources.tolist() == [int(s) for s, _ in inboxes[machine]]
        assert np.array_equal(got.words, np.concatenate([p for _, p in inboxes[machine]]))
