"""The MPC model's parameters (docs/theory.md §1) with the simulator's constants made explicit."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, ParameterError

__all__ = ["MPCConfig", "check_integer", "check_number", "check_flag", "MAX_WORDS"]

MAX_WORDS = 2**63 - 1        # words are int64: no input, memory or machine count beyond this

# n ** eps is computed in floating point; 2**16 ** 0.5 must give 256, not 257 after ceil. The slack
# only absorbs rounding (relative error ~1e-15 for n <= 1e18): a larger one rounds true fractions
# down (1e-9 made MPCConfig(n=22361**2 + 1, eps=0.5) report s = 22361 and reject itself).
_CEIL_SLACK = 1e-13


def _ceil(x: float) -> int:
    return max(1, math.ceil(x - _CEIL_SLACK * max(1.0, abs(x))))


def check_integer(name: str, value: object, *, low: int | None = None, high: int | None = None,
                  error: type[Exception] = ParameterError) -> int:
    """``value`` as a Python int (numpy integers accepted) within ``[low, high]``; ``error``
    (:class:`ParameterError` by default) naming ``name`` for a bool, a string, a float or a value
    out of range. The one validator of integer parameters in :mod:`mpc_sim`.

    Examples
    --------
    >>> check_integer("max_rounds", np.int32(10), low=1)
    10
    >>> check_integer("max_rounds", "10", low=1)
    Traceback (most recent call last):
    ...
    mpc_sim.errors.ParameterError: max_rounds must be an integer >= 1, got '10' (str)
    """
    bounds = "" if low is None and high is None else (
        f" >= {low}" if high is None else (f" <= {high}" if low is None else f" >= {low} and <= {high}"))
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise error(f"{name} must be an integer{bounds}, got {value!r} ({type(value).__name__})")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        shown = value if abs(value) < 10**30 else f"an integer of {len(str(abs(value)))} digits"
        raise error(f"{name} must be an integer{bounds}, got {shown}")
    return value


def check_number(name: str, value: object, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, error: type[Exception] = ParameterError) -> float:
    """``value`` as a finite Python float (ints and numpy numbers accepted) within its bounds
    (open or closed); ``error`` naming ``name`` for a bool, a string, NaN, inf or a value out of range.

    Examples
    --------
    >>> check_number("eps", "0.5", low=0, high=1, low_open=True, high_open=True)
    Traceback (most recent call last):
    ...
    mpc_sim.errors.ParameterError: eps must be a number, got '0.5' (str)
    """
    lower = "" if low is None else f"{low:g} {'<' if low_open else '<='} "
    upper = "" if high is None else f" {'<' if high_open else '<='} {high:g}"
    rule = f"satisfy {lower}{name}{upper}" if lower or upper else "be a finite number"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
        raise error(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    try:
        number = float(value)
    except OverflowError:
        raise error(f"{name} must {rule}, got an integer of {len(str(value))} digits") from None
    if not math.isfinite(number) or low is not None and (number < low or (low_open and number == low)) or \
            high is not None and (number > high or (high_open and number == high)):
        raise error(f"{name} must {rule}, got {value!r}")
    return number


def check_flag(name: str, value: object, *, error: type[Exception] = ParameterError) -> bool:
    """``value`` if it is a bool (numpy bools accepted); ``error`` naming ``name`` otherwise:
    ``'no'`` is neither true nor false.

    Examples
    --------
    >>> check_flag("strict", "no")
    Traceback (most recent call last):
    ...
    mpc_sim.errors.ParameterError: strict must be True or False, got 'no' (str)
    """
    if not isinstance(value, (bool, np.bool_)):
        raise error(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


@dataclass(frozen=True)
class MPCConfig:
    """A (gamma, eps)-MPC cluster for an input of ``n`` words.

    Local memory ``s = ceil(memory_factor * n**eps)`` words per machine and
    ``machines = ceil(machines_factor * n**(1 + gamma - eps))`` machines (docs/theory.md §1 with
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
        # numpy scalars are accepted and stored as Python numbers (hashing, equality and JSON agree)
        object.__setattr__(self, "n", check_integer("n", self.n, low=1, high=MAX_WORDS, error=ConfigError))
        object.__setattr__(self, "eps", check_number("eps", self.eps, low=0.0, high=1.0, low_open=True,
                                                     high_open=True, error=ConfigError))
        object.__setattr__(self, "gamma", check_number("gamma", self.gamma, low=0.0, error=ConfigError))
        for name in ("memory_factor", "machines_factor"):
            object.__setattr__(self, name, check_number(name, getattr(self, name), low=0.0, low_open=True,
                                                        error=ConfigError))
        for name in ("s", "machines"):      # huge counts are fine for planning; beyond float range they are not
            try:
                getattr(self, name)
            except OverflowError:
                raise ConfigError(f"the parameters make {name} overflow: n = {self.n}, eps = {self.eps}, "
                                  f"gamma = {self.gamma}, memory_factor = {self.memory_factor}, "
                                  f"machines_factor = {self.machines_factor}") from None
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
        if not isinstance(data, dict):
            raise ConfigError(f"a config is a mapping of its parameters, got {type(data).__name__}")
        missing = [key for key in ("n", "eps") if key not in data]
        if missing:
            raise ConfigError(f"the stored config lacks {', '.join(missing)}")
        # no conversions: a stored n of 3.7 or an eps of "0.5" is refused by name, not rounded or parsed
        cfg = cls(n=data["n"], eps=data["eps"], gamma=data.get("gamma", 0.0),
                  memory_factor=data.get("memory_factor", 1.0), machines_factor=data.get("machines_factor", 1.0))
        for key in ("s", "machines"):
            if key in data and data[key] != getattr(cfg, key):
                raise ConfigError(f"stored {key} = {data[key]} disagrees with the parameters ({getattr(cfg, key)})")
        return cfg
