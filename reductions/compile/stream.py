"""The residual stream of a compiled model: one token per machine, its state laid out exactly.

A token's row holds, at fixed offsets (:class:`StreamLayout`): its machine id; a ``halted`` flag
(set once a round passed in which nobody sent); ``sent`` (whether anybody sent in the current
round, from the global head); its kept memory (length, then every word as three limbs, see
:mod:`reductions.compile.layouts`); its outbox (count, then destination and length of each message,
then the words); its inbox for the round being received (count, then source, message index and
length of each message, then the words); and one region per routing head where attention writes
the averaged value vectors, plus one for the global head. Every stored number is an integer below
``2**53`` except head averages, so residual updates ``x + (target - x)`` are exact.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .layouts import LIMBS, limbs_to_words, words_to_limbs

__all__ = ["StreamLayout", "TokenState"]


@dataclass
class TokenState:
    """One machine's state as a token holds it (decoded)."""

    machine: int
    halted: bool = False
    sent: bool = False
    memory: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    outbox: list[tuple[int, np.ndarray]] = field(default_factory=list)
    inbox: list[tuple[int, int, np.ndarray]] = field(default_factory=list)


@dataclass(frozen=True)
class StreamLayout:
    """Offsets of the regions of a token's row.

    Parameters
    ----------
    s : int
        Words of memory, of outgoing and of incoming traffic per machine and round (the MPC limit).
    fanout : int
        Messages a machine may send in one round (outbox slots).
    heads : int
        Routing heads per layer (``alpha``).
    head_width : int
        Width of one routing head's value vector (the packet layout's width).

    Examples
    --------
    >>> lay = StreamLayout(s=4, fanout=2, heads=2, head_width=10)
    >>> st = TokenState(3, memory=np.array([5, -6]), outbox=[(1, np.array([7]))])
    >>> back = lay.decode(lay.encode(st))
    >>> back.machine, back.memory.tolist(), [(d, w.tolist()) for d, w in back.outbox]
    (3, [5, -6], [(1, [7])])
    """

    s: int
    fanout: int
    heads: int
    head_width: int

    def __post_init__(self) -> None:
        for name in ("s", "fanout", "heads", "head_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    # region offsets -------------------------------------------------------------------------
    @property
    def memory_at(self) -> int:
        return 3

    @property
    def outbox_at(self) -> int:
        return self.memory_at + 1 + LIMBS * self.s

    @property
    def inbox_at(self) -> int:
        return self.outbox_at + 1 + 2 * self.fanout + LIMBS * self.s

    @property
    def heads_at(self) -> int:
        return self.inbox_at + 1 + 3 * self.s + LIMBS * self.s

    def head_slice(self, head: int) -> slice:
        start = self.heads_at + head * self.head_width
        return slice(start, start + self.head_width)

    @property
    def global_at(self) -> int:
        return self.heads_at + self.heads * self.head_width

    @property
    def dim(self) -> int:
        return self.global_at + 1

    # encode / decode --------------------------------------------------------------------------
    def encode(self, state: TokenState) -> np.ndarray:
        """The row of a token in ``state`` (head regions zero)."""
        row = np.zeros(self.dim, dtype=np.float64)
        row[0:3] = (state.machine, float(state.halted), float(state.sent))
        self._put_words(row, self.memory_at, state.memory, "memory")
        o = self.outbox_at
        if len(state.outbox) > self.fanout:
            raise ValueError(f"machine {state.machine} sends {len(state.outbox)} messages, the stream has "
                             f"{self.fanout} outbox slots")
        row[o] = len(state.outbox)
        words = [np.asarray(w, dtype=np.int64) for _, w in state.outbox]
        for j, (dst, w) in enumerate(zip((d for d, _ in state.outbox), words)):
            row[o + 1 + 2 * j:o + 3 + 2 * j] = (dst, w.shape[0])
        self._put_limbs(row, o + 1 + 2 * self.fanout, np.concatenate(words) if words else np.zeros(0, np.int64),
                        "outbox")
        i = self.inbox_at
        if len(state.inbox) > self.s:
            raise ValueError(f"machine {state.machine} received {len(state.inbox)} messages, more than s = {self.s}")
        row[i] = len(state.inbox)
        for j, (src, index, w) in enumerate(state.inbox):
            row[i + 1 + 3 * j:i + 4 + 3 * j] = (src, index, len(w))
        inbox_words = [np.asarray(w, dtype=np.int64) for _, _, w in state.inbox]
        self._put_limbs(row, i + 1 + 3 * self.s, np.concatenate(inbox_words) if inbox_words else np.zeros(0, np.int64),
                        "inbox")
        return row

    def decode(self, row: np.ndarray) -> TokenState:
        """Inverse of :meth:`encode` (head regions ignored)."""
        state = TokenState(int(row[0]), bool(row[1]), bool(row[2]))
        m = self.memory_at
        state.memory = self._get_limbs(row, m + 1, int(row[m]))
        o = self.outbox_at
        count = int(row[o])
        lengths = [int(row[o + 2 + 2 * j]) for j in range(count)]
        words = self._get_limbs(row, o + 1 + 2 * self.fanout, sum(lengths))
        starts = np.cumsum([0] + lengths)
        state.outbox = [(int(row[o + 1 + 2 * j]), words[starts[j]:starts[j + 1]]) for j in range(count)]
        i = self.inbox_at
        count = int(row[i])
        heads = [(int(row[i + 1 + 3 * j]), int(row[i + 2 + 3 * j]), int(row[i + 3 + 3 * j])) for j in range(count)]
        words = self._get_limbs(row, i + 1 + 3 * self.s, sum(h[2] for h in heads))
        starts = np.cumsum([0] + [h[2] for h in heads])
        state.inbox = [(src, index, words[starts[j]:starts[j + 1]]) for j, (src, index, _) in enumerate(heads)]
        return state

    def _put_words(self, row: np.ndarray, at: int, words: np.ndarray, what: str) -> None:
        words = np.asarray(words, dtype=np.int64)
        row[at] = words.shape[0]
        self._put_limbs(row, at + 1, words, what)

    def _put_limbs(self, row: np.ndarray, at: int, words: np.ndarray, what: str) -> None:
        if words.shape[0] > self.s:
            raise ValueError(f"{what} of {words.shape[0]} words does not fit in s = {self.s}")
        row[at:at + LIMBS * words.shape[0]] = words_to_limbs(words).ravel()

    def _get_limbs(self, row: np.ndarray, at: int, count: int) -> np.ndarray:
        return limbs_to_words(row[at:at + LIMBS * count].reshape(count, LIMBS))
