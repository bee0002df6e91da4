"""Benchmark of the Dask backend: sample sort on the local backend and on a LocalCluster of 2 workers.

One run per input size (10^7 words; also 10^8 with ``--large``; 10^5 with ``--quick``), each in a
fresh subprocess so its peak memory is its own:

* ``local``: ``Simulator(config)``, the default batch style (numba kernels over the whole cluster);
* ``local, per machine``: the per-machine style in this process, sizes up to 10^7 only
  (``--machine-large`` adds 10^8): it separates the cost of the style from the cost of distribution;
* ``dask``: ``Simulator(config, backend="dask")`` on a fresh ``LocalCluster`` of 2 worker
  processes with 1 thread each, machines cut into ``--blocks`` blocks (default 8, spread
  round-robin over the workers). The workers run SampleSort's block-local batch step (its numba
  kernels on each block);
* ``dask, per machine``: the same cluster running the per-machine step on every machine (what the
  workers ran before SampleSort's batch step was block-local), at the per-machine sizes.

All use ``SampleSort().default_config(n, 0.5)`` and the same seeded input; outputs and trace counts
are checked identical across runs (by digest). Time per round is the trace's wall time of each
round (the dask round includes scheduling, the all-to-all between workers and the driver's
reduction of the reports); the ratio is dask / local per round and in total. Kernels are compiled
and the cluster warmed up by a small run first.

Peak memory: ``ru_maxrss`` (peak resident set) of each process over its life: the local run's
process; the dask driver (which generates the input, scatters it and gathers the output); each
worker process (read with ``client.run`` at the end, so it includes the worker's idle footprint,
reported separately as ``idle_rss``). Divided by the input's bytes where the table says so.

Usage: ``python benchmarks/bench_dask.py [--quick] [--large] [--blocks B] [--json PATH]``. Timings
on a shared machine are noisy (load averages are printed and stored).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

EPS = 0.5
SEED = 0
WARMUP_N = 20_000


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _digest(array: np.ndarray) -> str:
    return hashlib.blake2b(memoryview(np.ascontiguousarray(array)).cast("B"), digest_size=16).hexdigest()


def _summary(result, seconds: float, data: np.ndarray) -> dict:
    trace = result.trace
    return {
        "seconds": seconds, "rounds": trace.num_rounds, "rounds_bound": trace.rounds_bound,
        "round_seconds": [r.wall_time for r in trace.rounds] + [trace.output.wall_time],
        "counts": json.loads(json.dumps(trace.counts(), default=str)),
        "output_digest": _digest(result.output), "sorted": bool(np.all(result.output[1:] >= result.output[:-1])),
        "problems": trace.check(), "retries": len(trace.retries), "input_bytes": int(data.nbytes),
        "s": trace.config.s, "machines": trace.config.machines,
    }


# --- children: one run each, in a fresh process ---------------------------------------------------------
def child_local(n: int, mode: str) -> dict:
    from mpc_sim import Simulator
    from mpc_sim.protocols.sample_sort import SampleSort
    protocol = SampleSort()
    small = protocol.default_config(WARMUP_N, EPS)
    Simulator(small, mode=mode).run(protocol, protocol.generate_input(small, SEED))
    config = protocol.default_config(n, EPS)
    data = protocol.generate_input(config, SEED)
    start = time.perf_counter()
    result = Simulator(config, mode=mode).run(protocol, data, seed=SEED)
    seconds = time.perf_counter() - start
    return {**_summary(result, seconds, data), "peak_rss": _peak_rss()}


def child_dask(n: int, workers: int, blocks: int, mode: str = "auto") -> dict:
    import logging

    import psutil
    from distributed import Client, LocalCluster

    from mpc_sim import Simulator
    from mpc_sim.backends.dask import DaskOptions
    from mpc_sim.protocols.sample_sort import SampleSort
    protocol = SampleSort()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=logging.ERROR)
    client = Client(cluster, set_as_default=False)
    try:
        options = DaskOptions(blocks=blocks, client=client)
        small = protocol.default_config(WARMUP_N, EPS)
        Simulator(small, backend="dask", dask=options, mode=mode).run(
            protocol, protocol.generate_input(small, SEED))
        idle = client.run(lambda: psutil.Process().memory_info().rss)
        config = protocol.default_config(n, EPS)
        data = protocol.generate_input(config, SEED)
        start = time.perf_counter()
        result = Simulator(config, backend="dask", dask=options, mode=mode).run(protocol, data, seed=SEED)
        seconds = time.perf_counter() - start
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    finally:
        client.close()
        cluster.close()
    return {**_summary(result, seconds, data), "driver_peak_rss": _peak_rss(),
            "worker_peak_rss": sorted(peaks.values()), "worker_idle_rss": sorted(idle.values()),
            "workers": workers, "blocks": blocks, "mode": mode}


def _run_child(args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()
        return {"error": f"{' '.join(args)} failed: {lines[-1]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the report -------------------------------------------------------------------------------------------
def measure(n: int, workers: int, blocks: int, machine_style: bool) -> dict:
    row = {"n": n, "local": _run_child(["local", str(n), "batch"])}
    if machine_style:
        row["local_machine"] = _run_child(["local", str(n), "machine"])
    row["dask"] = _run_child(["dask", str(n), str(workers), str(blocks), "auto"])
    if machine_style:
        row["dask_machine"] = _run_child(["dask", str(n), str(workers), str(blocks), "machine"])
    runs = [row[k] for k in ("local", "local_machine", "dask", "dask_machine") if k in row]
    errors = [r["error"] for r in runs if "error" in r]
    if not errors:
        reference = row["local"]
        for key in ("local_machine", "dask", "dask_machine"):
            run = row.get(key)
            if run is not None and (run["output_digest"] != reference["output_digest"] or run["counts"] != reference["counts"]):
                errors.append(f"{key}: output or trace counts differ from the local run")
        if not all(r["sorted"] and not r["problems"] for r in runs):
            errors.append("an output is not sorted or a trace has problems")
    row["errors"] = errors
    if not errors:
        local, dask = row["local"], row["dask"]
        row["ratio"] = dask["seconds"] / local["seconds"]
        row["round_ratios"] = [d / max(lo, 1e-9) for d, lo in zip(dask["round_seconds"], local["round_seconds"])]
        if "local_machine" in row:
            row["ratio_vs_machine_style"] = dask["seconds"] / row["local_machine"]["seconds"]
        if "dask_machine" in row:
            row["ratio_dask_machine"] = row["dask_machine"]["seconds"] / local["seconds"]
    return row


def run(sizes: list[int], workers: int, blocks: int, machine_sizes: set[int]) -> dict:
    load_before = os.getloadavg()[0]
    rows = [measure(n, workers, blocks, n in machine_sizes) for n in sizes]
    return {"cpus": os.cpu_count(), "load_average": [load_before, os.getloadavg()[0]], "eps": EPS,
            "workers": workers, "blocks": blocks, "rows": rows,
            "errors": [e for row in rows for e in row["errors"]]}


def _gb(x: float) -> str:
    return f"{x / 2**30:.2f} GB"


def render(result: dict, console: Console) -> None:
    for row in result["rows"]:
        if row["errors"]:
            console.print(f"[bold red]n = {row['n']:.0e}: FAILED[/] " + "; ".join(row["errors"]))
            continue
        local, dask = row["local"], row["dask"]
        machine, dask_machine = row.get("local_machine"), row.get("dask_machine")
        table = Table(title=f"SampleSort of n = {row['n']:.0e} words, eps = {result['eps']}, s = {local['s']}, "
                            f"{local['machines']} machines, {local['rounds']} rounds; dask: {dask['workers']} "
                            f"worker processes, {dask['blocks']} blocks")
        for col in ("round", "local (batch) s", *(["local (per machine) s"] if machine else []), "dask s",
                    "dask / local", *(["dask (per machine) s", "÷ local"] if dask_machine else [])):
            table.add_column(col, justify="right")
        for i, (lo, da) in enumerate(zip(local["round_seconds"], dask["round_seconds"])):
            name = str(i + 1) if i < local["rounds"] else "output"
            dm = dask_machine["round_seconds"][i] if dask_machine else None
            table.add_row(name, f"{lo:.3f}", *([f"{machine['round_seconds'][i]:.3f}"] if machine else []),
                          f"{da:.3f}", f"{da / max(lo, 1e-9):.1f}x",
                          *([f"{dm:.3f}", f"{dm / max(lo, 1e-9):.1f}x"] if dask_machine else []))
        table.add_row("[bold]total[/]", f"{local['seconds']:.2f}", *([f"{machine['seconds']:.2f}"] if machine else []),
                      f"{dask['seconds']:.2f}", f"[bold]{row['ratio']:.1f}x[/]",
                      *([f"{dask_machine['seconds']:.2f}", f"{row['ratio_dask_machine']:.1f}x"] if dask_machine else []))
        console.print(table)
        size = local["input_bytes"]
        console.print(f"  peak memory (ru_maxrss): local process {_gb(local['peak_rss'])} "
                      f"({local['peak_rss'] / size:.1f}x the input)"
                      + (f", local per-machine process {_gb(machine['peak_rss'])}" if machine else "")
                      + f"; dask driver {_gb(dask['driver_peak_rss'])}, workers "
                      + ", ".join(_gb(p) for p in dask["worker_peak_rss"])
                      + f" (idle {', '.join(_gb(p) for p in dask['worker_idle_rss'])}); input {_gb(size)}")
    console.print(f"{result['cpus']} CPUs, load average {result['load_average'][0]:.1f} before / "
                  f"{result['load_average'][1]:.1f} after: shared machine, timings noisy.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one small size (seconds), for smoke tests")
    parser.add_argument("--large", action="store_true", help="also 10^8 words")
    parser.add_argument("--machine-large", action="store_true", help="also time the per-machine style at 10^8")
    parser.add_argument("--workers", type=int, default=2, help="dask worker processes (default 2)")
    parser.add_argument("--blocks", type=int, default=8, help="blocks the machines are cut into (default 8)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        row = (child_local(int(rest[0]), rest[1]) if kind == "local"
               else child_dask(int(rest[0]), int(rest[1]), int(rest[2]), rest[3]))
        print(json.dumps(row))
        return 0
    sizes = [10**5] if args.quick else [10**7] + ([10**8] if args.large else [])
    machine_sizes = {n for n in sizes if n <= 10**7 or args.machine_large}
    result = run(sizes, args.workers, args.blocks, machine_sizes)
    render(result, Console(width=max(Console().width, 140)))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
