"""benchmarks/bench_gpu.py: its arguments, and its CPU smoke run (checks + the torch baseline)."""
from __future__ import annotations

import importlib.util
import json

import pytest

pytest.importorskip("torch", reason="bench_gpu.py times torch code")

from tests.anna.benchloader import load_benchmark  # noqa: E402


def load_bench():
    return load_benchmark("bench_gpu")


def test_arguments_default_to_the_full_run_and_quick_shrinks_it():
    bench = load_bench()
    full = bench.parse_args([])
    assert (full.min_exp, full.max_exp, full.device) == (12, 24, "cuda")
    assert full.budget < 420 and full.figure == full.out.with_suffix(".png")
    quick = bench.parse_args(["--quick", "--out", "x/y.json"])
    assert quick.max_exp == 16 and quick.budget < full.budget and str(quick.figure) == "x/y.png"


@pytest.mark.parametrize("argv", [["--min-exp", "20", "--max-exp", "12"], ["--budget", "0"], ["--max-exp", "40"]])
def test_bad_arguments_are_refused(argv):
    with pytest.raises(SystemExit):
        load_bench().parse_args(argv)


def test_floor_counts_reading_inputs_and_writing_outputs_once():
    bench = load_bench()
    assert bench.floor_bytes(2, 2, 4) == 2 * (2 * 64 + 64) * 2 + 2 * 64 * 4 + 16


def test_cpu_smoke_run_checks_then_times_the_torch_baseline(tmp_path):
    bench = load_bench()
    out = tmp_path / "bench.json"
    assert bench.main(["--device", "cpu", "--quick", "--max-exp", "12", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["checks"] and all(check["passed"] for check in result["checks"])
    point = result["timings"]["torch_algorithm1_fp32"]["4096"]
    assert point["seconds"] > 0 and point["floor_ratio"] >= 1.0
    assert (tmp_path / "bench.png").exists() or importlib.util.find_spec("matplotlib") is None
