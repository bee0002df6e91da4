"""Typed errors of the MPC -> ANNA compiler."""
from __future__ import annotations

__all__ = ["CompileError", "UnsupportedProtocol", "RoundBudgetExceeded", "ModelTooLarge"]


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


class ModelTooLarge(CompileError, MemoryError):
    """The model's estimated memory exceeds the limit: refused before anything is built or run."""

    def __init__(self, what: str, estimate: int, limit: int, detail: str = ""):
        from .estimate import format_bytes

        self.what, self.estimate, self.limit = what, int(estimate), int(limit)
        super().__init__(f"{what} is estimated at {format_bytes(estimate)} ({self.estimate} bytes), above the "
                         f"memory limit of {format_bytes(limit)} ({self.limit} bytes){': ' + detail if detail else ''}")
