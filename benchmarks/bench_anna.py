"""Time ANNA attention (Algorithm 1) against dense softmax attention and against a hardware floor.

    python benchmarks/bench_anna.py [--quick] [--json PATH] [--threads 2]

In one run, with m = d_v = 64, float32 inputs drawn i.i.d. N(0, 1), ell = 8 tables of z = 4
functions, for E2LSH (width 4) and the cross-polytope (3 pseudo-random rotations):

* ``anna_seconds``: best-of-r wall time of :func:`anna.attention.anna_attention` for N = 2**12 ..
  2**20 (queries = keys = N), and ``time_exponent``: the least-squares slope of log time against
  log N (also over the upper half of the range, ``time_exponent_upper``);
* ``dense_seconds``: dense softmax attention for the same N, stopping after the first size that
  takes more than 30 s -- torch's ``scaled_dot_product_attention`` on CPU when torch imports, else a
  chunked float32 numpy softmax (BLAS); run in a subprocess whose BLAS may use every thread, while
  this process keeps BLAS at one thread (numba's pool and BLAS's pool would otherwise compete);
  ``speedup_vs_dense_2_16``: dense / ANNA time at N = 2**16;
* ``floor_seconds_2_20``: what no implementation can beat at N = 2**20 on this machine,
  ``max(bytes / copy bandwidth, hash multiply-adds / matmul rate)``, with bytes = reading q, k, v and
  writing the output and counts once, copy bandwidth = the best of a numpy and a numba-parallel copy
  of a 512 MB array (bytes read + written per second), hash multiply-adds = ``2 N m z ell`` for
  E2LSH and ``2 N z ell rotations D log2 D`` additions for the cross-polytope's fast Hadamard
  transforms, matmul rate = multiply-adds per second of a 4096 x 4096 float32 matmul using every
  thread. ``floor_ratio_2_20`` = measured / floor. For context (not part of the floor),
  ``bucket_traffic_seconds``: Algorithm 1 moves one d_v-row per (row, table) into or out of
  bucket sums, ``2 N ell d_v`` float32 values; when the sums outgrow the caches (E2LSH on this
  data: ~20k buckets per table at 2**20) that traffic, at copy bandwidth, bounds the time too.

The machine may be shared: timings are the best of several repetitions and can still be noisy.
``--quick`` runs N = 2**9 .. 2**12 (floor and speed-up at the largest N) as a smoke test.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

_WORKER_FLAG = "--dense-worker"
if __name__ == "__main__" and _WORKER_FLAG not in sys.argv:
    # this process runs numba kernels only; keep BLAS from spinning threads beside them
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"

import numpy as np  # noqa: E402

M = 64
Z, ELL = 4, 8
DENSE_LIMIT_SECONDS = 30.0


# ------------------------------------------------------------------------ dense baseline
def numpy_softmax_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """softmax(q k^T) v in float32, a block of queries at a time (memory chunk x N)."""
    out = np.empty((q.shape[0], v.shape[1]), dtype=np.float32)
    kt = np.ascontiguousarray(k.T)
    for lo in range(0, q.shape[0], chunk):
        scores = q[lo: lo + chunk] @ kt
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        out[lo: lo + chunk] = (scores @ v) / scores.sum(axis=1, keepdims=True)
    return out


def _dense_worker(sizes: list[int], threads: int, matmul_n: int = 4096) -> dict:
    """Runs in a subprocess with BLAS on every thread: matmul rate, then dense attention times."""
    try:
        import torch

        torch.set_num_threads(threads)
        backend = f"torch {torch.__version__} scaled_dot_product_attention (CPU, {threads} threads)"
    except ImportError:
        torch = None
        backend = f"numpy {np.__version__} chunked float32 softmax (BLAS, {threads} threads)"
    a = np.random.default_rng(0).standard_normal((matmul_n, matmul_n), dtype=np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(3))
    matmul_rate = float(matmul_n) ** 3 / best
    dense = {}
    for n in sizes:
        rng = np.random.default_rng(n)
        q, k, v = (rng.standard_normal((n, M), dtype=np.float32) for _ in range(3))
        if torch is not None:
            tq, tk, tv = (torch.from_numpy(x)[None, None] for x in (q, k, v))
            run = lambda: torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, scale=1.0)  # noqa: E731
        else:
            run = lambda: numpy_softmax_attention(q, k, v)  # noqa: E731
        if n <= 2**13:
            run()  # warm-up; large sizes take long enough that one run is the measurement
        seconds = min(_timed(run) for _ in range(3 if n <= 2**13 else 1))
        dense[n] = seconds
        if seconds > DENSE_LIMIT_SECONDS:
            break
    return {"backend": backend, "matmul_multiply_adds_per_s": matmul_rate, "dense_seconds": dense}


def _run_dense_subprocess(sizes: list[int], threads: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    done = subprocess.run([sys.executable, os.path.abspath(__file__), _WORKER_FLAG, json.dumps(sizes), str(threads)],
                          env=env, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["dense_seconds"] = {int(n): s for n, s in result["dense_seconds"].items()}
    return result


# ------------------------------------------------------------------------------ helpers
def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def copy_bandwidth(n_bytes: int) -> float:
    """Best (bytes read + written) / s of a numpy copy and a numba parallel copy of ``n_bytes``."""
    from numba import njit, prange

    @njit(parallel=True, cache=False)
    def parallel_copy(src, dst):
        for i in prange(src.shape[0]):
            dst[i] = src[i]

    src = np.ones(n_bytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    parallel_copy(src, dst)
    best = min(min(_timed(lambda: np.copyto(dst, src)), _timed(lambda: parallel_copy(src, dst))) for _ in range(4))
    return 2.0 * src.nbytes / best


def fit_exponent(sizes: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log(seconds) against log(N) (needs two sizes)."""
    x, y = np.log(np.array(sizes, dtype=np.float64)), np.log(np.array(seconds, dtype=np.float64))
    if x.size < 2:
        raise ValueError("fitting an exponent needs at least two sizes")
    return float(np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2))


def hash_multiply_adds(family, n: int) -> float:
    """Projection work of hashing n queries and n keys (additions for the cross-polytope's FHT)."""
    from anna.lsh import CrossPolytope

    if isinstance(family, CrossPolytope):
        padded = 1 << (M - 1).bit_length()
        return 2.0 * n * Z * ELL * family.rotations * padded * math.log2(padded)
    return 2.0 * n * M * Z * ELL


def time_anna(family, n: int, repeats: int) -> tuple[float, float, float]:
    """Best-of-``repeats`` seconds, mean collisions per query, fraction of empty queries."""
    from anna.attention import anna_attention
    from anna.lsh import LSHConfig

    rng = np.random.default_rng(n)
    q, k, v = (rng.standard_normal((n, M), dtype=np.float32) for _ in range(3))
    lsh = LSHConfig(family, Z, ELL)
    _, counts = anna_attention(q, k, v, lsh, seed=0)
    best = min(_timed(lambda: anna_attention(q, k, v, lsh, seed=0)) for _ in range(repeats))
    return best, float(counts.mean()), float(np.mean(counts == 0))


# --------------------------------------------------------------------------------- main
def run(quick: bool = False, threads: int = 2, exponents: list[int] | None = None,
        dense_worker=None) -> dict:
    """All measurements as one JSON-able dict (``exponents`` overrides the sizes, for tests;
    ``dense_worker(sizes, threads)`` replaces the BLAS subprocess, for tests)."""
    import numba

    from anna.lsh import E2LSH, CrossPolytope

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if exponents is None:
        exponents = list(range(9, 13)) if quick else list(range(12, 21))
    sizes = [2**e for e in exponents]
    families = {"e2lsh": E2LSH(4.0), "cross_polytope": CrossPolytope()}
    top = sizes[-1]
    anna_seconds, collisions, empty = {}, {}, {}
    for name, family in families.items():
        time_anna(family, 2**10, 1)  # compile / load the kernel cache
        anna_seconds[name], collisions[name], empty[name] = {}, {}, {}
        for n in sizes:
            best, mean_count, empty_fraction = time_anna(family, n, 5 if n <= 2**16 else 3 if n < 2**20 else 5)
            anna_seconds[name][n], collisions[name][n], empty[name][n] = best, mean_count, empty_fraction
    bandwidth = copy_bandwidth(2**24 if quick else 2**29)
    dense_result = (dense_worker or _run_dense_subprocess)(sizes, threads)
    matmul_rate = dense_result["matmul_multiply_adds_per_s"]
    dense_seconds = dense_result["dense_seconds"]
    bytes_moved = 3 * top * M * 4 + top * M * 4 + top * 8
    floor = {name: max(bytes_moved / bandwidth, hash_multiply_adds(family, top) / matmul_rate)
             for name, family in families.items()}
    speed_n = 2**16 if 2**16 in sizes else top
    upper = sizes[min(len(sizes) // 2, len(sizes) - 2):]
    result = {
        "config": {"m": M, "d_v": M, "dtype": "float32", "z": Z, "ell": ELL, "threads": numba.get_num_threads(),
                   "families": {name: family.name for name, family in families.items()}, "quick": quick,
                   "data": "q, k, v i.i.d. N(0, 1)"},
        "anna_seconds": anna_seconds,
        "mean_collisions_per_query": collisions,
        "empty_query_fraction": empty,
        "time_exponent": {name: fit_exponent(sizes, [anna_seconds[name][n] for n in sizes]) for name in families},
        "time_exponent_upper": {name: fit_exponent(upper, [anna_seconds[name][n] for n in upper])
                                for name in families},
        "dense_backend": dense_result["backend"],
        "dense_seconds": dense_seconds,
        "speedup_n": speed_n,
        "speedup_vs_dense": {name: (dense_seconds[speed_n] / anna_seconds[name][speed_n]
                                    if speed_n in dense_seconds else None) for name in families},
        "copy_bandwidth_bytes_per_s": bandwidth,
        "matmul_multiply_adds_per_s": matmul_rate,
        "floor_n": top,
        "floor_bytes": bytes_moved,
        "floor_hash_multiply_adds": {name: hash_multiply_adds(family, top) for name, family in families.items()},
        "floor_seconds": floor,
        "floor_ratio": {name: anna_seconds[name][top] / floor[name] for name in families},
        # context, not the floor asked for: Algorithm 1 adds one d_v-row per (key, table) into bucket
        # sums and reads one per (query, table); when bucket sums outgrow the caches, that traffic
        # (float32 rows, read once each) is a bound the input/output floor does not see
        "bucket_traffic_bytes": 2 * top * ELL * M * 4,
        "bucket_traffic_seconds": 2 * top * ELL * M * 4 / bandwidth,
    }
    result["speedup_vs_dense_2_16"] = result["speedup_vs_dense"] if speed_n == 2**16 else None
    result["floor_seconds_2_20"] = floor if top == 2**20 else None
    result["floor_ratio_2_20"] = result["floor_ratio"] if top == 2**20 else None
    return result


def render(result: dict):
    from rich.console import Group
    from rich.table import Table

    names = list(result["anna_seconds"])
    sizes = sorted({n for name in names for n in result["anna_seconds"][name]})
    times = Table(title=f"ANNA vs dense softmax (m={M}, float32, z={Z}, ell={ELL}, "
                        f"{result['config']['threads']} threads)")
    times.add_column("N", justify="right")
    for name in names:
        times.add_column(f"{name} s", justify="right")
        times.add_column(f"{name} collisions/q", justify="right")
    times.add_column("dense s", justify="right")
    for name in names:
        times.add_column(f"dense / {name}", justify="right")
    for n in sizes:
        row = [f"2^{int(math.log2(n))}"]
        for name in names:
            row += [f"{result['anna_seconds'][name][n]:.4f}", f"{result['mean_collisions_per_query'][name][n]:.1f}"]
        dense = result["dense_seconds"].get(n)
        row.append("-" if dense is None else f"{dense:.3f}")
        for name in names:
            row.append("-" if dense is None else f"{dense / result['anna_seconds'][name][n]:.0f}x")
        times.add_row(*row)
    summary = Table(title=f"floor at N = 2^{int(math.log2(result['floor_n']))} and fitted exponents")
    summary.add_column("quantity")
    for name in names:
        summary.add_column(name, justify="right")
    summary.add_row("time exponent (all N)", *[f"{result['time_exponent'][n]:.3f}" for n in names])
    summary.add_row("time exponent (upper half)", *[f"{result['time_exponent_upper'][n]:.3f}" for n in names])
    summary.add_row(f"speed-up vs dense at 2^{int(math.log2(result['speedup_n']))}",
                    *["-" if result["speedup_vs_dense"][n] is None else f"{result['speedup_vs_dense'][n]:.0f}x"
                      for n in names])
    summary.add_row("measured s", *[f"{result['anna_seconds'][n][result['floor_n']]:.4f}" for n in names])
    summary.add_row("floor s", *[f"{result['floor_seconds'][n]:.4f}" for n in names])
    summary.add_row("measured / floor", *[f"{result['floor_ratio'][n]:.2f}" for n in names])
    byte_floor = result["floor_bytes"] / result["copy_bandwidth_bytes_per_s"]
    summary.add_row("  bytes / copy bandwidth s", *[f"{byte_floor:.4f}" for _ in names])
    summary.add_row("  hash multiply-adds / matmul rate s",
                    *[f"{result['floor_hash_multiply_adds'][n] / result['matmul_multiply_adds_per_s']:.4f}"
                      for n in names])
    summary.add_row("(context) bucket-row traffic / copy bandwidth s",
                    *[f"{result['bucket_traffic_seconds']:.4f}" for _ in names])
    notes = Table.grid()
    notes.add_row(f"dense: {result['dense_backend']}")
    notes.add_row(f"copy bandwidth {result['copy_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s (read + write), "
                  f"matmul {result['matmul_multiply_adds_per_s'] / 1e9:.1f} G multiply-adds/s")
    return Group(times, summary, notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N only (smoke test)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--threads", type=int, default=2, help="threads for numba and for the dense baseline")
    args = parser.parse_args(argv)
    from rich.console import Console

    result = run(quick=args.quick, threads=args.threads)
    Console().print(render(result))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == _WORKER_FLAG:
        print(json.dumps(_dense_worker(json.loads(sys.argv[2]), int(sys.argv[3]))))
    else:
        sys.exit(main())
