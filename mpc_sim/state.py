"""Ragged cluster state and message batches: the simulator's two data structures.

A cluster's memory is one flat word array plus ``machines + 1`` offsets (machine ``i`` holds
``words[offsets[i]:offsets[i + 1]]``). A round's messages are four arrays: ``src``, ``dst``,
payload ``offsets`` and flat ``words`` (message ``j`` carries ``words[offsets[j]:offsets[j + 1]]``).
Words are int64, or float64 for numeric protocols.
"""
from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ProtocolError

__all__ = ["WORD_DTYPES", "ClusterState", "MessageBatch", "Delivery", "Inbox", "ragged_offsets", "as_words"]

WORD_DTYPES = (np.dtype(np.int64), np.dtype(np.float64))


def ragged_offsets(sizes: np.ndarray | Sequence[int]) -> np.ndarray:
    """Offsets (length ``len(sizes) + 1``, starting at 0) of consecutive pieces of the given sizes.

    Examples
    --------
    >>> ragged_offsets([2, 0, 3]).tolist()
    [0, 2, 2, 5]
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    offsets = np.zeros(sizes.shape[0] + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return offsets


def as_words(payload: object, dtype: np.dtype, what: str) -> np.ndarray:
    """``payload`` as a 1-D array of words of ``dtype``: what the simulator does to every memory
    and payload a protocol returns. :class:`~mpc_sim.errors.ProtocolError` naming ``what`` for
    anything that is not 1-D, or for non-integer words where ``dtype`` is int64.

    Examples
    --------
    >>> as_words([1, 2, 3], np.dtype(np.int64), "memory of machine 0").tolist()
    [1, 2, 3]
    >>> as_words([0.5], np.dtype(np.int64), "payload of a message from machine 2")
    Traceback (most recent call last):
    ...
    mpc_sim.errors.ProtocolError: payload of a message from machine 2 must hold integer words, got dtype float64
    """
    arr = np.asarray(payload)
    if arr.ndim != 1:
        raise ProtocolError(f"{what} must be a 1-D array of words, got shape {arr.shape}")
    if arr.dtype != dtype:
        if dtype == np.int64 and arr.size and not np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_:
            raise ProtocolError(f"{what} must hold integer words, got dtype {arr.dtype}")
        arr = arr.astype(dtype)
    return arr


_as_words = as_words     # the former private name, kept for callers outside this package


@dataclass(frozen=True, eq=False)
class ClusterState:
    """Memory of every machine as a ragged array.

    Examples
    --------
    >>> st = ClusterState.from_list([np.array([1, 2]), np.array([], dtype=np.int64), np.array([3])])
    >>> st.machines, st.sizes().tolist(), st.memory(2).tolist()
    (3, [2, 0, 1], [3])
    """

    words: np.ndarray
    offsets: np.ndarray

    def __post_init__(self) -> None:
        if self.words.ndim != 1 or self.words.dtype not in WORD_DTYPES:
            raise ProtocolError(f"state words must be a 1-D int64 or float64 array, got "
                                f"{self.words.dtype} with shape {self.words.shape}")
        if self.offsets.ndim != 1 or self.offsets.dtype != np.int64 or self.offsets.shape[0] < 1:
            raise ProtocolError("state offsets must be a non-empty 1-D int64 array")
        if self.offsets[0] != 0 or self.offsets[-1] != self.words.shape[0] or (np.diff(self.offsets) < 0).any():
            raise ProtocolError("state offsets must start at 0, be non-decreasing and end at len(words)")

    @property
    def machines(self) -> int:
        return self.offsets.shape[0] - 1

    @property
    def dtype(self) -> np.dtype:
        return self.words.dtype

    def sizes(self) -> np.ndarray:
        """Words held by each machine."""
        return np.diff(self.offsets)

    def memory(self, machine: int) -> np.ndarray:
        """The memory of one machine (a view)."""
        return self.words[self.offsets[machine]:self.offsets[machine + 1]]

    def to_list(self) -> list[np.ndarray]:
        """One array per machine (views)."""
        return [self.memory(i) for i in range(self.machines)]

    @classmethod
    def from_list(cls, memories: Sequence[object], dtype: np.dtype | type = np.int64) -> "ClusterState":
        """Build from one 1-D array per machine."""
        dtype = np.dtype(dtype)
        arrays = [as_words(m, dtype, f"memory of machine {i}") for i, m in enumerate(memories)]
        words = np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)
        return cls(words.astype(dtype, copy=False), ragged_offsets([a.shape[0] for a in arrays]))

    @classmethod
    def empty(cls, machines: int, dtype: np.dtype | type = np.int64) -> "ClusterState":
        """A cluster where every machine holds nothing."""
        return cls(np.zeros(0, dtype=dtype), np.zeros(machines + 1, dtype=np.int64))

    def _repr_html_(self, max_rows: int = 12) -> str:
        from .render import html_table
        sizes = self.sizes()
        rows = []
        for i in range(self.machines):
            memory = self.memory(i)
            shown = " ".join(str(w) for w in memory[:6].tolist()) + (" ..." if memory.size > 6 else "")
            rows.append([i, int(sizes[i]), shown])
        return (f"<div><b>ClusterState</b>: {self.machines} machines, {self.words.shape[0]} {self.dtype} words "
                f"(largest memory {int(sizes.max(initial=0))})"
                + html_table(["machine", "words", "memory"], rows, max_rows=max_rows, what="machines") + "</div>")

    def equals(self, other: "ClusterState") -> bool:
        """Same machines, same words bit for bit."""
        return (self.dtype == other.dtype and np.array_equal(self.offsets, other.offsets)
                and np.array_equal(self.words.view(np.int64), other.words.view(np.int64)))


@dataclass(frozen=True, eq=False)
class MessageBatch:
    """The messages of one round: message ``j`` goes from ``src[j]`` to ``dst[j]`` carrying
    ``words[offsets[j]:offsets[j + 1]]``.

    Examples
    --------
    >>> b = MessageBatch.from_list([(0, 1, [5, 6]), (1, 0, [7])])
    >>> b.num_messages, b.num_words, b.payload(0).tolist()
    (2, 3, [5, 6])
    """

    src: np.ndarray
    dst: np.ndarray
    offsets: np.ndarray
    words: np.ndarray

    def __post_init__(self) -> None:
        for name in ("src", "dst", "offsets"):
            arr = getattr(self, name)
            if arr.ndim != 1 or arr.dtype != np.int64:
                raise ProtocolError(f"message {name} must be a 1-D int64 array, got {arr.dtype} {arr.shape}")
        if self.words.ndim != 1 or self.words.dtype not in WORD_DTYPES:
            raise ProtocolError(f"message words must be a 1-D int64 or float64 array, got {self.words.dtype}")
        m = self.src.shape[0]
        if self.dst.shape[0] != m or self.offsets.shape[0] != m + 1:
            raise ProtocolError(f"message arrays disagree: {m} sources, {self.dst.shape[0]} destinations, "
                                f"{self.offsets.shape[0]} offsets (need {m + 1})")
        if self.offsets[0] != 0 or self.offsets[-1] != self.words.shape[0]:
            raise ProtocolError("message offsets must start at 0 and end at len(words)")

    @property
    def num_messages(self) -> int:
        return self.src.shape[0]

    @property
    def num_words(self) -> int:
        return self.words.shape[0]

    @property
    def dtype(self) -> np.dtype:
        return self.words.dtype

    def lengths(self) -> np.ndarray:
        """Words carried by each message."""
        return np.diff(self.offsets)

    def payload(self, j: int) -> np.ndarray:
        return self.words[self.offsets[j]:self.offsets[j + 1]]

    @classmethod
    def empty(cls, dtype: np.dtype | type = np.int64) -> "MessageBatch":
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z.copy(), np.zeros(1, dtype=np.int64), np.zeros(0, dtype=dtype))

    @classmethod
    def from_list(cls, messages: Iterable[tuple[int, int, object]], dtype: np.dtype | type = np.int64) -> "MessageBatch":
        """Build from ``(src, dst, payload)`` triples, kept in the given order."""
        dtype = np.dtype(dtype)
        src, dst, payloads = [], [], []
        for s, d, p in messages:
            try:    # operator.index: a float id such as 1.7 is an error, not machine 1
                src.append(operator.index(s))
                dst.append(operator.index(d))
            except TypeError:
                raise ProtocolError(f"a message from machine {s!r} to {d!r}: machine ids must be integers") from None
            payloads.append(as_words(p, dtype, f"payload of a message from machine {int(s)}"))
        if not src:
            return cls.empty(dtype)
        return cls(np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64),
                   ragged_offsets([p.shape[0] for p in payloads]), np.concatenate(payloads).astype(dtype, copy=False))

    @classmethod
    def fixed_width(cls, src: np.ndarray, dst: np.ndarray, payloads: np.ndarray) -> "MessageBatch":
        """Messages that all carry the same number of words: ``payloads`` has shape (messages, width).

        Examples
        --------
        >>> b = MessageBatch.fixed_width(np.array([0, 0]), np.array([1, 2]), np.array([[1, 2], [3, 4]]))
        >>> b.offsets.tolist()
        [0, 2, 4]
        """
        payloads = np.asarray(payloads)
        if payloads.ndim != 2:
            raise ProtocolError(f"fixed-width payloads must have shape (messages, width), got {payloads.shape}")
        m, width = payloads.shape
        dtype = np.float64 if payloads.dtype.kind == "f" else np.int64
        return cls(np.asarray(src, dtype=np.int64).reshape(m), np.asarray(dst, dtype=np.int64).reshape(m),
                   np.arange(m + 1, dtype=np.int64) * width,
                   np.ascontiguousarray(payloads, dtype=dtype).reshape(m * width))


@dataclass(frozen=True, eq=False)
class Inbox:
    """What one machine received in the previous round, in delivery order.

    Iterating gives ``(source, payload)`` pairs; ``words`` is every payload concatenated.
    """

    sources: np.ndarray
    offsets: np.ndarray
    words: np.ndarray

    def __len__(self) -> int:
        return self.sources.shape[0]

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        for j in range(self.sources.shape[0]):
            yield int(self.sources[j]), self.words[self.offsets[j]:self.offsets[j + 1]]

    @property
    def total_words(self) -> int:
        return self.words.shape[0]


@dataclass(frozen=True, eq=False)
class Delivery:
    """A round's messages after routing: sorted by destination, stably (so each inbox lists its
    messages in the order they appear in the sent batch), with ``machine_offsets`` of length
    ``machines + 1`` delimiting each machine's messages.
    """

    messages: MessageBatch
    machine_offsets: np.ndarray

    @property
    def machines(self) -> int:
        return self.machine_offsets.shape[0] - 1

    @classmethod
    def empty(cls, machines: int, dtype: np.dtype | type = np.int64) -> "Delivery":
        return cls(MessageBatch.empty(dtype), np.zeros(machines + 1, dtype=np.int64))

    def word_offsets(self) -> np.ndarray:
        """Offsets into ``messages.words`` of each machine's inbox (length ``machines + 1``)."""
        return self.messages.offsets[self.machine_offsets]

    def words_per_machine(self) -> np.ndarray:
        """Words received by each machine."""
        return np.diff(self.word_offsets())

    def inbox(self, machine: int) -> Inbox:
        """The inbox of one machine (views)."""
        lo, hi = self.machine_offsets[machine], self.machine_offsets[machine + 1]
        offsets = self.messages.offsets[lo:hi + 1]
        return Inbox(self.messages.src[lo:hi], offsets - offsets[0],
                     self.messages.words[offsets[0]:offsets[-1]])

    def inbox_state(self) -> ClusterState:
        """Every inbox's words as a ragged cluster array (sources dropped)."""
        wo = self.word_offsets()
        return ClusterState(self.messages.words[wo[0]:wo[-1]], wo - wo[0])
