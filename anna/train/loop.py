"""Adam on the surrogate's token-wise cross-entropy, resumable from a checkpoint.

The data is a pure function of the step (``batches(step) -> (inputs, targets)``), so a run stopped
after a checkpoint and resumed sees the same batches as an uninterrupted one. Targets equal to
:data:`IGNORE` do not count in the loss (e.g. the leading hop-count token of k-hop rows).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ._torch import require_torch
from .surrogate import TorchSurrogate

__all__ = ["IGNORE", "TrainConfig", "TrainLog", "train_surrogate", "token_errors"]

IGNORE = -100
"""Target value of a token that the loss and the error skip (torch's ``ignore_index``)."""

Batches = Callable[[int], "tuple[np.ndarray, np.ndarray]"]


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation schedule: Adam with a constant learning rate (the paper's recipe).

    ``grad_clip`` (optional, off by default) rescales the gradient to at most that global norm
    before each step.

    Examples
    --------
    >>> TrainConfig(steps=20000).learning_rate
    0.01
    >>> TrainConfig(steps=0)
    Traceback (most recent call last):
    ...
    ValueError: steps must be a positive integer, got 0
    """

    steps: int
    batch_size: int = 32
    learning_rate: float = 0.01
    threads: int = 1
    log_every: int = 100
    checkpoint_every: int = 1000
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "threads", "log_every", "checkpoint_every"):
            object.__setattr__(self, name, _positive_int(name, getattr(self, name)))
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"learning_rate must be a positive finite number, got {lr!r}")
        clip = self.grad_clip
        if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float))
                                 or not math.isfinite(clip) or clip <= 0):
            raise ValueError(f"grad_clip must be None or a positive finite number, got {clip!r}")


@dataclass(frozen=True)
class TrainLog:
    """What a run did: steps taken, the logged mean losses, wall time (this process only).

    Attributes
    ----------
    steps : int
        Total optimiser steps in the model (resumed ones included).
    losses : tuple of (int, float)
        ``(step, mean loss over the last log_every steps)``.
    seconds : float
        Wall time of training, summed over the resumed runs (as recorded in the checkpoint).
    resumed_from : int
        The step the run started at (0 for a fresh run).
    """

    steps: int
    losses: tuple[tuple[int, float], ...] = field(default=())
    seconds: float = 0.0
    resumed_from: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or not 0 <= self.resumed_from <= self.steps or self.seconds < 0:
            raise ValueError(f"inconsistent log: steps={self.steps}, resumed_from={self.resumed_from}, "
                             f"seconds={self.seconds}")

    @property
    def final_loss(self) -> float:
        return self.losses[-1][1] if self.losses else float("nan")


def _save_checkpoint(path: Path, surrogate: TorchSurrogate, optimizer, step: int, losses: list,
                     seconds: float) -> None:
    torch = require_torch()
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"step": step, "params": {k: v.detach().clone() for k, v in surrogate.params.items()},
                "optimizer": optimizer.state_dict(), "losses": [list(x) for x in losses],
                "seconds": seconds}, tmp)
    tmp.replace(path)  # atomic: a run killed while writing keeps the previous checkpoint


def train_surrogate(surrogate: TorchSurrogate, batches: Batches, config: TrainConfig, *,
                    checkpoint: str | Path | None = None,
                    on_log: Callable[[int, float], None] | None = None) -> TrainLog:
    """Train ``surrogate`` in place for ``config.steps`` steps in total.

    Parameters
    ----------
    surrogate : TorchSurrogate
    batches : callable ``step -> (inputs, targets)``
        ``inputs`` ``(B, N)`` token ids, ``targets`` ``(B, N)`` class ids or :data:`IGNORE`.
    config : TrainConfig
    checkpoint : path, optional
        Saved every ``config.checkpoint_every`` steps and at the end; when the file exists, the
        run resumes from it (weights, Adam state, step, loss log).
    on_log : callable ``(step, loss)``, optional
        Called every ``config.log_every`` steps with the mean loss since the previous call.
    """
    torch = require_torch()
    torch.set_num_threads(config.threads)
    optimizer = torch.optim.Adam(list(surrogate.params.values()), lr=config.learning_rate)
    start, losses, before = 0, [], 0.0
    path = None if checkpoint is None else Path(checkpoint)
    if path is not None and path.exists():
        state = torch.load(path, weights_only=True)
        with torch.no_grad():
            for name, p in surrogate.params.items():
                p.copy_(state["params"][name])
        optimizer.load_state_dict(state["optimizer"])
        start, losses = int(state["step"]), [tuple(x) for x in state["losses"]]
        before = float(state["seconds"])
    began = time.perf_counter()
    running, counted = 0.0, 0
    for step in range(start, config.steps):
        inputs, targets = batches(step)
        logits = surrogate(inputs)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 torch.as_tensor(targets).reshape(-1).long(), ignore_index=IGNORE)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {float(loss)} at step {step}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(list(surrogate.params.values()), config.grad_clip)
        optimizer.step()
        running, counted = running + loss.item(), counted + 1
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            losses.append((done, running / counted))
            running, counted = 0.0, 0
            if on_log is not None:
                on_log(done, losses[-1][1])
        if path is not None and (done % config.checkpoint_every == 0 or done == config.steps):
            _save_checkpoint(path, surrogate, optimizer, done, losses, before + time.perf_counter() - began)
    return TrainLog(steps=max(start, config.steps), losses=tuple(losses),
                    seconds=before + time.perf_counter() - began, resumed_from=start)


def token_errors(logits: np.ndarray, targets: np.ndarray) -> tuple[int, int]:
    """``(wrong, counted)`` over every token whose target is not :data:`IGNORE`; argmax decides.

    Examples
    --------
    >>> import numpy as np
    >>> token_errors(np.array([[[2.0, 1.0], [0.0, 3.0]]]), np.array([[0, 0]]))
    (1, 2)
    """
    logits, targets = np.asarray(logits), np.asarray(targets)
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {logits.shape} and targets {targets.shape} disagree")
    counted = targets != IGNORE
    wrong = (np.argmax(logits, axis=-1) != targets) & counted
    return int(wrong.sum()), int(counted.sum())
