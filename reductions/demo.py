"""``anna-mpc demo``: k-hop on the MPC simulator, compiled into an ANNA-transformer with LSH heads.

1. simulate the k-hop protocol (pointer doubling) on the simulator and verify it;
2. compile it (Theorem 4.1) and run the compiled model with Algorithm 1 (LSH) heads;
3. show the simulator's rounds beside the model's layers, and the resources;
4. print the claim table (quick sweeps).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from rich.panel import Panel

from mpc_sim import Simulator
from mpc_sim.protocols import make_protocol

from .claims import all_claims, results_table
from .compile import compile_mpc

__all__ = ["register", "cmd_demo"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main demo: k-hop simulated, compiled to ANNA, run with LSH heads")
    p.add_argument("--n", type=int, default=64, help="sequence length (default 64)")
    p.add_argument("--k", type=int, default=4, help="hop count (default 4)")
    p.add_argument("--eps", type=float, default=0.5, help="memory exponent (default 0.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-claims", action="store_true", help="skip the claim table")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    console.print(Panel.fit("[bold]anna-mpc[/]: Approximate Nearest Neighbor Attention meets Massively Parallel "
                            "Computation\n(Liu, Yu, Sanford, Andoni, Hsu, NeurIPS 2025)", border_style="cyan"))
    protocol = make_protocol("khop", k=args.k)
    config = protocol.default_config(args.n, args.eps)
    data = protocol.generate_input(config, seed=args.seed)

    console.rule(f"1. the MPC simulator: {args.k}-hop induction heads on {args.n} tokens")
    start = time.perf_counter()
    sim = Simulator(config, mode="machine").run(protocol, data, seed=args.seed, record_states=True)
    verified = protocol.verify(protocol.validate_input(config, data), sim.output)
    trace = sim.trace.with_verified(verified)
    console.print(trace.table())
    console.print(trace.summary() + f" ({time.perf_counter() - start:.2f} s)")

    console.rule("2. compiled into an ANNA-transformer (Theorem 4.1), run with LSH heads")
    start = time.perf_counter()
    model = compile_mpc(protocol, config, seed=args.seed, rounds=trace.num_rounds, attention="anna")
    console.print(model.report.table())
    run = model.run(data)
    exact = np.array_equal(np.asarray(run.output), np.asarray(sim.output))
    lsh = model.transformer.layers[0].heads[0].lsh if model.transformer.layers else None
    console.print(f"LSH: {lsh}; compiled model output {'[green]identical to[/]' if exact else '[red]differs from[/]'} "
                  f"the simulator's ({time.perf_counter() - start:.2f} s)")

    console.rule("3. simulator rounds beside model layers")
    alignment = model.align(data, run)
    console.print(alignment.table())

    ok = verified and exact and alignment.all_match
    if not args.no_claims:
        console.rule("4. the theorems, measured (quick sweeps; `anna-mpc verify` for the full ones)")
        results = [r for claim in all_claims() for r in claim.run(quick=True)]
        console.print(results_table(results))
        ok = ok and not any(r.failed for r in results)
    console.print("[green]demo finished: every check passed[/]" if ok else "[red]demo finished with failures[/]")
    return 0 if ok else 1
