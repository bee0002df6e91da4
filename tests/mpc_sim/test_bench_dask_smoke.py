"""The Dask benchmark runs end to end at its --quick size and writes the documented JSON."""
import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="the dask benchmark needs the optional extra anna-mpc[dask]")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_dask.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_dask", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_benchmark_times_every_round_on_both_backends_and_measures_worker_memory(bench, tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert bench.main(["--quick", "--blocks", "4", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["errors"] == [] and data["workers"] == 2 and data["blocks"] == 4
    (row,) = data["rows"]
    local, machine, dask, dask_machine = row["local"], row["local_machine"], row["dask"], row["dask_machine"]
    assert row["n"] == 10**5 and local["sorted"] and dask["sorted"]
    assert dask["mode"] == "auto" and dask_machine["mode"] == "machine"
    # identical work: same output and trace counts on every backend and style
    assert local["output_digest"] == machine["output_digest"] == dask["output_digest"] == dask_machine["output_digest"]
    assert local["counts"] == machine["counts"] == dask["counts"] == dask_machine["counts"]
    assert row["ratio_dask_machine"] == pytest.approx(dask_machine["seconds"] / local["seconds"])
    assert len(dask["round_seconds"]) == len(local["round_seconds"]) == local["rounds"] + 1
    assert all(t > 0 for t in dask["round_seconds"])
    assert row["ratio"] == pytest.approx(dask["seconds"] / local["seconds"])
    assert len(row["round_ratios"]) == local["rounds"] + 1
    assert len(dask["worker_peak_rss"]) == 2
    assert all(peak >= idle > 0 for peak, idle in zip(dask["worker_peak_rss"], dask["worker_idle_rss"]))
    assert dask["driver_peak_rss"] > 0 and local["peak_rss"] > 0 and dask["retries"] == 0
    out = capsys.readouterr().out
    assert "dask / local" in out and "peak memory" in out and "workers" in out
