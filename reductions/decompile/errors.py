"""Typed errors of the ANNA -> MPC direction."""
from __future__ import annotations

from mpc_sim import ConfigError

__all__ = ["DecompileError", "UnsupportedModel", "PlanError"]


class DecompileError(Exception):
    """Base class of the errors of :mod:`reductions.decompile`."""


class UnsupportedModel(DecompileError, ValueError):
    """A transformer a protocol cannot run, with every reason found (not just the first)."""

    def __init__(self, model: str, reasons: list[str]):
        self.model = model
        self.reasons = list(reasons)
        lines = "\n".join(f"  - {reason}" for reason in self.reasons)
        super().__init__(f"cannot run {model} as an MPC protocol:\n{lines}")


class PlanError(DecompileError, ConfigError):
    """No plan fits the cluster (memory too small for the model's sizes, or no fan-in meets the
    failure bound); the message says what was missing. A :class:`~mpc_sim.errors.ConfigError`, so
    the simulator reports it as a config the protocol refuses."""
