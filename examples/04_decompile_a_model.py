"""Run an ANNA-transformer as an MPC protocol (Theorem 4.2) and compare with its forward pass.

A random 1-layer ANNA-transformer (random hyperplane LSH) becomes a protocol of the simulator:
token machines compute the token-wise maps, hash records are aggregated per bucket by trees, and
sums travel back to the queries. The trace gives rounds, memory and machines.

    python examples/04_decompile_a_model.py
"""
import numpy as np
from rich.console import Console

from anna import Hyperplane, LSHConfig, init_transformer
from reductions.decompile import compile_anna, run_model_protocol

console = Console()
model = init_transformer(vocab_size=8, dim=8, n_outputs=3, depth=1, max_len=256, kind="anna",
                         lsh=LSHConfig(Hyperplane(), z=3, ell=4), seed=0)
protocol = compile_anna(model)
tokens = np.random.default_rng(0).integers(0, 8, size=256)
run = run_model_protocol(protocol, tokens, eps=0.5)
console.print(run.trace.table())
console.print(f"{run.trace.summary()}; max |protocol - model| = {run.max_abs_error:.2e} "
              f"(rounds {run.trace.num_rounds}, bound {protocol.rounds_bound(run.trace.config)})")
assert run.agrees
