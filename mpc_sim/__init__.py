"""A round-based Massively Parallel Computation (MPC) simulator with honest accounting.

Machines with ``s`` words of local memory; every round each machine computes on its memory and
inbox, then sends at most ``s`` words; nobody receives more than ``s``. Every round's memory and
communication is recorded in a :class:`Trace`, and limits are enforced with typed errors naming
the round, the machine and the amount. Imports nothing of :mod:`anna` or :mod:`reductions`.
"""
from _anna_mpc_numba_cache import configure_numba_cache as _configure_numba_cache

_configure_numba_cache()   # first: numba reads its cache directory as kernel modules import

from .config import MPCConfig
from .errors import (ConfigError, InputError, LimitExceeded, LoadError, MemoryLimitExceeded, MPCError,
                     NotRecorded, ParameterError, ProtocolError, ReceiveLimitExceeded, RecordingTooLarge,
                     RoundBoundExceeded, SendLimitExceeded, StepError, UnknownBackend, UnknownDestination)
from .protocol import Protocol, RoundContext, spread_input
from .protocols import CATALOG, make_protocol, protocol_class
from .randomness import hash64, machine_rng, normalize_seed, uniform01
from .routing import route
from .simulator import RunResult, Simulator, Step, simulate
from .state import ClusterState, Delivery, Inbox, MessageBatch, ragged_offsets
from .trace import OutputStats, Retry, RoundMessages, RoundPeaks, RoundStats, Trace, Violation

__all__ = [
    "MPCConfig", "Protocol", "RoundContext", "spread_input",
    "Simulator", "RunResult", "Step", "simulate", "route",
    "ClusterState", "MessageBatch", "Delivery", "Inbox", "ragged_offsets",
    "RoundStats", "OutputStats", "Violation", "Retry", "Trace", "RoundPeaks", "RoundMessages",
    "CATALOG", "make_protocol", "protocol_class",
    "hash64", "uniform01", "machine_rng", "normalize_seed",
    "MPCError", "ConfigError", "InputError", "ProtocolError", "UnknownDestination",
    "LimitExceeded", "MemoryLimitExceeded", "SendLimitExceeded", "ReceiveLimitExceeded",
    "RoundBoundExceeded", "RecordingTooLarge", "NotRecorded",
    "ParameterError", "LoadError", "StepError", "UnknownBackend",
]
