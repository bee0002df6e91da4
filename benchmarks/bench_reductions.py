"""Benchmark of the MPC -> ANNA compiler: compiled models against the simulator at n = 2^10..2^14.

For every protocol of the target list (aggregate, prefix-sum, sort, khop with k = 8, match2,
connectivity) and every n, one fresh process: generate the input, run the simulator (per-machine
style, the one the compiled model mirrors, and batch style), compile the model with the
simulator's round count (as ``anna-mpc compile`` does), run it on the lean engine and check its
output equals the simulator's word for word. Recorded per case: seconds of each step, the peak
memory of the process up to the end of the lean run (``ru_maxrss``: interpreter, numba and
libraries included) and of the compile + run alone (tracemalloc), the estimate the compiler
made before building, and the ratios compiled run / simulator (wall clock, and process CPU time, which other jobs disturb
less). Up to ``--dense-max-n`` the same model also runs on the dense
engine (the transformer's own forward pass), unless its estimate refuses or exceeds
``--dense-max-seconds``: the table says which. Each process first runs the same protocol at n = 256 (numba
kernels load from their on-disk cache on first use), so the timings are steady-state. One run
per case: on a shared machine the timings are noisy.

    python benchmarks/bench_reductions.py [--quick] [--exponents 10 12 14] [--json PATH]

Targets (issue 11): at n = 2^14, compile + run under 60 s and 4 GB peak, exact output, and the
compiled run within 20x of the simulator. Exit status 1 when an output differs.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

PROTOCOLS = (("aggregate", {"op": "sum"}), ("prefix-sum", {}), ("sort", {}), ("khop", {"k": 8}), ("match2", {}),
             ("connectivity", {}))
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bench_reductions.json"
TARGET_SECONDS, TARGET_BYTES, TARGET_RATIO = 60.0, 4 << 30, 20.0


def _dense(model, data, expected, wanted: bool, max_seconds: float) -> dict:
    """The same model on the dense engine (``Transformer.run``), where the estimate allows it."""
    import numpy as np

    from reductions.compile import ModelTooLarge

    if not wanted:
        return {"dense": "not run (n above --dense-max-n)"}
    if model.report.estimated_dense_seconds > max_seconds:
        return {"dense": f"not run (estimated {model.report.estimated_dense_seconds:.0f} s > {max_seconds:.0f} s)"}
    try:
        start = time.perf_counter()
        out = model.run(data, engine="dense", record=False).output
        seconds = time.perf_counter() - start
    except ModelTooLarge as exc:
        return {"dense": f"refused: {exc}"}
    same = bool(np.array_equal(np.asarray(out).view(np.int64), np.asarray(expected).view(np.int64)))
    return {"dense": "ran", "dense_seconds": seconds, "dense_exact": same}


def _case(name: str, params: dict, n: int, eps: float, attention: str, dense_max_n: int, dense_max_seconds: float,
          queue) -> None:
    """One case in a fresh process (its ru_maxrss is this case's peak)."""
    import resource
    import tracemalloc

    import numpy as np

    from mpc_sim import Simulator
    from mpc_sim.protocols import make_protocol
    from reductions.compile import compile_mpc

    try:
        protocol = make_protocol(name, **params)
        # warm-up on a small instance: numba kernels load from their cache on first use in a process
        small = protocol.default_config(256, eps)
        small_data = protocol.generate_input(small, seed=1)
        warm = Simulator(small, mode="machine").run(protocol, small_data)
        if protocol.has_batch_step():
            Simulator(small, mode="batch").run(protocol, small_data)
        compile_mpc(protocol, small, rounds=warm.trace.num_rounds, attention=attention).run(small_data)
        config = protocol.default_config(n, eps)
        data = protocol.generate_input(config, seed=0)
        start, cpu = time.perf_counter(), time.process_time()
        sim = Simulator(config, mode="machine").run(protocol, data)
        sim_seconds, sim_cpu = time.perf_counter() - start, time.process_time() - cpu
        batch_seconds = None
        if protocol.has_batch_step():
            start = time.perf_counter()
            Simulator(config, mode="batch").run(protocol, data)
            batch_seconds = time.perf_counter() - start
        tracemalloc.start()
        start, cpu = time.perf_counter(), time.process_time()
        model = compile_mpc(protocol, config, rounds=sim.trace.num_rounds, attention=attention)
        compile_seconds, compile_cpu = time.perf_counter() - start, time.process_time() - cpu
        start, cpu = time.perf_counter(), time.process_time()
        run = model.run(data)
        run_seconds, run_cpu = time.perf_counter() - start, time.process_time() - cpu
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        exact = bool(np.array_equal(np.asarray(run.output).view(np.int64), np.asarray(sim.output).view(np.int64)))
        report = model.report
        lean_peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
        dense = _dense(model, data, sim.output, n <= dense_max_n, dense_max_seconds)
        queue.put({
            "protocol": name, "params": params, "n": n, "eps": eps, "attention": attention, "exact": exact,
            "machines": config.machines, "s": config.s, "rounds": sim.trace.num_rounds, "depth": report.depth,
            "heads_per_layer": report.heads_per_layer, "m": report.m, "width": report.width,
            "model_dim": report.model_dim, "lsh": report.lsh,
            "simulator_seconds": sim_seconds, "simulator_batch_seconds": batch_seconds,
            "compile_seconds": compile_seconds, "run_seconds": run_seconds,
            "compile_and_run_seconds": compile_seconds + run_seconds,
            "simulator_cpu_seconds": sim_cpu, "compile_cpu_seconds": compile_cpu, "run_cpu_seconds": run_cpu,
            "run_over_simulator_cpu": run_cpu / sim_cpu if sim_cpu > 0 else None,
            "run_over_simulator": run_seconds / sim_seconds,
            "run_over_batch_simulator": None if not batch_seconds else run_seconds / batch_seconds,
            "traced_peak_bytes": int(traced_peak),
            "process_peak_bytes": lean_peak,
            "process_peak_with_dense_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024,
            "estimated_bytes": report.estimated_bytes, "estimated_seconds": report.estimated_seconds,
            "estimated_dense_bytes": report.estimated_dense_bytes,
            "estimated_dense_seconds": report.estimated_dense_seconds, **dense,
        })
    except Exception as exc:  # reported in the table, never hidden
        queue.put({"protocol": name, "params": params, "n": n, "eps": eps, "attention": attention,
                   "error": f"{type(exc).__name__}: {exc}"})


def run_case(name: str, params: dict, n: int, eps: float, attention: str, timeout: float, dense_max_n: int = 0,
             dense_max_seconds: float = 60.0) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_case, args=(name, params, n, eps, attention, dense_max_n, dense_max_seconds, queue))
    process.start()
    try:
        row = queue.get(timeout=timeout)
    except Exception:
        row = {"protocol": name, "params": params, "n": n, "eps": eps, "attention": attention,
               "error": f"no result within {timeout:.0f} s"}
    process.join(timeout=10)
    if process.is_alive():
        process.kill()
    return row


def _table(rows: list[dict], eps: float) -> Table:
    table = Table(title=f"compiled models (lean engine) vs the simulator, eps = {eps} (one run each; shared machine)")
    for col in ("protocol", "n", "tokens", "R", "width", "sim s", "batch s", "compile s", "run s", "run/sim",
                "run/batch", "peak (proc)", "peak (traced)", "estimate", "exact"):
        table.add_column(col, justify="right")
    for r in rows:
        if "error" in r:
            table.add_row(r["protocol"], str(r["n"]), *["-"] * 12, f"[red]{r['error']}[/]")
            continue
        batch = r["simulator_batch_seconds"]
        table.add_row(r["protocol"], str(r["n"]), str(r["machines"]), str(r["rounds"]), str(r["width"]),
                      f"{r['simulator_seconds']:.2f}", "-" if batch is None else f"{batch:.2f}",
                      f"{r['compile_seconds']:.2f}", f"{r['run_seconds']:.2f}", f"{r['run_over_simulator']:.1f}x",
                      "-" if r["run_over_batch_simulator"] is None else f"{r['run_over_batch_simulator']:.1f}x",
                      f"{r['process_peak_bytes'] / 1e9:.2f} GB", f"{r['traced_peak_bytes'] / 1e6:.0f} MB",
                      f"{r['estimated_bytes'] / 1e6:.0f} MB", "[green]yes[/]" if r["exact"] else "[red]NO[/]")
    return table


def targets(rows: list[dict], n: int) -> dict:
    """Which targets the runs at ``n`` meet."""
    at = [r for r in rows if r["n"] == n]
    ok = [r for r in at if "error" not in r]
    return {
        "n": n, "cases": len(at), "completed": len(ok),
        "all_exact": bool(ok) and len(ok) == len(at) and all(r["exact"] for r in ok),
        "max_compile_and_run_seconds": max((r["compile_and_run_seconds"] for r in ok), default=None),
        "max_process_peak_bytes": max((r["process_peak_bytes"] for r in ok), default=None),
        "max_run_over_simulator": max((r["run_over_simulator"] for r in ok), default=None),
        "max_run_over_batch_simulator": max((r["run_over_batch_simulator"] for r in ok
                                             if r["run_over_batch_simulator"] is not None), default=None),
        "under_60_s": all(r["compile_and_run_seconds"] < TARGET_SECONDS for r in ok) and len(ok) == len(at),
        "under_4_GB": all(r["process_peak_bytes"] < TARGET_BYTES for r in ok) and len(ok) == len(at),
        "within_20x_of_simulator": all(r["run_over_simulator"] <= TARGET_RATIO for r in ok) and len(ok) == len(at),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 2^8 and 2^10 only (a smoke run)")
    parser.add_argument("--exponents", type=int, nargs="+", default=None, help="log2 n values (default 10 12 14)")
    parser.add_argument("--protocols", nargs="+", default=None, help="subset of the target protocols")
    parser.add_argument("--eps", type=float, default=0.5)
    parser.add_argument("--attention", choices=("ema", "anna"), default="ema")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per case")
    parser.add_argument("--dense-max-n", type=int, default=1024,
                        help="also run the dense engine (Transformer.run) up to this n, where its estimate allows")
    parser.add_argument("--dense-max-seconds", type=float, default=60.0,
                        help="skip the dense engine when its estimated time exceeds this")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"output (default {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    console = Console(width=max(160, Console().width))
    exponents = args.exponents or ((8, 10) if args.quick else (10, 12, 14))
    chosen = [(name, params) for name, params in PROTOCOLS if args.protocols is None or name in args.protocols]
    rows = []
    for e in exponents:
        for name, params in chosen:
            row = run_case(name, params, 2 ** e, args.eps, args.attention, args.timeout, args.dense_max_n,
                           args.dense_max_seconds)
            rows.append(row)
            summary = row.get("error") or (f"compile + run {row['compile_and_run_seconds']:.2f} s, "
                                           f"run/sim {row['run_over_simulator']:.1f}x, exact {row['exact']}; dense "
                                           + (f"engine {row['dense_seconds']:.2f} s, exact {row['dense_exact']}"
                                              if row.get("dense") == "ran" else row.get("dense", "")))
            console.print(f"{name} n = 2^{e}: {summary}")
    console.print(_table(rows, args.eps))
    verdicts = [targets(rows, 2 ** e) for e in exponents]
    for v in verdicts:
        console.print(f"n = {v['n']}: exact {v['all_exact']}, max compile+run {v['max_compile_and_run_seconds']} s, "
                      f"max peak {v['max_process_peak_bytes']} B, max run/sim {v['max_run_over_simulator']}, "
                      f"max run/batch-sim {v['max_run_over_batch_simulator']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "benchmark": "bench_reductions", "eps": args.eps, "attention": args.attention,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "note": "one run per case on a machine shared with other jobs: timings are noisy",
        "targets": {"seconds": TARGET_SECONDS, "bytes": TARGET_BYTES, "ratio": TARGET_RATIO},
        "verdicts": verdicts, "rows": rows}, indent=1))
    console.print(f"wrote {args.json}")
    return 0 if all(r.get("exact", False) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
