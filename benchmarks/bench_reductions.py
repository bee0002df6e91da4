"""Benchmark of the MPC -> ANNA compiler: compiled model (LSH heads) vs the simulator, and vs the
same compiled model with dense softmax heads, as n grows.

Protocol: tree aggregation (sum, fan-out 1) at eps = 0.25, so the number of tokens (machines,
n**0.75) grows fast. For each n: the simulator (per-machine style, the one the compiled model
mirrors, and batch style), and the compiled model with exact-match, LSH (Algorithm 1, Theorem 3.4
parameters) and dense softmax heads; dense stops once a run takes more than --max-dense-seconds.
Every model output is checked against the simulator. Prints a table and writes JSON.

    python benchmarks/bench_reductions.py [--quick] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from anna.transformer import Head  # noqa: E402
from mpc_sim import Simulator  # noqa: E402
from mpc_sim.protocols import make_protocol  # noqa: E402
from reductions.claims import fit_loglog  # noqa: E402
from reductions.compile import compile_mpc  # noqa: E402


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


class _AttentionClock:
    """Accumulates the time spent inside attention (Head.attention) while active: the part of a
    compiled model's cost that dense heads make quadratic; the rest is token-wise work."""

    def __init__(self):
        self.seconds = 0.0
        self._original = Head.attention

    def __enter__(self):
        clock, original = self, self._original

        def timed(head, *args, **kwargs):
            start = time.perf_counter()
            try:
                return original(head, *args, **kwargs)
            finally:
                clock.seconds += time.perf_counter() - start

        Head.attention = timed
        return self

    def __exit__(self, *exc):
        Head.attention = self._original


def measure(exponents, eps: float, max_dense_seconds: float, console: Console) -> list[dict]:
    protocol = make_protocol("aggregate", op="sum")
    rows, dense_on = [], True
    for e in exponents:
        n = 2 ** e
        config = protocol.default_config(n, eps)
        data = protocol.generate_input(config, seed=0)
        sim, sim_seconds = _timed(lambda: Simulator(config, mode="machine").run(protocol, data))
        _, batch_seconds = _timed(lambda: Simulator(config, mode="batch").run(protocol, data))
        row = {"n": n, "tokens": config.machines, "s": config.s, "rounds": sim.trace.num_rounds,
               "simulator_seconds": sim_seconds, "simulator_batch_seconds": batch_seconds}
        kinds = ["ema", "anna"] + (["softmax"] if dense_on else [])
        for kind in kinds:
            model = compile_mpc(protocol, config, rounds=sim.trace.num_rounds, attention=kind)
            model(data)  # warm-up: numba compiles on first use
            with _AttentionClock() as clock:
                out, seconds = _timed(lambda: model(data))
            row[f"{kind}_attention_seconds"] = clock.seconds
            if not np.array_equal(out, sim.output):
                raise SystemExit(f"compiled model ({kind}) disagrees with the simulator at n = {n}")
            row[f"{kind}_seconds"] = seconds
            row["width"] = model.report.width
            if kind == "softmax" and seconds > max_dense_seconds:
                dense_on = False
        row["anna_over_simulator"] = row["anna_seconds"] / sim_seconds
        rows.append(row)
        console.print(f"n = 2^{e}: {config.machines} tokens, anna {row['anna_seconds']:.3f} s, "
                      f"dense {row.get('softmax_seconds', float('nan')):.3f} s")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--eps", type=float, default=0.25)
    parser.add_argument("--max-dense-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    console = Console()
    exponents = (6, 8, 10) if args.quick else (8, 10, 12, 14, 16)
    rows = measure(exponents, args.eps, args.max_dense_seconds, console)

    table = Table(title=f"compiled aggregate (eps = {args.eps}): model vs simulator vs dense softmax")
    for col in ("n", "tokens", "width", "sim s", "EMA s", "LSH s", "dense s", "LSH attn s", "dense attn s",
                "LSH/sim", "dense/LSH attn"):
        table.add_column(col, justify="right")
    for r in rows:
        dense = r.get("softmax_seconds")
        dense_attn = r.get("softmax_attention_seconds")
        table.add_row(str(r["n"]), str(r["tokens"]), str(r["width"]), f"{r['simulator_seconds']:.4f}",
                      f"{r['ema_seconds']:.3f}", f"{r['anna_seconds']:.3f}", "-" if dense is None else f"{dense:.3f}",
                      f"{r['anna_attention_seconds']:.3f}", "-" if dense_attn is None else f"{dense_attn:.3f}",
                      f"{r['anna_over_simulator']:.1f}x",
                      "-" if dense_attn is None else f"{dense_attn / r['anna_attention_seconds']:.2f}x")
    console.print(table)
    tokens = [r["tokens"] for r in rows]
    anna_fit = fit_loglog(tokens, [r["anna_seconds"] for r in rows])
    dense_rows = [r for r in rows if "softmax_seconds" in r]
    dense_fit = fit_loglog([r["tokens"] for r in dense_rows], [r["softmax_seconds"] for r in dense_rows]) \
        if len(dense_rows) >= 2 else None
    anna_attn_fit = fit_loglog(tokens, [r["anna_attention_seconds"] for r in rows])
    dense_attn_fit = fit_loglog([r["tokens"] for r in dense_rows], [r["softmax_attention_seconds"] for r in dense_rows]) \
        if len(dense_rows) >= 2 else None
    summary = {
        "protocol": "aggregate", "eps": args.eps, "rows": rows,
        "anna_time_exponent_vs_tokens": anna_fit.slope,
        "dense_time_exponent_vs_tokens": dense_fit.slope if dense_fit else None,
        "anna_attention_exponent_vs_tokens": anna_attn_fit.slope,
        "dense_attention_exponent_vs_tokens": dense_attn_fit.slope if dense_attn_fit else None,
        "anna_over_simulator_largest": rows[-1]["anna_over_simulator"],
    }
    if dense_fit:
        console.print(f"whole model: time ~ tokens^{anna_fit.slope:.2f} with LSH heads, ~ tokens^{dense_fit.slope:.2f} "
                      f"with dense softmax heads; attention alone: ~ tokens^{anna_attn_fit.slope:.2f} (LSH) vs "
                      f"~ tokens^{dense_attn_fit.slope:.2f} (dense)")
    console.print(f"LSH model / simulator at the largest n: {rows[-1]['anna_over_simulator']:.1f}x (target <= 20x)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
