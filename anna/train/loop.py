"""Adam on the surrogate's token-wise cross-entropy, on the CPU or a CUDA device, resumable.

The data is a pure function of the step (a :class:`~anna.train.data.BatchSource` made on the device,
or a numpy ``batches(step) -> (inputs, targets)``), so a run stopped after a checkpoint and resumed
sees the same batches as an uninterrupted one. Targets equal to :data:`IGNORE` do not count in the
loss (e.g. the leading hop-count token of k-hop rows).

One code path for both devices: a step fills static input buffers and runs forward, backward,
optional clipping and Adam; on CUDA that step is captured once in a CUDA graph and replayed
(:class:`TrainConfig` ``graph``), with the running loss kept on the device and read back only at
log lines, so nothing waits for the host between steps.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ParameterError, ShapeError
from ._torch import require_torch
from .data import IGNORE, BatchSource, NumpyBatches
from .surrogate import TorchSurrogate

__all__ = ["IGNORE", "TrainConfig", "TrainLog", "train_surrogate", "token_errors"]

Batches = Callable[[int], "tuple[np.ndarray, np.ndarray]"]


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation schedule: Adam with a constant learning rate (the paper's recipe), on a device.

    ``grad_clip`` (optional, off by default) rescales the gradient to at most that global norm
    before each step; ``warmup_steps`` (0 by default) ramps the learning rate linearly from
    ``learning_rate / warmup_steps`` to ``learning_rate`` over the first steps; ``decay="cosine"``
    then lowers it along a half cosine to 0 at ``steps``. All three are departures from the paper's
    recipe (Adam, constant lr), used only where it fails (docs/reproduction.md says where).

    ``device`` is ``"cpu"`` or ``"cuda"`` (``"cuda:N"``); ``graph`` captures one whole training step
    (forward, backward, clipping, Adam) in a CUDA graph and replays it (``"auto"``: on CUDA only).
    The arithmetic is the same either way; a captured step saves the kernel launches.

    Examples
    --------
    >>> TrainConfig(steps=20000).learning_rate
    0.01
    >>> TrainConfig(steps=0)
    Traceback (most recent call last):
    ...
    anna.errors.ParameterError: steps must be a positive integer, got 0
    >>> TrainConfig(steps=10, graph="yes")
    Traceback (most recent call last):
    ...
    anna.errors.ParameterError: graph must be one of 'auto', True, False, got 'yes'
    """

    steps: int
    batch_size: int = 32
    learning_rate: float = 0.01
    threads: int = 1
    log_every: int = 100
    checkpoint_every: int = 1000
    grad_clip: float | None = None
    warmup_steps: int = 0
    decay: str = "none"
    device: str = "cpu"
    graph: bool | str = "auto"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "threads", "log_every", "checkpoint_every"):
            object.__setattr__(self, name, _positive_int(name, getattr(self, name)))
        warmup = self.warmup_steps
        if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or warmup < 0:
            raise ParameterError(f"warmup_steps must be a non-negative integer, got {warmup!r}")
        object.__setattr__(self, "warmup_steps", int(warmup))
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise ParameterError(f"learning_rate must be a positive finite number, got {lr!r}")
        clip = self.grad_clip
        if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float))
                                 or not math.isfinite(clip) or clip <= 0):
            raise ParameterError(f"grad_clip must be None or a positive finite number, got {clip!r}")
        if self.decay not in ("none", "cosine"):
            raise ParameterError(f"decay must be 'none' or 'cosine', got {self.decay!r}")
        if not isinstance(self.device, str) or not (self.device == "cpu" or self.device == "cuda"
                                                    or (self.device.startswith("cuda:")
                                                        and self.device[5:].isdigit())):
            raise ParameterError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if not (self.graph == "auto" or isinstance(self.graph, bool)):
            raise ParameterError(f"graph must be one of 'auto', True, False, got {self.graph!r}")
        if self.graph is True and self.device == "cpu":
            raise ParameterError("graph=True captures a CUDA graph: it needs device='cuda'")

    def lr_at(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based).

        Examples
        --------
        >>> TrainConfig(steps=10, learning_rate=0.01, warmup_steps=4).lr_at(1)
        0.005
        """
        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        if self.decay == "cosine":
            done = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
            return self.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(done, 1.0)))
        return self.learning_rate

    @property
    def uses_graph(self) -> bool:
        return self.graph is True or (self.graph == "auto" and self.device != "cpu")


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
    diverged_at : int or None
        The logged step at which the mean loss was not finite; training stopped there.
    """

    steps: int
    losses: tuple[tuple[int, float], ...] = field(default=())
    seconds: float = 0.0
    resumed_from: int = 0
    diverged_at: int | None = None

    def __post_init__(self) -> None:
        if self.steps < 0 or not 0 <= self.resumed_from <= self.steps or self.seconds < 0:
            raise ParameterError(f"inconsistent log: steps={self.steps}, resumed_from={self.resumed_from}, "
                             f"seconds={self.seconds}")

    @property
    def final_loss(self) -> float:
        return self.losses[-1][1] if self.losses else float("nan")


def _save_checkpoint(path: Path, surrogate: TorchSurrogate, optimizer, step: int, losses: list,
                     seconds: float) -> None:
    torch = require_torch()
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"step": step, "params": {k: v.detach().cpu().clone() for k, v in surrogate.params.items()},
                "optimizer": optimizer.state_dict(), "losses": [list(x) for x in losses],
                "seconds": seconds}, tmp)
    tmp.replace(path)  # atomic: a run killed while writing keeps the previous checkpoint


def _load_checkpoint(path: Path, surrogate: TorchSurrogate, optimizer) -> tuple[int, list, float]:
    torch = require_torch()
    state = torch.load(path, weights_only=True, map_location=surrogate.device)
    with torch.no_grad():
        for name, p in surrogate.params.items():
            p.copy_(state["params"][name])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), [tuple(x) for x in state["losses"]], float(state["seconds"])


class _Step:
    """One training step on static buffers: ``inputs``/``targets`` are filled before each call;
    the loss is added to ``loss_sum`` on the device (read back only when a log line is due)."""

    def __init__(self, surrogate: TorchSurrogate, optimizer, config: TrainConfig, shape: tuple[int, ...]) -> None:
        torch = require_torch()
        device = surrogate.device
        self.surrogate, self.optimizer, self.config = surrogate, optimizer, config
        self.params = list(surrogate.params.values())
        self.inputs = torch.zeros(shape, dtype=torch.int64, device=device)
        self.targets = torch.full(shape, IGNORE, dtype=torch.int64, device=device)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.graph = None

    def body(self) -> None:
        torch = require_torch()
        logits = self.surrogate.logits(self.inputs)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), self.targets.reshape(-1),
                                                 ignore_index=IGNORE)
        loss.backward()
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        self.optimizer.step()
        self.loss_sum.add_(loss.detach())

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
            return
        self.optimizer.zero_grad(set_to_none=True)
        self.body()

    def capture(self) -> None:
        """Warm up on a side stream (lazy state, library handles), restore, then capture ``body``.

        The warm-up steps change the weights and Adam's state; both are put back exactly, so a
        captured run computes what an eager run computes from the same state.
        """
        torch = require_torch()
        saved_params = [p.detach().clone() for p in self.params]
        saved_state = {id(p): {k: v.clone() for k, v in self.optimizer.state[p].items()}
                       for p in self.params if p in self.optimizer.state}
        side = torch.cuda.Stream(device=self.surrogate.device)
        side.wait_stream(torch.cuda.current_stream(self.surrogate.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self.optimizer.zero_grad(set_to_none=True)
                self.body()
        torch.cuda.current_stream(self.surrogate.device).wait_stream(side)
        with torch.no_grad():
            for p, saved in zip(self.params, saved_params):
                p.copy_(saved)
                for key, value in self.optimizer.state[p].items():
                    if isinstance(value, torch.Tensor):
                        value.copy_(saved_state[id(p)][key]) if id(p) in saved_state else value.zero_()
            self.loss_sum.zero_()
        self.optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.body()


def _set_lr(optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        if isinstance(group["lr"], float):
            group["lr"] = value
        else:
            group["lr"].fill_(value)


def train_surrogate(surrogate: TorchSurrogate, batches: "Batches | BatchSource", config: TrainConfig, *,
                    checkpoint: str | Path | None = None,
                    on_log: Callable[[int, float], None] | None = None,
                    time_limit: float | None = None, seed: int = 0) -> TrainLog:
    """Train ``surrogate`` in place for ``config.steps`` steps in total.

    Parameters
    ----------
    surrogate : TorchSurrogate
        On ``config.device``.
    batches : BatchSource or callable ``step -> (inputs, targets)``
        A :class:`~anna.train.data.BatchSource` on the device (batches made there, in chunks), or a
        numpy callable (``inputs`` ``(B, N)`` token ids, ``targets`` ``(B, N)`` class ids or
        :data:`IGNORE`), copied to the device step by step.
    config : TrainConfig
    checkpoint : path, optional
        Saved every ``config.checkpoint_every`` steps and at the end; when the file exists, the
        run resumes from it (weights, Adam state, step, loss log). The batches of a step depend
        only on ``(seed, step)``, so a resumed run equals an uninterrupted one on the same device.
    on_log : callable ``(step, loss)``, optional
        Called every ``config.log_every`` steps with the mean loss since the previous call.

    time_limit : float, optional
        Seconds of wall time for this call: at the first log line past it the run checkpoints and
        returns early (``TrainLog.steps < config.steps``); calling again resumes. For runs that must
        fit a time-limited machine.
    seed : int
        Seeds the hyperplanes of a hashed surrogate (:mod:`anna.train.hashed`), drawn afresh before
        every step from ``(seed, step)``; unused otherwise.

    A mean loss that is not finite ends the run at that log line (``TrainLog.diverged_at``); the
    curve up to there is kept, and no checkpoint is written past the last finite one.
    """
    torch = require_torch()
    torch.set_num_threads(config.threads)
    if torch.device(config.device) != surrogate.device:
        raise ParameterError(f"the surrogate is on {surrogate.device}, the config asks for {config.device}")
    source = batches if isinstance(batches, BatchSource) else NumpyBatches(batches, surrogate.device)
    graph = config.uses_graph
    lr = torch.tensor(config.lr_at(0), device=surrogate.device) if graph else config.lr_at(0)
    optimizer = torch.optim.Adam(list(surrogate.params.values()), lr=lr, capturable=graph)
    start, losses, before = 0, [], 0.0
    path = None if checkpoint is None else Path(checkpoint)
    if path is not None and path.exists():
        start, losses, before = _load_checkpoint(path, surrogate, optimizer)
    for group in optimizer.param_groups:  # a loaded state may carry another run's lr object
        group["lr"] = torch.tensor(config.lr_at(start), device=surrogate.device) if graph else config.lr_at(start)
    began = time.perf_counter()
    if start >= config.steps:
        return TrainLog(steps=start, losses=tuple(losses), seconds=before, resumed_from=start)
    chunk_index = start // source.chunk_size
    chunk_inputs, chunk_targets = source.chunk(chunk_index)
    step_fn = _Step(surrogate, optimizer, config, tuple(chunk_inputs.shape[1:]))
    step_fn.inputs.copy_(chunk_inputs[start % source.chunk_size])
    step_fn.targets.copy_(chunk_targets[start % source.chunk_size])
    if graph:
        step_fn.capture()
    counted, diverged = 0, None
    noise_generator = torch.Generator(device=surrogate.device) if surrogate.noise_size else None
    for step in range(start, config.steps):
        if step // source.chunk_size != chunk_index:
            chunk_index = step // source.chunk_size
            chunk_inputs, chunk_targets = source.chunk(chunk_index)
        if step > start:
            step_fn.inputs.copy_(chunk_inputs[step % source.chunk_size])
            step_fn.targets.copy_(chunk_targets[step % source.chunk_size])
        if step <= config.warmup_steps or config.decay != "none":
            _set_lr(optimizer, config.lr_at(step))
        if noise_generator is not None:
            surrogate.draw_noise(seed, step, noise_generator)
        step_fn()
        counted += 1
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            mean = float(step_fn.loss_sum) / counted
            step_fn.loss_sum.zero_()
            counted = 0
            losses.append((done, mean))
            if on_log is not None:
                on_log(done, mean)
            if not math.isfinite(mean):
                diverged = done
                break
            out_of_time = time_limit is not None and time.perf_counter() - began > time_limit
        else:
            out_of_time = False
        if path is not None and (done % config.checkpoint_every == 0 or done == config.steps or out_of_time):
            _save_checkpoint(path, surrogate, optimizer, done, losses, before + time.perf_counter() - began)
        if out_of_time:
            break
    if surrogate.device.type == "cuda":
        torch.cuda.synchronize(surrogate.device)
    return TrainLog(steps=diverged if diverged is not None else done, losses=tuple(losses),
                    seconds=before + time.perf_counter() - began, resumed_from=start, diverged_at=diverged)


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
        raise ShapeError(f"logits {logits.shape} and targets {targets.shape} disagree")
    counted = targets != IGNORE
    wrong = (np.argmax(logits, axis=-1) != targets) & counted
    return int(wrong.sum()), int(counted.sum())
