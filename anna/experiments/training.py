"""Train a setup's surrogate and write the weights plus a record of the run (needs torch).

``train_to_file(setup, path)`` writes ``<path>.npz`` + ``<path>.json`` (the transformer, loadable
with :meth:`anna.transformer.Transformer.load` without torch) and ``<path>.train.json`` (the
:class:`TrainingRecord`: schedule, wall time, loss curve, surrogate test error).
"""
from __future__ import annotations

import dataclasses
import json
import math
import platform
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ParameterError
from ..train import InductionSetup, Match2Setup, TorchSurrogate, require_torch, token_errors, train_surrogate

__all__ = ["TrainingRecord", "device_name", "record_path", "surrogate_test_error", "train_to_file"]

Setup = Match2Setup | InductionSetup


def record_path(path: str | Path) -> Path:
    """``<path>.train.json`` for a weights path given with or without suffix.

    Examples
    --------
    >>> record_path("weights/match2.npz").name
    'match2.train.json'
    """
    path = Path(path)
    if path.suffix in (".npz", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".train.json")


@dataclass(frozen=True)
class TrainingRecord:
    """How shipped weights were made: the setup, seed, steps, time and the surrogate's test error.

    ``surrogate_test_error`` is the trained surrogate's own token error on the setup's test set
    (:func:`surrogate_test_error`); :attr:`kind` says which surrogate that was: softmax, lowrank or
    collision heads, or for ``kind="hashed"`` the heads through their tables (4 CPU-drawn sets).
    ``note`` says anything added after training (e.g. a recomputed error).

    Records written before the field was renamed carry ``softmax_test_error`` (whatever the kind):
    :meth:`from_json` reads it as ``surrogate_test_error``, and the read-only
    :attr:`softmax_test_error` is kept, deprecated.

    Examples
    --------
    >>> r = TrainingRecord("match2", {"steps": 10}, 0, 10, 1.5, ((10, 0.3),), 0.25, 1, "2.13.0")
    >>> TrainingRecord.from_json(r.to_json()) == r, r.kind
    (True, 'softmax')
    >>> old = {**r.to_json(), "setup": {"kind": "hashed"}, "softmax_test_error": 0.5}
    >>> del old["surrogate_test_error"]
    >>> record = TrainingRecord.from_json(old)
    >>> record.surrogate_test_error, record.kind
    (0.5, 'hashed')
    """

    task: str
    setup: dict
    seed: int
    steps: int
    seconds: float
    losses: tuple[tuple[int, float], ...]
    surrogate_test_error: float
    threads: int
    torch_version: str
    device: str = "cpu"
    device_name: str = ""
    diverged_at: int | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.seconds < 0 or not 0.0 <= self.surrogate_test_error <= 1.0:
            raise ParameterError(f"inconsistent record: steps={self.steps}, seconds={self.seconds}, "
                                 f"error={self.surrogate_test_error}")
        object.__setattr__(self, "losses", tuple((int(s), float(v)) for s, v in self.losses))

    @property
    def kind(self) -> str:
        """The heads trained (the setup's ``kind``; records of setups without one: ``"softmax"``)."""
        return self.setup.get("kind", "softmax")

    @property
    def softmax_test_error(self) -> float:
        """Deprecated name of :attr:`surrogate_test_error` (it was never softmax-only: see :attr:`kind`)."""
        warnings.warn("TrainingRecord.softmax_test_error is deprecated: use surrogate_test_error (and kind for "
                      "the surrogate it is the error of)", DeprecationWarning, stacklevel=2)
        return self.surrogate_test_error

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["losses"] = [list(x) for x in self.losses]
        return data

    @classmethod
    def from_json(cls, data: dict) -> TrainingRecord:
        """The record of :meth:`to_json`, or of an older record whose error key is ``softmax_test_error``."""
        data = dict(data)
        if _OLD_ERROR_KEY in data:
            if "surrogate_test_error" in data:
                raise ParameterError(f"a training record has both {_OLD_ERROR_KEY!r} and 'surrogate_test_error'; "
                                     f"expected one")
            data["surrogate_test_error"] = data.pop(_OLD_ERROR_KEY)
        return cls(**{**data, "losses": tuple(tuple(x) for x in data["losses"])})


_OLD_ERROR_KEY = "softmax_test_error"
"""The key of :attr:`TrainingRecord.surrogate_test_error` in records written before its rename."""


def _setup_json(setup: Setup) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(setup).items()}


def device_name(device: str) -> str:
    """A readable name of the training device (the GPU's name on CUDA, the CPU's otherwise).

    Examples
    --------
    >>> isinstance(device_name("cpu"), str)
    True
    """
    if device.startswith("cuda"):
        return require_torch().cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def surrogate_test_error(surrogate: TorchSurrogate, inputs: np.ndarray, targets: np.ndarray,
                         draws: int = 4) -> float:
    """The surrogate's token error on a test set (argmax, every non-ignored token).

    A hashed surrogate (:mod:`anna.train.hashed`) is evaluated through ``draws`` draws of its
    tables (hashing seeds ``0 .. draws-1``, noise step 0) and the errors averaged; its own
    hyperplanes, not :mod:`anna.lsh`'s, so the number is a check of training, and the grid of the
    transferred model is the result.
    """
    torch = require_torch()
    errors = []
    for draw in range(draws if surrogate.noise_size else 1):
        surrogate.draw_noise(draw)
        with torch.no_grad():
            logits = np.concatenate([surrogate(inputs[i:i + 64]).cpu().numpy()
                                     for i in range(0, inputs.shape[0], 64)])
        wrong, counted = token_errors(logits, targets)
        errors.append(wrong / counted)
    return float(np.mean(errors))


def train_to_file(setup: Setup, path: str | Path, *, seed: int = 0, threads: int = 1, device: str = "cpu",
                  checkpoint: str | Path | None = None,
                  on_log: Callable[[int, float], None] | None = None,
                  time_limit: float | None = None) -> TrainingRecord | None:
    """Train ``setup``'s surrogate from ``setup.template(seed)`` on ``device``; write weights and record.

    Batches are made on the device (``setup.device_batches``). ``checkpoint`` makes the run
    resumable (see :func:`anna.train.train_surrogate`); ``on_log`` defaults to one line per logged
    step on stderr. A run whose loss stops being finite is recorded (``diverged_at``) with its curve;
    its weights are written only if they are still finite.
    With ``time_limit`` (seconds) the run may stop early at a checkpoint: then nothing is written
    and ``None`` is returned; the same call again resumes it.
    """
    torch = require_torch()
    if on_log is None:
        def on_log(step: int, loss: float) -> None:
            print(f"[{setup.name}] step {step}/{setup.steps} loss {loss:.4f}", file=sys.stderr, flush=True)
    surrogate = TorchSurrogate(setup.template(seed), device=device, hashing=setup.hashing)
    log = train_surrogate(surrogate, setup.device_batches(seed, device), setup.train_config(threads, device),
                          checkpoint=checkpoint, on_log=on_log, time_limit=time_limit, seed=seed)
    if log.steps < setup.steps and log.diverged_at is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if all(np.isfinite(array).all() for array in surrogate.numpy_arrays().values()):
        error = surrogate_test_error(surrogate, *setup.test_set())
        surrogate.to_transformer().save(path)
    else:  # a diverged run whose weights are NaN: the record (curve, diverged_at) without weights
        error = math.nan
    record = TrainingRecord(setup.name, _setup_json(setup), seed, log.steps, log.seconds, log.losses,
                            error if math.isfinite(error) else 1.0, threads, torch.__version__.split("+")[0],
                            device=device, device_name=device_name(device), diverged_at=log.diverged_at)
    record_path(path).write_text(json.dumps(record.to_json(), indent=1))
    return record
