"""``anna-mpc experiment match2|induction``: the paper's experiments (docs/theory.md §6).

Without ``--train`` the shipped weights are evaluated (minutes); ``--train`` retrains with torch
first. Prints the error grid and the paper's numbers beside ours; ``--json`` writes the grid,
``--plots`` the figure.
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .evaluate import FAMILIES
from .report import grid_tables, paper_table
from .run import run_experiment
from .specs import EXPERIMENTS

__all__ = ["register", "cmd_experiment", "UsageError"]


class UsageError(ValueError):
    """A bad command line: printed as one line on stderr, exit code 2 (names the flag)."""


def _count(low: int, high: int):
    """An argparse ``type``: an integer in ``[low, high]``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low} and <= {high}, got {value}")
        return value
    parse.__name__ = "integer"
    return parse


def _device(text: str) -> str:
    """``--device``: ``cpu``, ``cuda`` or ``cuda:N``."""
    if text in ("cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"must be cpu, cuda or cuda:N, got {text!r}")


def _check_writable(flag: str, path: str | None, directory: bool) -> None:
    if path is None:
        return
    target = Path(path)
    if target.exists() and target.is_dir() != directory:
        raise UsageError(f"{flag}: {target} exists and is {'not ' if directory else ''}a directory")
    existing = target if directory else target.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UsageError(f"{flag}: {target} cannot be written ({existing} is not a writable directory)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="the paper's experiments: trained surrogate, then ANNA with LSH over a grid")
    p.add_argument("task", choices=sorted(EXPERIMENTS), help="match2 or induction (1-hop induction heads)")
    p.add_argument("--train", action="store_true", help="retrain the surrogate with torch first (optional extra 'train')")
    p.add_argument("--weights", metavar="DIR", default=None,
                   help="weights directory to read (default: shipped) or, with --train, to write "
                        "(default: ./experiment-weights)")
    p.add_argument("--family", choices=sorted(FAMILIES), default=None,
                   help="angular LSH family (default: the experiment's, hyperplane)")
    p.add_argument("--seeds", type=_count(1, 10_000), default=None, help="hashing seeds per cell (default 10)")
    p.add_argument("--z", type=_count(1, 64), action="append", default=None, dest="zs", metavar="Z",
                   help="evaluate only this z (repeatable; default: the grid's, e.g. the training z of "
                        "collision heads)")
    p.add_argument("--quick", action="store_true", help="a small grid with fewer seeds")
    p.add_argument("--steps", type=_count(1, 10**9), default=None, help="training steps (with --train; default: the schedule)")
    p.add_argument("--threads", type=_count(1, 1024), default=1, help="torch threads for training (default 1)")
    p.add_argument("--device", type=_device, default="cpu",
                   help="training device: cpu (default), cuda or cuda:N (batches made there, steps in a CUDA graph)")
    p.add_argument("--json", metavar="PATH", default=None, help="write the grid as JSON")
    p.add_argument("--plots", metavar="DIR", default=None, help="write the figure (PNG) into DIR")
    p.set_defaults(func=cmd_experiment)


def cmd_experiment(args: argparse.Namespace, console: Console) -> int:
    _check_writable("--json", args.json, directory=False)
    _check_writable("--plots", args.plots, directory=True)
    if args.steps is not None and not args.train:
        raise UsageError("--steps needs --train (the shipped weights are evaluated as they are)")
    if args.weights is not None and not args.train and not Path(args.weights).is_dir():
        raise UsageError(f"--weights: {args.weights} is not a directory")
    experiment = EXPERIMENTS[args.task]
    if args.quick:
        experiment = experiment.quick()
    changes = {}
    if args.family is not None:
        changes["family"] = args.family
    if args.seeds is not None:
        changes["seeds"] = args.seeds
    if args.zs:
        changes["zs"] = tuple(sorted(set(args.zs)))
    if changes:
        experiment = replace(experiment, **changes)

    def on_log(step: int, loss: float) -> None:
        console.print(f"  step {step}: loss {loss:.4f}")

    if args.train and args.device == "cpu":
        steps = args.steps or experiment.setup().steps
        per_step = 0.006 if experiment.task == "match2" else 0.12   # benchmarks/results/train_steps.json, 1 thread
        if steps * per_step > 600:
            console.print(f"[yellow]{steps:,} training steps on the CPU take about {steps * per_step / 3600:.1f} h "
                          f"(one thread); --device cuda or --steps N for less[/]")
    console.rule(f"experiment {experiment.task}: {experiment.cells} cells x {experiment.seeds} seeds, "
                 f"{experiment.family} LSH{', retraining' if args.train else ', shipped weights'}")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("evaluating the grid", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        run = run_experiment(experiment, train=args.train, weights_dir=args.weights, steps=args.steps,
                             threads=args.threads, device=args.device, on_log=on_log, progress=progress)
    result = run.result
    if run.record is not None:
        r = run.record
        where = r.device_name or r.device if r.device != "cpu" else f"{r.threads} CPU thread(s)"
        console.print(f"weights {result.weights}: trained {r.steps} steps in {r.seconds / 60:.1f} min "
                      f"({where}, torch {r.torch_version}), β = {r.setup.get('temperature')}, "
                      f"final loss {r.losses[-1][1] if r.losses else float('nan'):.4f}")
    for beta, beta_result in run.betas:
        mean = sum(c.error for c in beta_result.cells) / len(beta_result.cells)
        console.print(f"  β = {beta:g}: softmax error {beta_result.softmax_error:.3f}, mean ANNA error over the "
                      f"grid {mean:.3f}")
    for table in grid_tables(result):
        console.print(table)
    console.print(paper_table(result))
    console.print(f"evaluated {len(result.cells)} cells x {experiment.seeds} seeds on {result.test_rows} test rows "
                  f"in {result.seconds:.1f} s")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result.to_json(), indent=1))
        console.print(f"wrote {path}")
    if args.plots:
        from .plots import plot_grid
        name = "match2_error_vs_ell.png" if result.task == "match2" else "induction_heatmap.png"
        console.print(f"wrote {plot_grid(result, Path(args.plots) / name)}")
    return 0
