"""Compile an MPC protocol into an ANNA-transformer (Theorem 4.1) and run it with LSH heads.

The protocol is the library's tree aggregation. The compiled model has one token per machine, one
layer per round, and routes every message through exact-match attention (here executed by
Algorithm 1 on machine ids embedded as far-apart unit vectors). Its output equals the simulator's,
and its layers line up with the simulator's rounds.

    python examples/03_compile_a_protocol.py
"""
import numpy as np
from rich.console import Console

from mpc_sim import Simulator
from mpc_sim.protocols import make_protocol
from reductions.compile import compile_mpc

console = Console()
protocol = make_protocol("aggregate", op="max")
config = protocol.default_config(4096, 0.5)
data = protocol.generate_input(config, seed=0)

sim = Simulator(config).run(protocol, data)
model = compile_mpc(protocol, config, rounds=sim.trace.num_rounds, attention="anna")
console.print(model.report.table())

run = model.run(data)
console.print(model.align(data, run).table())
console.print(f"model: {run.output.tolist()}, simulator: {sim.output.tolist()}, numpy: {data.max()}")
assert np.array_equal(run.output, sim.output)
