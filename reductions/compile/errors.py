"""Typed errors of the MPC -> ANNA compiler."""
from __future__ import annotations

__all__ = ["CompileError", "UnsupportedProtocol", "RoundBudgetExceeded"]


class CompileError(Exception):
    """Base class of the compiler's errors."""


class UnsupportedProtocol(CompileError, ValueError):
    """A protocol the compiler refuses, with every reason found (not just the first)."""

    def __init__(self, protocol: str, reasons: list[str]):
        self.protocol = protocol
        self.reasons = list(reasons)
        lines = "\n".join(f"  - {reason}" for reason in self.reasons)
        super().__init__(f"cannot compile {protocol}:\n{lines}")


class RoundBudgetExceeded(CompileError):
    """The compiled depth ran out while machines still had messages to send."""
