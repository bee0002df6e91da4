"""The MPC model's parameters (THEORY.md §1) with the simulator's constants made explicit."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ConfigError

__all__ = ["MPCConfig"]

# n ** eps is computed in floating point; 2**16 ** 0.5 must give 256, not 257 after ceil. The slack
# only absorbs rounding (relative error ~1e-15 for n <= 1e18): a larger one rounds true fractions
# down (1e-9 made MPCConfig(n=22361**2 + 1, eps=0.5) report s = 22361 and reject itself).
_CEIL_SLACK = 1e-13


def _ceil(x: float) -> int:
    return max(1, math.ceil(x - _CEIL_SLACK * max(1.0, abs(x))))


@dataclass(frozen=True)
class MPCConfig:
    """A (gamma, eps)-MPC cluster for an input of ``n`` words.

    Local memory ``s = ceil(memory_factor * n**eps)`` words per machine and
    ``machines = ceil(machines_factor * n**(1 + gamma - eps))`` machines (THEORY.md §1 with
    a = memory_factor, b = machines_factor). The input starts on the first ``ceil(n / s)``
    machines, ``s`` words each in order, and the output is read from the first machines.

    Parameters
    ----------
    n : int
        Input size in words (>= 1).
    eps : float
        Memory exponent, ``0 < eps < 1``.
    gamma : float
        Extra-machines exponent, ``gamma >= 0``.
    memory_factor, machines_factor : float
        The constants a and b (> 0).

    Raises
    ------
    ConfigError
        On parameters outside these ranges, or a cluster too small to hold its input.

    Examples
    --------
    >>> cfg = MPCConfig(n=2**16, eps=0.5)
    >>> cfg.s, cfg.machines, cfg.input_machines
    (256, 256, 256)
    >>> MPCConfig(n=100, eps=1.5)
    Traceback (most recent call last):
    ...
    mpc_sim.errors.ConfigError: eps must satisfy 0 < eps < 1, got 1.5
    """

    n: int
    eps: float
    gamma: float = 0.0
    memory_factor: float = 1.0
    machines_factor: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ConfigError(f"n must be an integer >= 1, got {self.n!r}")
        if not (0.0 < float(self.eps) < 1.0):
            raise ConfigError(f"eps must satisfy 0 < eps < 1, got {self.eps}")
        if not (float(self.gamma) >= 0.0) or math.isinf(self.gamma):
            raise ConfigError(f"gamma must be a finite number >= 0, got {self.gamma}")
        for name in ("memory_factor", "machines_factor"):
            value = float(getattr(self, name))
            if not (value > 0.0) or math.isinf(value):
                raise ConfigError(f"{name} must be a finite number > 0, got {value}")
        if self.input_machines > self.machines:
            raise ConfigError(
                f"the cluster cannot hold its input: n = {self.n} words need {self.input_machines} "
                f"machines of s = {self.s} words, but there are only {self.machines} machines "
                f"(raise machines_factor or memory_factor)"
            )

    @property
    def s(self) -> int:
        """Local memory per machine, in words: ``ceil(memory_factor * n**eps)``."""
        return _ceil(self.memory_factor * self.n ** self.eps)

    @property
    def machines(self) -> int:
        """Number of machines: ``ceil(machines_factor * n**(1 + gamma - eps))``."""
        return _ceil(self.machines_factor * self.n ** (1.0 + self.gamma - self.eps))

    @property
    def input_machines(self) -> int:
        """Machines the input is spread over: ``ceil(n / s)``."""
        return -(-self.n // self.s)

    def output_machines(self, n_out: int) -> int:
        """Machines an output of ``n_out`` words must end on: ``ceil(n_out / s)``."""
        return -(-int(n_out) // self.s)

    def to_dict(self) -> dict:
        """Parameters and derived sizes, as stored in a trace's JSON."""
        return {
            "n": self.n, "eps": self.eps, "gamma": self.gamma,
            "memory_factor": self.memory_factor, "machines_factor": self.machines_factor,
            "s": self.s, "machines": self.machines,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "MPCConfig":
        """Inverse of :meth:`to_dict` (derived sizes are recomputed and checked)."""
        cfg = cls(n=int(data["n"]), eps=float(data["eps"]), gamma=float(data.get("gamma", 0.0)),
                  memory_factor=float(data.get("memory_factor", 1.0)),
                  machines_factor=float(data.get("machines_factor", 1.0)))
        for key in ("s", "machines"):
            if key in data and int(data[key]) != getattr(cfg, key):
                raise ConfigError(f"stored {key} = {data[key]} disagrees with the parameters ({getattr(cfg, key)})")
        return cfg
