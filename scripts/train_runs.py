"""Train several surrogates at once, each resumable, within a wall-time budget (for the GPU machine).

    python scripts/train_runs.py --out DIR --device cuda --budget 480 \
        match2_beta0.1=match2:temperature=0.1 induction_paper=induction:learning_rate=0.01,grad_clip=none,steps=400000

Each ``NAME=TASK:KEY=VALUE,...`` trains ``TASK``'s setup (anna.train.Match2Setup or InductionSetup)
with the given fields in its own process, checkpointing to ``DIR/NAME.ckpt``; a finished run writes
``DIR/NAME.npz/.json/.train.json`` (anna.experiments.train_to_file). Runs stopped by the budget
resume from their checkpoint when the same command is given again. Each process logs to DIR/NAME.log.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def _value(text: str, key: str = ""):
    if text == "none" and key != "decay":  # decay=none is the name of the constant schedule
        return None
    if "x" in text and all(part.isdigit() for part in text.split("x")):  # tables per layer: 32x4
        return tuple(int(part) for part in text.split("x"))
    if text in ("true", "false"):
        return text == "true"
    low, dash, high = text.partition("-")
    if dash and low.isdigit() and high.isdigit():  # a range of hop counts: 0-8
        return tuple(range(int(low), int(high) + 1))
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_run(spec: str) -> tuple[str, str, dict]:
    name, _, rest = spec.partition("=")
    task, _, fields = rest.partition(":")
    overrides = {}
    for item in filter(None, fields.split(",")):
        key, _, value = item.partition("=")
        overrides[key] = _value(value, key)
    if not name or task not in ("match2", "induction"):
        raise SystemExit(f"bad run {spec!r}: expected NAME=match2|induction:KEY=VALUE,...")
    return name, task, overrides


def train_one(name: str, task: str, overrides: dict, out: Path, device: str, budget: float, seed: int) -> None:
    from anna.experiments.training import train_to_file
    from anna.train import InductionSetup, Match2Setup

    setup = (Match2Setup if task == "match2" else InductionSetup)(**overrides)
    began = time.perf_counter()
    record = train_to_file(setup, out / name, seed=seed, device=device, checkpoint=out / f"{name}.ckpt",
                           time_limit=budget)
    state = {"name": name, "finished": record is not None, "seconds": time.perf_counter() - began}
    if record is not None:
        state.update(steps=record.steps, surrogate_test_error=record.surrogate_test_error, kind=record.kind,
                     diverged_at=record.diverged_at, seconds_total=record.seconds)
    print(json.dumps(state), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds of training per run in this call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = [parse_run(spec) for spec in args.runs]
    if args.one:
        name, task, overrides = runs[0]
        train_one(name, task, overrides, args.out, args.device, args.budget, args.seed)
        return 0
    procs = []
    for (name, _, _), spec in zip(runs, args.runs):
        log = open(args.out / f"{name}.log", "a")
        procs.append((name, subprocess.Popen([sys.executable, __file__, "--one", "--out", str(args.out), "--device",
                                              args.device, "--budget", str(args.budget), "--seed", str(args.seed),
                                              spec], stdout=log, stderr=subprocess.STDOUT)))
    failed = 0
    for name, proc in procs:
        code = proc.wait()
        failed += code != 0
        print(f"{name}: exit {code}; last lines:", flush=True)
        lines = (args.out / f"{name}.log").read_text().splitlines()
        print("\n".join("   " + line for line in lines[-3:]), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
