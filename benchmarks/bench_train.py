"""Time one training step of both paper surrogates on the CPU and on a GPU, in one table.

    python benchmarks/bench_train.py [--steps 200] [--json PATH] [--threads 1] [--kinds softmax,hashed] [--cpu-only]

For each surrogate (Match2: 1 layer, m = 64, N = 32; induction heads: 2 causal layers, m = 128,
N = 101; batch 32, float32, Adam) and each device that is present (``cpu``; ``cuda`` when torch
sees a GPU), the median over 5 repetitions of the wall time of ``--steps`` training steps divided
by ``--steps``, after 20 warm-up steps, for:

* ``eager``: the step run op by op (:class:`anna.train.loop._Step` without capture);
* ``graph`` (CUDA only): the same step captured once in a CUDA graph and replayed -- what
  :func:`anna.train.train_surrogate` does on CUDA.

Batches come from the setup's device batch source (made on the device), one chunk, copied into
the step's buffers every step as in training; the time of making chunks is reported apart
(``chunk_seconds``: one chunk of 500 steps' rows). ``speedup_vs_cpu`` = CPU eager / this.
A JSON record goes to ``--json`` (default ``benchmarks/results/train_steps.json``).

``--kinds`` times other head kinds (default: softmax only): ``lowrank`` (induction only),
``collision`` (z = 1) and ``hashed``, trained through the shipped models' tables (Match2: ℓ = 8,
z = 1; induction: ℓ = 32x4, z = 2) with fresh hyperplanes drawn before every step as in training.
``benchmarks/results/train_steps_cpu_kinds.json`` (``--kinds softmax,lowrank,collision,hashed
--cpu-only``) holds the per-step CPU times ``anna-mpc experiment --train`` estimates run times from
(:data:`anna.experiments.cli.CPU_STEP_SECONDS`).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def _sync(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


HASHED_TABLES = {"match2": {"tables": (8,), "z": 1}, "induction": {"tables": (32, 4), "z": 2}}
"""The tables ``--kinds hashed`` trains through: the shipped models' (anna/experiments/weights/*.train.json)."""


def kind_setups(kinds: list[str]) -> list:
    """The paper's two setups with each head kind of ``kinds`` (lowrank: induction only)."""
    from anna.train import InductionSetup, Match2Setup

    return [cls(kind=kind, **(HASHED_TABLES[cls.name] if kind == "hashed" else {}))
            for kind in kinds for cls in (Match2Setup, InductionSetup) if kind != "lowrank" or cls is InductionSetup]


def time_steps(setup, device_name: str, graph: bool, steps: int, threads: int) -> dict:
    import torch

    from anna.train import TorchSurrogate
    from anna.train.loop import _Step

    torch.set_num_threads(threads)
    config = setup.train_config(threads=threads, device=device_name)
    surrogate = TorchSurrogate(setup.template(0), device=device_name, hashing=setup.hashing)
    noise = torch.Generator(device=surrogate.device) if surrogate.noise_size else None
    lr = torch.tensor(config.learning_rate, device=surrogate.device) if graph else config.learning_rate
    optimizer = torch.optim.Adam(list(surrogate.params.values()), lr=lr, capturable=graph)
    began = time.perf_counter()
    inputs, targets = setup.device_batches(0, device_name, chunk_size=500).chunk(0)
    _sync(torch, surrogate.device)
    chunk_seconds = time.perf_counter() - began
    step = _Step(surrogate, optimizer, config, tuple(inputs.shape[1:]))
    step.inputs.copy_(inputs[0])
    step.targets.copy_(targets[0])
    if graph:
        step.capture()

    def run(count: int, offset: int) -> None:
        for i in range(count):
            step.inputs.copy_(inputs[(offset + i) % inputs.shape[0]])
            step.targets.copy_(targets[(offset + i) % inputs.shape[0]])
            if noise is not None:  # a hashed surrogate: fresh hyperplanes every step, as train_surrogate draws
                surrogate.draw_noise(0, offset + i, noise)
            step()

    run(20, 0)
    _sync(torch, surrogate.device)
    times = []
    for repeat in range(5):
        began = time.perf_counter()
        run(steps, 20 + repeat * steps)
        _sync(torch, surrogate.device)
        times.append((time.perf_counter() - began) / steps)
    loss = float(step.loss_sum)
    return {"surrogate": setup.name, "kind": setup.kind, "device": device_name, "mode": "graph" if graph else "eager",
            "step_ms": 1e3 * statistics.median(times), "step_ms_all": [1e3 * t for t in times],
            "chunk_seconds": chunk_seconds, "finite_loss": loss == loss and abs(loss) != float("inf")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--json", default="benchmarks/results/train_steps.json")
    parser.add_argument("--kinds", default="softmax",
                        help="head kinds, comma-separated: softmax, lowrank, collision, hashed (default softmax)")
    parser.add_argument("--cpu-only", action="store_true", help="time the CPU only, even where a GPU is present")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    from anna.train.tasks import KINDS
    if not kinds or set(kinds) - set(KINDS):
        parser.error(f"--kinds: each of {', '.join(KINDS)}, got {args.kinds!r}")
    try:
        import torch
    except ImportError:
        print("bench_train needs torch (pip install torch==2.13.0)", file=sys.stderr)
        return 2
    setups = kind_setups(kinds)
    variants = [("cpu", False)]
    gpu = torch.cuda.is_available() and not args.cpu_only
    if gpu:
        variants += [("cuda", False), ("cuda", True)]
    rows = [time_steps(setup, device, graph, args.steps if device != "cpu" else max(20, args.steps // 10),
                       args.threads)
            for setup in setups for device, graph in variants]
    for row in rows:
        key = (row["surrogate"], row["kind"], "cpu")
        cpu = next(r for r in rows if (r["surrogate"], r["kind"], r["device"]) == key)
        row["speedup_vs_cpu"] = cpu["step_ms"] / row["step_ms"]
    table = Table(title="one training step (batch 32, Adam), median of 5")
    for column in ("surrogate", "kind", "device", "mode", "ms/step", "x cpu", "chunk s"):
        table.add_column(column, justify="left" if column in ("surrogate", "kind", "device", "mode") else "right")
    for row in rows:
        table.add_row(row["surrogate"], row["kind"], row["device"], row["mode"], f"{row['step_ms']:.3f}",
                      f"{row['speedup_vs_cpu']:.1f}", f"{row['chunk_seconds']:.3f}")
    Console(width=100).print(table)
    record = {"benchmark": "bench_train", "steps": args.steps, "threads": args.threads,
              "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "gpu": torch.cuda.get_device_name(0) if gpu else None, "rows": rows}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
