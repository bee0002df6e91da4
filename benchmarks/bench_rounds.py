"""Measured rounds of the multi-round graph protocols against their stated formulas.

Rows:

* connectivity at eps = 0.5 on generated inputs (``n / 2`` uniform random edges over ``V = n / 2``
  vertices), ``n = 2^10 .. 2^20``: measured rounds and phases (strict per-machine runs, output
  checked against :func:`~mpc_sim.protocols.connectivity.components_reference`), the phase length
  ``L``, the w.h.p. bound ``rounds_bound`` and a least-squares fit ``rounds = a + b log2 n``.
* khop at eps = 0.5, ``k = 1 .. 64`` at two input sizes: measured rounds (batch runs, output
  checked against the reference), ``rounds_bound`` (exact for khop) and its formula.

Usage: ``python benchmarks/bench_rounds.py [--quick] [--only connectivity|khop] [--json PATH]``
(default JSON: ``benchmarks/results/bench_rounds.json``). Rounds do not depend on the machine;
the wall times in the JSON do (and are noisy on a shared machine).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from mpc_sim import Simulator
from mpc_sim.protocols.connectivity import Connectivity, components_reference
from mpc_sim.protocols.khop import KHop, hop_k_reference

FULL = {"connectivity_logs": tuple(range(10, 21)), "khop_ks": tuple(range(1, 65)), "khop_ns": (1000, 2**14)}
QUICK = {"connectivity_logs": (10, 12, 14), "khop_ks": (1, 2, 3, 4, 8, 16, 32, 64), "khop_ns": (1000,)}
EPS = 0.5
RESULTS = Path(__file__).resolve().parent / "results"


def connectivity_row(log_n: int, seed: int = 0) -> dict:
    n = 2**log_n
    protocol = Connectivity()
    config = protocol.default_config(n, EPS)
    data = protocol.generate_input(config, seed=seed)
    start = time.perf_counter()
    run = Simulator(config, mode="machine").run(protocol, data, seed=seed)
    wall = time.perf_counter() - start
    if not np.array_equal(run.output, components_reference(data, n // 2)):
        raise AssertionError(f"connectivity: wrong labels at n = 2^{log_n}")
    if run.trace.check():
        raise AssertionError(f"connectivity: trace check failed at n = 2^{log_n}: {run.trace.check()}")
    rounds = run.trace.num_rounds
    start_round, length = protocol.start_round(config), protocol.phase_length(config)
    return {"n": n, "log2_n": log_n, "s": config.s, "machines": config.machines,
            "memory_factor": config.memory_factor, "machines_factor": config.machines_factor,
            "rounds": rounds, "phases": (rounds - start_round) // length, "start": start_round,
            "phase_length": length, "phase_budget": protocol.phase_budget(config),
            "rounds_bound": protocol.rounds_bound(config), "formula": protocol.rounds_formula(config),
            "wall_s": wall}


def khop_row(n: int, k: int, seed: int = 0) -> dict:
    protocol = KHop(k=k)
    config = protocol.default_config(n, EPS)
    data = protocol.generate_input(config, seed=seed)
    run = Simulator(config).run(protocol, data, seed=seed)
    if not np.array_equal(run.output, hop_k_reference(data, k)):
        raise AssertionError(f"khop: wrong output at n = {n}, k = {k}")
    return {"n": n, "k": k, "s": config.s, "rounds": run.trace.num_rounds,
            "rounds_bound": protocol.rounds_bound(config), "formula": protocol.rounds_formula(config)}


def fit(rows: list[dict]) -> dict:
    logs = np.array([row["log2_n"] for row in rows], dtype=float)
    rounds = np.array([row["rounds"] for row in rows], dtype=float)
    if logs.size < 2:
        return {}
    slope, intercept = np.polyfit(logs, rounds, 1)
    residual = rounds - (intercept + slope * logs)
    r2 = 1 - residual.var() / rounds.var() if rounds.var() > 0 else 1.0
    return {"rounds_per_doubling": float(slope), "intercept": float(intercept), "r2": float(r2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--only", choices=("connectivity", "khop"), default=None)
    parser.add_argument("--json", type=Path, default=RESULTS / "bench_rounds.json", help="write the results here")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    console = Console()
    result: dict = {"eps": EPS, "quick": args.quick}
    if args.only in (None, "connectivity"):
        table = Table(title=f"connectivity at eps = {EPS} (generated inputs, V = n / 2)")
        for column in ("n", "s", "machines", "rounds", "phases", "L", "t_max", "rounds_bound", "wall s"):
            table.add_column(column, justify="right")
        rows = []
        for log_n in sizes["connectivity_logs"]:
            row = connectivity_row(log_n)
            rows.append(row)
            table.add_row(f"2^{log_n}", str(row["s"]), str(row["machines"]), str(row["rounds"]), str(row["phases"]),
                          str(row["phase_length"]), str(row["phase_budget"]), str(row["rounds_bound"]),
                          f"{row['wall_s']:.1f}")
            console.print(f"connectivity n = 2^{log_n}: {row['rounds']} rounds ({row['wall_s']:.1f} s)")
        console.print(table)
        result["connectivity"] = {"rows": rows, "fit": fit(rows)}
        if len(rows) > 1:
            f = result["connectivity"]["fit"]
            console.print(f"fit: rounds = {f['intercept']:.1f} + {f['rounds_per_doubling']:.2f} log2 n "
                          f"(R^2 = {f['r2']:.3f}); bound formula: {rows[-1]['formula']}", markup=False)
    if args.only in (None, "khop"):
        rows = [khop_row(n, k) for n in sizes["khop_ns"] for k in sizes["khop_ks"]]
        table = Table(title=f"khop at eps = {EPS}: measured rounds (= rounds_bound) per k")
        table.add_column("k", justify="right")
        for n in sizes["khop_ns"]:
            table.add_column(f"n = {n}", justify="right")
        for k in sizes["khop_ks"]:
            table.add_row(str(k), *[str(next(r["rounds"] for r in rows if r["n"] == n and r["k"] == k))
                                    for n in sizes["khop_ns"]])
        console.print(table)
        for n in sizes["khop_ns"]:
            last = max(sizes["khop_ks"])
            console.print(f"khop n = {n}, k = {last}: "
                          f"{next(r['formula'] for r in rows if r['n'] == n and r['k'] == last)}", markup=False)
        result["khop"] = {"rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
