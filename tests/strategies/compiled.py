"""Random protocols for the compiler: outputs depend on every word delivered and on inbox order.

``MixingProtocol`` runs ``rounds`` rounds; in round ``r`` machine ``i`` sends ``fanout`` messages,
message ``a`` to ``(i + shift(r, a)) mod machines`` with distinct shifts, so every machine receives
exactly ``fanout`` messages: with payloads of at most ``s // (2 * fanout)`` words and memory of at
most ``s // 2`` words every limit of the MPC model holds. Payloads and memories are hashes of the
memory and of the inbox *in order*, so any lost, duplicated, corrupted or reordered word changes
the output.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from mpc_sim import MPCConfig, Protocol, hash64

__all__ = ["MixingProtocol", "mixing_cases"]


@dataclass(frozen=True)
class MixingProtocol(Protocol):
    rounds: int = 2
    fanout: int = 1
    salt: int = 0
    name = "mixing"

    def rounds_bound(self, config: MPCConfig) -> int:
        return self.rounds

    def fanout_bound(self, config: MPCConfig) -> int:
        return self.fanout

    def check_config(self, config: MPCConfig) -> None:
        from mpc_sim import ConfigError
        if config.s < 2 * self.fanout or config.machines < self.fanout + 1:
            raise ConfigError(f"mixing needs s >= 2 * fanout and machines > fanout, got s = {config.s}, "
                              f"machines = {config.machines}")

    def _shift(self, config: MPCConfig, r: int, a: int) -> int:
        # distinct non-zero shifts per round: 1 + ((r * 7 + a) mod (machines - 1)) for a < fanout <= machines - 1
        return 1 + (r * 7 + a) % (config.machines - 1)

    def step(self, ctx, machine, memory, inbox):
        config = ctx.config
        mixed = np.concatenate([memory, inbox.words, inbox.sources]).astype(np.int64)
        digest = hash64(self.salt, ctx.round, machine, *mixed.tolist()) if mixed.size else hash64(self.salt, ctx.round, machine)
        keep = min(config.s // 2, max(1, mixed.size % (config.s // 2 + 1)))
        new_memory = (hash64(digest, np.arange(keep)).view(np.int64) >> np.int64(ctx.round % 5)).astype(np.int64)
        if ctx.round > self.rounds:
            return new_memory, []
        width = max(1, config.s // (2 * self.fanout))
        messages = []
        for a in range(self.fanout):
            length = 1 + int(hash64(digest, a) % np.uint64(width))
            payload = hash64(digest, a, np.arange(length)).view(np.int64)
            messages.append(((machine + self._shift(config, ctx.round, a)) % config.machines, payload))
        return new_memory, messages


@st.composite
def mixing_cases(draw):
    """(protocol, config, input) with small sizes."""
    n = draw(st.integers(4, 48))
    eps = draw(st.sampled_from([0.4, 0.5, 0.6]))
    factor = draw(st.sampled_from([2.0, 3.0]))
    config = MPCConfig(n=n, eps=eps, memory_factor=factor, machines_factor=1.0)
    fanout = draw(st.integers(1, max(1, min(3, config.s // 2, config.machines - 1))))
    protocol = MixingProtocol(rounds=draw(st.integers(0, 3)), fanout=fanout, salt=draw(st.integers(0, 99)))
    data = np.array(draw(st.lists(st.integers(-2**63, 2**63 - 1), min_size=n, max_size=n)), dtype=np.int64)
    return protocol, config, data
