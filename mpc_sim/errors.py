"""Typed errors of the MPC simulator.

Every limit error names the round, the machine, the amount observed and the limit, so a failing
protocol can be fixed from the message alone.
"""
from __future__ import annotations

__all__ = [
    "MPCError",
    "ConfigError",
    "ParameterError",
    "UnknownBackend",
    "InputError",
    "LoadError",
    "StepError",
    "ProtocolError",
    "UnknownDestination",
    "LimitExceeded",
    "MemoryLimitExceeded",
    "SendLimitExceeded",
    "ReceiveLimitExceeded",
    "RoundBoundExceeded",
    "RecordingTooLarge",
    "NotRecorded",
]


class MPCError(Exception):
    """Base class of every error raised by :mod:`mpc_sim`."""


class ConfigError(MPCError, ValueError):
    """An :class:`~mpc_sim.config.MPCConfig` with nonsensical parameters."""


class ParameterError(MPCError, ValueError):
    """A config-like parameter of the wrong type or out of range (the message names it)."""


class UnknownBackend(ParameterError):
    """A backend name that is not registered (:func:`mpc_sim.backends.register_backend`); the
    message lists the registered names (also in ``known``)."""

    def __init__(self, name: object, known: tuple[str, ...]):
        super().__init__(f"backend must be one of {known}, got {name!r}")
        self.name = name
        self.known = known


class LoadError(MPCError, ValueError):
    """A file (a trace) that cannot be read back: truncated, mis-shaped, a field of the wrong type,
    out of range, not finite or inconsistent with another. The message names the file and the field."""


class InputError(MPCError, ValueError):
    """An input the cluster cannot take: wrong size, dtype, non-integer or NaN words."""


class ProtocolError(MPCError):
    """A protocol broke the simulator's contract (malformed state or messages, no halting)."""

    def __init__(self, message: str, *, round: int | None = None, machine: int | None = None):
        where = []
        if round is not None:
            where.append(f"round {round}")
        if machine is not None:
            where.append(f"machine {machine}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.round = round
        self.machine = machine


def _rebuild_step_error(message: str, round: int, machine: int | None, cause: BaseException | None):
    error = StepError.__new__(StepError)
    MPCError.__init__(error, message)
    error.round, error.machine = round, machine
    error.__cause__ = cause
    return error


class StepError(ProtocolError):
    """An exception raised by a protocol's own code (its ``step`` or ``batch_step``), re-raised with
    the round and the machine it was running; the original is its ``__cause__`` (kept when the
    error travels back from a Dask worker)."""

    def __init__(self, cause: BaseException, *, round: int, machine: int | None = None):
        super().__init__(f"the protocol's step raised {type(cause).__name__}: {cause}", round=round, machine=machine)
        self.__cause__ = cause

    def __reduce__(self):
        cause = self.__cause__
        try:
            import pickle
            pickle.dumps(cause)
        except Exception:
            cause = None
        return _rebuild_step_error, (str(self), self.round, self.machine, cause), self.__dict__


class UnknownDestination(MPCError):
    """A message addressed to a machine id outside ``0 .. machines - 1``."""

    def __init__(self, *, round: int, machine: int, destination: int, machines: int):
        super().__init__(
            f"round {round}, machine {machine}: message to unknown machine {destination} "
            f"(valid ids are 0..{machines - 1})"
        )
        self.round = round
        self.machine = machine
        self.destination = destination
        self.machines = machines


class LimitExceeded(MPCError):
    """A machine exceeded one of the per-round limits of the MPC model (all equal to ``s``)."""

    kind = "limit"
    verb = "used"

    def __init__(self, *, round: int, machine: int, observed: int, limit: int):
        super().__init__(
            f"round {round}, machine {machine}: {self.verb} {observed} words, "
            f"limit s = {limit} ({self.kind} limit exceeded by {observed - limit})"
        )
        self.round = round
        self.machine = machine
        self.observed = observed
        self.limit = limit


class MemoryLimitExceeded(LimitExceeded):
    """A machine held more than ``s`` words (kept memory plus inbox) at the start of a round."""

    kind = "memory"
    verb = "holds"


class SendLimitExceeded(LimitExceeded):
    """A machine sent more than ``s`` words in one round."""

    kind = "send"
    verb = "sent"


class ReceiveLimitExceeded(LimitExceeded):
    """A machine was sent more than ``s`` words in one round."""

    kind = "receive"
    verb = "received"


class RoundBoundExceeded(MPCError):
    """A protocol still sending in a round past the bound it declares (``rounds_bound``): raised
    by strict runs as soon as the extra round sends, before its messages are delivered."""

    def __init__(self, *, protocol: str, round: int, bound: int):
        super().__init__(f"round {round}: {protocol} is still sending after its declared rounds_bound = {bound}")
        self.protocol = protocol
        self.round = round
        self.bound = bound


class RecordingTooLarge(MPCError, ValueError):
    """Recording a run's messages would take more memory than allowed (the message gives the
    estimate and the limit); raised before the run starts, or the round the recording outgrows it."""


class NotRecorded(MPCError, LookupError):
    """A view that needs what a run did not record (``record_messages=True``), or a round that does
    not exist in the recording."""
