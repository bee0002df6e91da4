"""Write an MPC protocol in the per-machine style, run it, read its trace, and watch a limit fire.

A two-level sum: every machine adds its words, then sends the partial sum to machine 0, which adds
what it receives. With s words per machine, machine 0 receives ceil(n / s) words: fine while that
is <= s, and a typed error naming the round, the machine and the amount when it is not.

    python examples/01_write_a_protocol.py
"""
import numpy as np
from rich.console import Console

from mpc_sim import MPCConfig, Protocol, ReceiveLimitExceeded, Simulator


class TwoLevelSum(Protocol):
    name = "two-level-sum"

    def rounds_bound(self, config):
        return 1

    def step(self, ctx, machine, memory, inbox):
        if ctx.round == 1:                                   # local sums travel to machine 0
            return memory[:0], ([(0, [memory.sum()])] if memory.size else [])
        if machine == 0:                                     # the output step: add what arrived
            return np.array([inbox.words.sum()]), []
        return memory, []

    def reference(self, data):
        return np.array([data.sum()])


console = Console()
data = np.arange(10_000)
config = MPCConfig(n=data.size, eps=0.5)                     # s = 100 words, 100 machines
result = Simulator(config).run(TwoLevelSum(), data)
console.print(result.trace.table())
console.print(f"sum = {result.output[0]} (numpy: {data.sum()}); {result.trace.summary()}")

tight = MPCConfig(n=data.size, eps=0.45)                     # s = 64: 157 partial sums cannot land on one machine
try:
    Simulator(tight).run(TwoLevelSum(), data)
except ReceiveLimitExceeded as error:
    console.print(f"[red]{type(error).__name__}:[/] {error}")
    assert error.machine == 0 and error.observed > error.limit
