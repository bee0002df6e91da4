"""benchmarks/bench_anna.py runs end to end on tiny sizes (imported, the BLAS worker in-process)."""
from __future__ import annotations

import io
import json
import math

from rich.console import Console

from tests.anna.benchloader import load_benchmark


def load_bench():
    return load_benchmark("bench_anna")


def test_benchmark_reports_every_required_quantity_on_tiny_sizes():
    bench = load_bench()
    result = bench.run(threads=1, exponents=[8, 9],
                       dense_worker=lambda sizes, threads: bench._dense_worker(sizes, threads, matmul_n=256))
    for key in ("anna_seconds", "time_exponent", "dense_seconds", "speedup_vs_dense_2_16", "floor_seconds_2_20",
                "floor_ratio_2_20", "copy_bandwidth_bytes_per_s"):
        assert key in result
    assert set(result["anna_seconds"]) == {"e2lsh", "cross_polytope"}
    assert all(s > 0 for family in result["anna_seconds"].values() for s in family.values())
    assert all(math.isfinite(e) for e in result["time_exponent"].values())
    assert set(result["dense_seconds"]) == {256, 512}
    assert result["floor_n"] == 512 and result["floor_seconds_2_20"] is None
    # the floor is a lower bound: nothing measured may beat it
    assert all(ratio >= 1.0 for ratio in result["floor_ratio"].values())
    assert result["copy_bandwidth_bytes_per_s"] > 1e8
    json.dumps(result, default=str)
    text = io.StringIO()
    Console(file=text, width=160).print(bench.render(result))
    assert "measured / floor" in text.getvalue()


def test_numpy_softmax_baseline_is_softmax_attention():
    import numpy as np

    bench = load_bench()
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((70, 8), dtype=np.float32) for _ in range(3))
    scores = q.astype(np.float64) @ k.T.astype(np.float64)
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    expected = (weights / weights.sum(axis=1, keepdims=True)) @ v
    np.testing.assert_allclose(bench.numpy_softmax_attention(q, k, v, chunk=16), expected, rtol=1e-4, atol=1e-5)
