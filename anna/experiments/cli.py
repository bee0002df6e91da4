"""``anna-mpc experiment match2|induction``: the paper's experiments (docs/theory.md §6).

Without ``--train`` the shipped weights (or ``--weights DIR``'s) are evaluated (minutes);
``--train`` trains with torch first: softmax surrogates by default, or with ``--kind hashed
--tables 32x4 --z 2 [--tau T] [--init PATH]`` through sampled hash tables (:mod:`anna.train.hashed`,
how the shipped weights were made). Prints the error grid and the paper's numbers beside ours;
``--json`` writes the grid, ``--plots`` the figure.
"""
from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import AnnaError
from ..train import weight_arrays
from ..train.tasks import KINDS
from .evaluate import FAMILIES
from .report import grid_tables, paper_table
from .run import run_experiment, training_betas
from .specs import EXPERIMENTS, WEIGHTS_DIR

__all__ = ["CPU_STEP_SECONDS", "register", "cmd_experiment", "cpu_training_seconds", "UsageError"]


CPU_STEP_SECONDS: dict[tuple[str, str], float] = {
    ("match2", "softmax"): 0.0086, ("match2", "collision"): 0.0085, ("match2", "hashed"): 0.0099,
    ("induction", "softmax"): 0.160, ("induction", "lowrank"): 0.147, ("induction", "collision"): 0.170,
    ("induction", "hashed"): 0.164,
}
"""Seconds of one training step on one CPU thread, per ``(task, head kind)``: the medians of
``benchmarks/results/train_steps_cpu_kinds.json`` (``python benchmarks/bench_train.py --kinds
softmax,lowrank,collision,hashed --cpu-only --steps 500``: torch 2.13.0, one thread of a shared
2-core x86_64 machine, about ±10 % between repetitions), ``hashed`` through the shipped models'
tables (Match2 ℓ = 8, z = 1; induction 32x4, z = 2). The logged CPU run of the shipped Match2 model
agrees: 197 s for 20,000 hashed steps, 9.9 ms a step (``anna/experiments/weights/match2.train.json``)."""


def cpu_training_seconds(task: str, kind: str, steps: int) -> float:
    """About how long ``--train`` takes on one CPU thread: ``steps`` steps of ``kind`` heads
    (:data:`CPU_STEP_SECONDS`) for each surrogate trained (Match2 softmax: one per β).

    Examples
    --------
    >>> [round(cpu_training_seconds("match2", kind, 20_000)) for kind in ("softmax", "hashed")]
    [516, 198]
    """
    return steps * CPU_STEP_SECONDS[task, kind] * max(1, len(training_betas(task, kind)))


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


def _tables(text: str) -> tuple[int, ...]:
    """``--tables``: ℓ per layer, ``8`` or ``32x4`` (positivity is the setup's check)."""
    try:
        return tuple(int(part) for part in text.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be the tables of each layer, e.g. 8 or 32x4, got {text!r}") from None


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


def _source(args: argparse.Namespace) -> str:
    """The header line naming the weights: the shipped ones, the directory read, or the one trained into."""
    if args.train:
        heads = {"hashed": "through hash tables", "softmax": "softmax surrogates"}.get(args.kind, f"{args.kind} heads")
        return f"weights: training {heads} into {args.weights or 'experiment-weights'}"
    if args.weights is not None:
        return f"weights: read from {args.weights}"
    return f"weights: shipped weights ({WEIGHTS_DIR})"


def _trained_heads(setup: dict) -> str:
    """What a training record's setup trained: softmax β, or the kind with its z (and tables).

    Examples
    --------
    >>> _trained_heads({"kind": "hashed", "z": 2, "tables": [32, 4], "temperature": 1.0})
    'hashed heads through tables ℓ = 32x4 of z = 2'
    >>> _trained_heads({"temperature": 0.1})
    'softmax heads, β = 0.1'
    """
    kind = setup.get("kind", "softmax")
    if kind == "hashed":
        return f"hashed heads through tables ℓ = {'x'.join(map(str, setup['tables']))} of z = {setup['z']}"
    if kind == "collision":
        return f"collision heads, z = {setup['z']}"
    return f"{kind} heads, β = {setup.get('temperature')}"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="the paper's experiments: trained surrogate, then ANNA with LSH over a grid")
    p.add_argument("task", choices=sorted(EXPERIMENTS), help="match2 or induction (1-hop induction heads)")
    p.add_argument("--train", action="store_true",
                   help="train the model with torch first (optional extra 'train'; heads: --kind)")
    p.add_argument("--weights", metavar="DIR", default=None,
                   help="weights directory to read (default: shipped) or, with --train, to write "
                        "(default: ./experiment-weights)")
    p.add_argument("--family", choices=sorted(FAMILIES), default=None,
                   help="angular LSH family (default: the experiment's, hyperplane)")
    p.add_argument("--seeds", type=_count(1, 10_000), default=None, help="hashing seeds per cell (default 10)")
    p.add_argument("--z", type=_count(1, 64), action="append", default=None, dest="zs", metavar="Z",
                   help="evaluate only this z (repeatable; default: the grid's); with --train --kind "
                        "hashed|collision also the z trained with (give it once; default 1; to see other z "
                        "values, evaluate the written weights again with --weights DIR and no --train)")
    p.add_argument("--quick", action="store_true", help="a small grid with fewer seeds")
    p.add_argument("--steps", type=_count(1, 10**9), default=None, help="training steps (with --train; default: the schedule)")
    p.add_argument("--threads", type=_count(1, 1024), default=1, help="torch threads for training (default 1)")
    p.add_argument("--device", type=_device, default="cpu",
                   help="training device: cpu (default), cuda or cuda:N (batches made there, steps in a CUDA graph)")
    p.add_argument("--kind", choices=KINDS, default="softmax",
                   help="with --train, the heads trained: softmax (default; Match2 trains β = 0.1, 1, 10 and "
                        "keeps the best), hashed (through sampled hash tables: --tables, --z, --tau; how the "
                        "shipped weights were made), collision, or lowrank (induction only)")
    p.add_argument("--tables", type=_tables, default=None, metavar="L[xL2]",
                   help="with --kind hashed: the hash tables ℓ of each layer, e.g. 8 (Match2) or 32x4 (induction)")
    p.add_argument("--tau", type=float, default=None,
                   help="with --kind hashed: temperature of the soft bits of the gradient (default 0.25)")
    p.add_argument("--init", metavar="PATH", default=None,
                   help="with --train: start from these weights (a saved model, .npz/.json) instead of a fresh "
                        "initialisation")
    p.add_argument("--json", metavar="PATH", default=None, help="write the grid as JSON")
    p.add_argument("--plots", metavar="DIR", default=None, help="write the figure (PNG) into DIR")
    p.set_defaults(func=cmd_experiment)


_SETUP_FLAGS = (("tables", "--tables"), ("tau", "--tau"), ("init", "--init"), ("z", "--z"), ("kind", "--kind"))
"""Setup fields and their flags, in the order a setup's error message is searched for the field it names."""


def _setup_fields(args: argparse.Namespace, experiment) -> dict:
    """The training setup's fields from ``--kind``, ``--z``, ``--tables``, ``--tau``, ``--init``.

    The setup checks them (:mod:`anna.train.tasks`); its error becomes a :class:`UsageError` that
    names the flag of the field the message is about.
    """
    given = [flag for flag, set_ in (("--kind", args.kind != "softmax"), ("--tables", args.tables is not None),
                                     ("--tau", args.tau is not None), ("--init", args.init is not None)) if set_]
    if not args.train:
        if given:
            raise UsageError(f"{given[0]} needs --train (the weights read are evaluated as they are)")
        return {}
    fields: dict = {"kind": args.kind}
    if args.tables is not None:
        fields["tables"] = args.tables
    if args.tau is not None:
        if args.kind != "hashed":
            raise UsageError(f"--tau is the soft-bit temperature of --kind hashed, not of --kind {args.kind}")
        fields["tau"] = args.tau
    if args.init is not None:
        fields["init"] = args.init
    if args.kind in ("collision", "hashed") and args.zs:
        if len(set(args.zs)) > 1:
            raise UsageError(f"--z: --kind {args.kind} trains with one z, got {sorted(set(args.zs))}; evaluate "
                             f"other z values by reading the written weights (--weights DIR, no --train)")
        fields["z"] = args.zs[0]
    try:
        setup = experiment.setup(**fields)
    except AnnaError as error:
        flag = next((flag for field, flag in _SETUP_FLAGS if re.search(rf"\b{field}\b", str(error))), "--kind")
        raise UsageError(f"{flag}: {error}") from None
    if args.init is not None:
        _check_init(setup, args.init)
    return fields


def _check_init(setup, path: str) -> None:
    """``--init``: a readable trained-mode model with the weight shapes of ``setup``'s own template."""
    try:
        shapes = {name: a.shape for name, a in weight_arrays(setup.template(0)).items()}
    except AnnaError as error:  # LoadError (no such file, bad format), ModelError (theory mode)
        raise UsageError(f"--init: {error}") from None
    expected = {name: a.shape for name, a in weight_arrays(replace(setup, init=None).template(0)).items()}
    if shapes != expected:
        name = min(set(shapes) ^ set(expected) or {n for n in shapes if shapes[n] != expected[n]})
        raise UsageError(f"--init: {path} is not a model of the {setup.name} setup: weight {name!r} is "
                         f"{shapes.get(name, 'missing')}, the setup's is {expected.get(name, 'missing')}")


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
    fields = _setup_fields(args, experiment)

    def on_log(step: int, loss: float) -> None:
        console.print(f"  step {step}: loss {loss:.4f}")

    if args.train and args.device == "cpu":
        setup = experiment.setup(**fields)
        steps, key = args.steps or setup.steps, (experiment.task, setup.kind)
        seconds, runs = cpu_training_seconds(*key, steps), len(training_betas(*key))
        if seconds > 600:
            console.print(f"[yellow]{steps:,} training steps of {setup.kind} heads"
                          f"{f' x {runs} runs (one per β)' if runs else ''} on the CPU take about "
                          f"{seconds / 3600:.1f} h (one thread, {1e3 * CPU_STEP_SECONDS[key]:.3g} ms a step); "
                          f"--device cuda or --steps N for less[/]", soft_wrap=True)
    console.rule(f"experiment {experiment.task}: {experiment.cells} cells x {experiment.seeds} seeds, "
                 f"{experiment.family} LSH")
    console.print(_source(args), soft_wrap=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("evaluating the grid", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        run = run_experiment(experiment, train=args.train, weights_dir=args.weights, steps=args.steps,
                             threads=args.threads, device=args.device, setup=fields, on_log=on_log,
                             progress=progress)
    result = run.result
    if run.record is not None:
        r = run.record
        where = r.device_name or r.device if r.device != "cpu" else f"{r.threads} CPU thread(s)"
        console.print(f"weights {result.weights}: trained {r.steps} steps in {r.seconds / 60:.1f} min "
                      f"({where}, torch {r.torch_version}), {_trained_heads(r.setup)}, "
                      f"final loss {r.losses[-1][1] if r.losses else float('nan'):.4f}")
    for beta, beta_result in run.betas:
        mean = sum(c.error for c in beta_result.cells) / len(beta_result.cells)
        console.print(f"  β = {beta:g}: surrogate error {beta_result.surrogate_error:.3f}, mean ANNA error over the "
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
