"""Training batches made on the training device, in chunks, as a pure function of ``(seed, step)``.

A :class:`BatchSource` hands the trainer ``chunk(index)``: the inputs and targets of the steps
``index * chunk_size .. (index + 1) * chunk_size - 1`` as two tensors of shape
``(chunk_size, batch, length)``, drawn by a torch generator on the device seeded with
``(seed, index)``. A run resumed at any step regenerates that step's chunk and sees the same
batches as an uninterrupted run on the same device (CPU and CUDA generators draw different
streams: a run is reproducible per device, and both streams follow the same distribution).

Two sources, one per task of docs/theory.md §6:

- :class:`Match2Rows`: rows drawn uniformly with replacement from the fixed balanced training set
  (moved to the device once);
- :class:`KHopRows`: fresh k-hop rows (no immediate repeats, hop count uniform over ``ks`` as the
  leading token), targets computed on the device by a vectorised ``find¹`` and its composition.
  :func:`khop_rows` is checked against :func:`anna.tasks.hop_k` row by row in the tests.

torch is imported when a source is built, not when this module is imported.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ParameterError, ShapeError
from ._torch import require_torch

__all__ = ["BatchSource", "KHopRows", "Match2Rows", "NumpyBatches", "chunk_seed", "khop_rows"]

IGNORE = -100
"""Target value of a token that the loss and the error skip (torch's ``ignore_index``); defined
here, where batches are made, and re-exported by :mod:`anna.train.loop`."""


def chunk_seed(seed: int, index: int, salt: int = 0x616E6E61) -> int:
    """The generator seed of chunk ``index`` of a run seeded ``seed`` (a 63-bit integer).

    Examples
    --------
    >>> chunk_seed(0, 1) == chunk_seed(0, 1) != chunk_seed(0, 2)
    True
    """
    state = np.random.SeedSequence([int(seed), int(index), int(salt)]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def _generator(device: Any, seed: int, index: int):
    torch = require_torch()
    generator = torch.Generator(device=device)
    generator.manual_seed(chunk_seed(seed, index))
    return generator


class BatchSource:
    """Interface of a chunked batch source; subclasses fill :meth:`chunk`.

    Attributes
    ----------
    batch_size, chunk_size : int
    device : torch.device
    """

    batch_size: int
    chunk_size: int
    device: Any

    def chunk(self, index: int):  # pragma: no cover - interface
        raise NotImplementedError

    def batch(self, step: int):
        """The inputs and targets of one step (a view into its chunk; for tests and evaluation)."""
        inputs, targets = self.chunk(step // self.chunk_size)
        return inputs[step % self.chunk_size], targets[step % self.chunk_size]


def _check_positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@dataclass
class Match2Rows(BatchSource):
    """Rows of a fixed training set ``(inputs, labels)``, drawn uniformly per step on ``device``."""

    inputs: np.ndarray
    labels: np.ndarray
    batch_size: int
    seed: int
    chunk_size: int = 1000
    device: Any = "cpu"
    _data: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        torch = require_torch()
        self.batch_size = _check_positive("batch_size", self.batch_size)
        self.chunk_size = _check_positive("chunk_size", self.chunk_size)
        inputs, labels = np.asarray(self.inputs), np.asarray(self.labels)
        if inputs.ndim != 2 or inputs.shape != labels.shape or inputs.shape[0] < 1:
            raise ShapeError(f"inputs and labels must be equal (rows, N) arrays, got {inputs.shape} and {labels.shape}")
        self.device = torch.device(self.device)
        self._data = (torch.as_tensor(inputs, dtype=torch.int64, device=self.device),
                      torch.as_tensor(labels, dtype=torch.int64, device=self.device))

    def chunk(self, index: int):
        torch = require_torch()
        inputs, labels = self._data
        rows = torch.randint(0, inputs.shape[0], (self.chunk_size, self.batch_size), device=self.device,
                             generator=_generator(self.device, self.seed, index))
        return inputs[rows], labels[rows]


def khop_rows(generator, count: int, n: int, alphabet_size: int, ks, *, device: Any = "cpu"):
    """``count`` k-hop rows made on ``device``: inputs ``(count, n + 1)``, targets ``(count, n + 1)``.

    The encoding of :mod:`anna.tasks.khop` and :func:`anna.train.encode_khop_targets`: inputs are
    ``[A + k, x_0 .. x_{n-1}]``; targets are ``IGNORE`` at the leading token, then ``hop_k(x)`` with
    ⊥ as class ``A``. Symbols have no immediate repeats (``x_t = x_{t-1} + s mod A``, ``s`` uniform
    in ``1 .. A-1``); each row's ``k`` is uniform over ``ks``.

    ``find¹`` is computed for all rows at once from the ``(count, n, n)`` table of equal earlier
    symbols, then composed ``k`` times per row.
    """
    torch = require_torch()
    device = torch.device(device)
    ks = torch.as_tensor(sorted({int(k) for k in ks}), dtype=torch.int64, device=device)
    if alphabet_size < 2 or n < 1 or count < 1 or ks.numel() == 0 or int(ks.min()) < 0:
        raise ParameterError(f"need count >= 1, n >= 1, alphabet_size >= 2 and hop counts >= 0, got count={count}, "
                         f"n={n}, alphabet_size={alphabet_size}, ks={ks.tolist()}")
    hop = ks[torch.randint(0, ks.numel(), (count,), device=device, generator=generator)]
    first = torch.randint(0, alphabet_size, (count, 1), device=device, generator=generator)
    shifts = torch.randint(1, alphabet_size, (count, n - 1), device=device, generator=generator)
    x = torch.cumsum(torch.cat([first, shifts], dim=1), dim=1) % alphabet_size
    positions = torch.arange(n, device=device)
    earlier = positions[None, :] < positions[:, None]                      # [p, r]: r < p
    same = (x[:, :, None] == x[:, None, :]) & earlier                      # (count, p, r)
    last = torch.where(same, positions[None, None, :], -1).amax(dim=2)     # last r < p with x[r] = x[p]
    f1 = torch.where(last >= 0, last + 1, -1)
    g = positions.expand(count, n).clone()
    for t in range(int(ks.max())):
        moved = f1.gather(1, g.clamp(min=0))
        g = torch.where((hop[:, None] > t) & (g >= 0), moved, g)
    targets = torch.where(g >= 0, x.gather(1, g.clamp(min=0)), alphabet_size)
    inputs = torch.cat([(alphabet_size + hop)[:, None], x], dim=1)
    targets = torch.cat([torch.full((count, 1), IGNORE, dtype=torch.int64, device=device), targets], dim=1)
    return inputs, targets


@dataclass
class KHopRows(BatchSource):
    """Fresh k-hop rows per step, made on ``device`` (see :func:`khop_rows`)."""

    n: int
    alphabet_size: int
    ks: tuple
    batch_size: int
    seed: int
    chunk_size: int = 500
    device: Any = "cpu"

    def __post_init__(self) -> None:
        torch = require_torch()
        self.batch_size = _check_positive("batch_size", self.batch_size)
        self.chunk_size = _check_positive("chunk_size", self.chunk_size)
        self.device = torch.device(self.device)

    def chunk(self, index: int):
        inputs, targets = khop_rows(_generator(self.device, self.seed, index), self.chunk_size * self.batch_size,
                                    self.n, self.alphabet_size, self.ks, device=self.device)
        shape = (self.chunk_size, self.batch_size, inputs.shape[1])
        return inputs.reshape(shape), targets.reshape(shape)


class NumpyBatches(BatchSource):
    """Adapter: a ``step -> (inputs, targets)`` numpy callable as a source of chunks of one step."""

    def __init__(self, batches, device: Any = "cpu") -> None:
        torch = require_torch()
        self.batches, self.device, self.chunk_size = batches, torch.device(device), 1
        self.batch_size = None

    def chunk(self, index: int):
        torch = require_torch()
        inputs, targets = self.batches(index)
        return (torch.as_tensor(np.asarray(inputs), dtype=torch.int64, device=self.device)[None],
                torch.as_tensor(np.asarray(targets), dtype=torch.int64, device=self.device)[None])
