"""benchmarks/bench_rounds.py runs end to end at its --quick sizes and records measured rounds."""
import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_rounds.py"


def test_quick_round_benchmark_records_rounds_within_their_bounds(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_rounds", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    path = tmp_path / "rounds.json"
    assert bench.main(["--quick", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    rows = data["connectivity"]["rows"]
    assert [row["log2_n"] for row in rows] == list(bench.QUICK["connectivity_logs"])
    assert all(0 < row["rounds"] <= row["rounds_bound"] for row in rows)
    assert all(row["rounds"] == row["start"] + row["phases"] * row["phase_length"] for row in rows)
    assert data["connectivity"]["fit"]["rounds_per_doubling"] > 0
    khop = data["khop"]["rows"]
    assert all(row["rounds"] == row["rounds_bound"] for row in khop)          # khop's count is exact
    by_k = {row["k"]: row["rounds"] for row in khop}
    assert by_k[64] - by_k[1] == 2 * 6                                        # 6 more doubling steps
    out = capsys.readouterr().out
    assert "[popcount(k') > 1]" in out and "fit: rounds" in out
