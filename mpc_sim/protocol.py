"""What a protocol is: the base class and the two ways to write one.

Round semantics (one engine for both styles). Round ``r = 1, 2, ...``: every machine computes on
its kept memory and its inbox (the messages delivered at the end of round ``r - 1``); it returns
its new kept memory and its outgoing messages. Limits, all equal to ``s``: the words a machine
holds when its computation starts (kept memory + inbox), the words it sends, the words it is
sent. The first round in which no machine sends anything is the final local computation: the
protocol has then run ``R = r - 1`` rounds, and its output is read from the kept memories.

Per-machine style: override :meth:`Protocol.step` ``(ctx, machine, memory, inbox) -> (memory,
messages)``, a readable function of one machine's view. Batch style: override
:meth:`Protocol.batch_step` ``(ctx, state, delivery) -> (state, MessageBatch)`` over the whole
cluster as ragged arrays. A protocol may offer both; they must agree (tests check it), and only
the per-machine style makes locality structural.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .config import MPCConfig
from .errors import InputError
from .randomness import machine_rng, uniform01
from .state import ClusterState, Delivery, Inbox, MessageBatch, ragged_offsets

__all__ = ["Protocol", "RoundContext", "spread_input"]


@dataclass(frozen=True)
class RoundContext:
    """What every machine knows besides its memory: the round, the config and the run's seed.

    ``first_machine`` is the id of the first machine a batch step is handed: 0 for the whole
    cluster; a block's first machine when a distributed backend runs a block-local batch step
    (see :attr:`Protocol.block_batch`).
    """

    round: int
    config: MPCConfig
    seed: int
    first_machine: int = 0

    @property
    def s(self) -> int:
        return self.config.s

    @property
    def machines(self) -> int:
        return self.config.machines

    def rng(self, machine: int) -> np.random.Generator:
        """A Generator private to ``machine`` in this round (same on every backend)."""
        return machine_rng(self.seed, self.round, machine)

    def uniform(self, machine: int | np.ndarray, index: int | np.ndarray) -> np.ndarray:
        """Counter-based uniforms in [0, 1) for (machine, index): vectorisable, so batch and
        per-machine versions of a protocol draw the same numbers."""
        return uniform01(self.seed, self.round, machine, index)


def spread_input(data: np.ndarray, config: MPCConfig) -> ClusterState:
    """The input's initial placement: ``s`` consecutive words per machine on the first
    ``ceil(n / s)`` machines, the rest empty.

    Examples
    --------
    >>> st = spread_input(np.arange(5), MPCConfig(n=5, eps=0.5, memory_factor=1.0))
    >>> [m.tolist() for m in st.to_list()]
    [[0, 1, 2], [3, 4], []]
    """
    sizes = np.zeros(config.machines, dtype=np.int64)
    full, rest = divmod(data.shape[0], config.s)
    sizes[:full] = config.s
    if rest:
        sizes[full] = rest
    return ClusterState(np.ascontiguousarray(data), ragged_offsets(sizes))


class Protocol:
    """Base class of MPC protocols.

    Subclasses set ``name`` and ``word_dtype``, implement :meth:`step` and/or :meth:`batch_step`,
    and state their round bound as data in :meth:`rounds_bound`. Optional: :meth:`reference`
    (a plain solver the output is verified against), :meth:`generate_input` (for the CLI),
    :meth:`check_config` (refuse configs the protocol cannot run in), :meth:`output`.
    Parameters of a protocol are best kept as fields of a frozen dataclass subclass.
    """

    name: str = "protocol"
    summary: str = ""
    """One line for listings (``anna-mpc protocols``); empty: the class docstring's first line."""
    word_dtype: np.dtype = np.dtype(np.int64)
    block_batch: bool = False
    """Whether :meth:`batch_step` is block-local, so a distributed backend may run it on blocks of
    machines: handed the state and delivery of machines ``ctx.first_machine ..
    ctx.first_machine + state.machines - 1`` (machine ``i`` of them is ``ctx.first_machine + i``),
    it reads nothing else and returns their new state and their messages (global ids, sorted by
    source machine). Otherwise a distributed backend runs :meth:`step` on every machine."""

    # --- the computation ---------------------------------------------------------------------
    def step(self, ctx: RoundContext, machine: int, memory: np.ndarray,
             inbox: Inbox) -> tuple[np.ndarray, Iterable[tuple[int, object]]]:
        """Per-machine style: new kept memory and ``(destination, payload)`` messages."""
        raise NotImplementedError

    def batch_step(self, ctx: RoundContext, state: ClusterState,
                   delivery: Delivery) -> tuple[ClusterState, MessageBatch]:
        """Batch style: the whole cluster's new state and the round's messages."""
        raise NotImplementedError

    @classmethod
    def has_step(cls) -> bool:
        return cls.step is not Protocol.step

    @classmethod
    def has_batch_step(cls) -> bool:
        return cls.batch_step is not Protocol.batch_step

    # --- declared facts ------------------------------------------------------------------------
    def rounds_bound(self, config: MPCConfig) -> int:
        """An upper bound on the rounds this protocol uses under ``config`` (checked by tests)."""
        raise NotImplementedError(f"{type(self).__name__} declares no round bound")

    def check_config(self, config: MPCConfig) -> None:
        """Raise :class:`~mpc_sim.errors.ConfigError` if the protocol cannot run under ``config``."""

    def fanout_bound(self, config: MPCConfig) -> int:
        """An upper bound on the messages one machine sends in one round (default ``s``: every
        message carries at least one word). Compilers size their routing heads by it."""
        return config.s

    def default_config(self, n: int, eps: float) -> MPCConfig:
        """The config the CLI and benchmarks use for ``n`` words at ``eps``: protocols that need
        larger constants (``memory_factor``, ``machines_factor``) override this."""
        return MPCConfig(n=n, eps=eps)

    def params(self) -> dict:
        """The protocol's parameters (dataclass fields), recorded in traces."""
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    # --- input and output ----------------------------------------------------------------------
    def validate_input(self, config: MPCConfig, data: object) -> np.ndarray:
        """Check ``data`` is ``config.n`` words of the protocol's dtype; return it as such."""
        arr = np.asarray(data)
        if arr.ndim != 1:
            raise InputError(f"{self.name}: input must be a 1-D array of words, got shape {arr.shape}")
        if arr.shape[0] != config.n:
            raise InputError(f"{self.name}: input has {arr.shape[0]} words but the config says n = {config.n}")
        if self.word_dtype == np.int64:
            if arr.size and not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
                raise InputError(f"{self.name}: input words must be integers, got dtype {arr.dtype}")
            if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
                raise InputError(f"{self.name}: input word {int(arr.max())} does not fit in an int64 word")
            return np.ascontiguousarray(arr, dtype=np.int64)
        if arr.size and not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
            raise InputError(f"{self.name}: input words must be real numbers, got dtype {arr.dtype}")
        out = np.ascontiguousarray(arr, dtype=np.float64)
        if out.size and not np.isfinite(out).all():
            bad = int(np.flatnonzero(~np.isfinite(out))[0])
            raise InputError(f"{self.name}: input word {bad} is {out[bad]} (NaN and inf are not words)")
        return out

    def initial_state(self, config: MPCConfig, data: np.ndarray) -> ClusterState:
        """Where the input starts: :func:`spread_input` unless a protocol says otherwise."""
        return spread_input(data, config)

    def output(self, config: MPCConfig, state: ClusterState) -> np.ndarray:
        """The output: the kept memories concatenated in machine order (protocols leave their
        output on the first machines and nothing elsewhere)."""
        return state.words.copy()

    def reference(self, data: np.ndarray) -> np.ndarray:
        """The answer computed plainly, to verify the protocol's output against."""
        raise NotImplementedError(f"{type(self).__name__} has no reference solver")

    def verify(self, data: np.ndarray, output: np.ndarray) -> bool:
        """Whether ``output`` is the right answer for ``data``."""
        expected = np.asarray(self.reference(data))
        output = np.asarray(output)
        if expected.shape != output.shape:
            return False
        if self.word_dtype == np.float64:
            return bool(np.allclose(output, expected, rtol=1e-9, atol=1e-9))
        return bool(np.array_equal(output, expected))

    def generate_input(self, config: MPCConfig, seed: int = 0) -> np.ndarray:
        """A random input of ``config.n`` words (used by the CLI and benchmarks)."""
        raise NotImplementedError(f"{type(self).__name__} has no input generator")
