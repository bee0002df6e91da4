"""Run an experiment end to end: (re)train or load the weights, evaluate the grid.

Without training the shipped weights (:data:`~anna.experiments.specs.WEIGHTS_DIR`) are evaluated;
training needs torch (:mod:`anna.train`). Match2 with softmax heads trains one surrogate per
``β ∈ {0.1, 1, 10}``, evaluates each, and keeps as ``match2`` the one whose best grid cell has the
lowest error (ties: lowest mean over the grid); the paper reports β = 0.1 as best. Other head kinds
(``setup={"kind": "hashed", ...}``: trained through hash tables, :mod:`anna.train.hashed`) do not
use β: one run.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping

from ..errors import ParameterError
from ..train import InductionSetup, Match2Setup
from ..transformer import Transformer
from .evaluate import GridResult, Progress, evaluate_grid
from .specs import MATCH2_BETAS, WEIGHTS_DIR, Experiment
from .training import TrainingRecord, record_path

__all__ = ["ExperimentRun", "evaluate_experiment", "load_weights", "load_record", "run_experiment",
           "training_betas"]


@dataclass(frozen=True)
class ExperimentRun:
    """The evaluated grid, where the weights came from, and (Match2 retrained) every β's grid."""

    result: GridResult
    weights: Path
    record: TrainingRecord | None
    betas: tuple[tuple[float, GridResult], ...] = ()


def load_weights(task: str, directory: str | Path = WEIGHTS_DIR) -> Transformer:
    """The trained model ``<directory>/<task>.npz/.json`` (no torch needed)."""
    path = Path(directory) / task
    if not path.with_name(path.name + ".npz").exists():
        raise FileNotFoundError(f"no weights for {task!r} in {directory} (expected {path}.npz and .json); "
                                f"train them with `anna-mpc experiment {task} --train`")
    return Transformer.load(path)


def load_record(task: str, directory: str | Path = WEIGHTS_DIR) -> TrainingRecord | None:
    """The training record next to the weights, if there is one."""
    path = record_path(Path(directory) / task)
    return TrainingRecord.from_json(json.loads(path.read_text())) if path.exists() else None


def evaluate_experiment(experiment: Experiment, model: Transformer, *, weights: str = "",
                        progress: Progress | None = None) -> GridResult:
    """The grid of ``experiment`` on its test set (seeded by the setup, so always the same rows)."""
    inputs, targets = experiment.setup().test_set()
    return evaluate_grid(model, inputs, targets, experiment.ells, experiment.zs, family=experiment.family,
                         seeds=experiment.seeds, task=experiment.task, paper=experiment.paper, weights=weights,
                         progress=progress)


def training_betas(task: str, kind: str) -> tuple[float, ...]:
    """The β of each surrogate training trains for ``task`` and head ``kind``: Match2 with softmax
    heads sweeps :data:`~anna.experiments.specs.MATCH2_BETAS`; else ``()``, one run at the setup's β.

    Examples
    --------
    >>> training_betas("match2", "softmax"), training_betas("match2", "hashed"), training_betas("induction", "softmax")
    ((0.1, 1.0, 10.0), (), ())
    """
    return MATCH2_BETAS if task == "match2" and kind == "softmax" else ()


def _train_one(setup: Match2Setup | InductionSetup, stem: Path, threads: int, device: str,
               on_log: Callable[[int, float], None] | None) -> None:
    """Train ``setup`` into ``stem``'s files, resumable from ``<stem>.ckpt``.

    The checkpoint is removed once the run has ended and its record is written; a run stopped
    before that (interrupted, killed) keeps it, and the same call resumes from it.
    """
    from .training import train_to_file  # needs torch only here

    checkpoint = stem.with_name(stem.name + ".ckpt")
    if train_to_file(setup, stem, threads=threads, device=device, checkpoint=checkpoint, on_log=on_log) is not None:
        checkpoint.unlink(missing_ok=True)


def _train(experiment: Experiment, directory: Path, fields: dict, threads: int, device: str,
           on_log: Callable[[int, float], None] | None,
           progress: Progress | None) -> tuple[tuple[float, GridResult], ...]:
    """Train into ``directory``; Match2 with softmax heads returns every β's grid (else none)."""
    setup = experiment.setup(**fields)
    betas = training_betas(experiment.task, setup.kind)
    if not betas:
        _train_one(setup, directory / experiment.task, threads, device, on_log)
        return ()
    results = []
    for beta in betas:
        setup = experiment.setup(**{**fields, "temperature": beta})
        stem = directory / f"match2_beta{beta:g}"
        _train_one(setup, stem, threads, device, on_log)
        result = evaluate_experiment(experiment, Transformer.load(stem), weights=str(stem), progress=progress)
        results.append((beta, result, stem))
    _, _, stem = min(results, key=lambda item: (min(c.error for c in item[1].cells),
                                                sum(c.error for c in item[1].cells)))
    for suffix in (".npz", ".json", ".train.json"):
        shutil.copyfile(stem.with_name(stem.name + suffix), directory / f"match2{suffix}")
    return tuple((beta, result) for beta, result, _ in results)


def run_experiment(experiment: Experiment, *, train: bool = False, weights_dir: str | Path | None = None,
                   steps: int | None = None, threads: int = 1, device: str = "cpu",
                   setup: Mapping[str, object] | None = None,
                   on_log: Callable[[int, float], None] | None = None,
                   progress: Progress | None = None) -> ExperimentRun:
    """Evaluate ``experiment`` on the shipped weights, or retrain first (``train=True``).

    Parameters
    ----------
    weights_dir : path, optional
        Where to read (default: the shipped weights) or, with ``train``, write the weights
        (default: ``./experiment-weights``). Training keeps a checkpoint ``<task>.ckpt`` there
        while it runs (Match2's β sweep: ``match2_beta<β>.ckpt``), removed once the run has
        written its record; a run interrupted before that resumes from it when called again.
    steps : int, optional
        Training steps (default: the setup's schedule).
    threads : int
        torch threads for training.
    device : str
        Training device (``"cpu"``, ``"cuda"``, ``"cuda:N"``).
    setup : mapping, optional
        Fields of the training setup (:meth:`Experiment.setup`), e.g. ``{"kind": "hashed", "z": 2,
        "tables": (32, 4)}`` to train through hash tables; checked before anything is trained.
    """
    betas: tuple[tuple[float, GridResult], ...] = ()
    if setup and not train:
        raise ParameterError(f"setup fields {sorted(setup)} are for training (train=True); the weights read are "
                             f"evaluated as they are")
    if train:
        fields = {**(setup or {}), **({} if steps is None else {"steps": steps})}
        experiment.setup(**fields)  # a bad field fails here, before a directory is made
        directory = Path(weights_dir if weights_dir is not None else "experiment-weights")
        directory.mkdir(parents=True, exist_ok=True)
        betas = _train(experiment, directory, fields, threads, device, on_log, progress)
    else:
        directory = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    model = load_weights(experiment.task, directory)
    weights = directory / experiment.task
    chosen = [r for b, r in betas if b == model.layers[0].heads[0].temperature]
    if chosen:  # the kept β's grid was evaluated during training
        result = chosen[0]
    else:
        result = evaluate_experiment(experiment, model, weights=str(weights), progress=progress)
    return ExperimentRun(replace(result, weights=_label(weights)), weights, load_record(experiment.task, directory),
                         betas)


def _label(path: Path) -> str:
    """The weights path relative to the package for shipped files (stable across checkouts)."""
    try:
        return str(path.resolve().relative_to(WEIGHTS_DIR.parent.parent.parent))
    except ValueError:
        return str(path)
