"""Beyond the paper: the depth separation of k-hop on trained models (softmax, ANNA, low-rank).

docs/theory.md §4 (Thm 5.6): depth about ``log k`` suffices for k-hop with softmax attention or ANNA,
while low-rank (kernel) attention needs depth about ``k`` or a much larger width. Here that is
measured on trained models: on the k-hop task of the predecessor (N = 100, |Σ| = 4, the hop count
as the leading token, k = 0 .. ``max_k`` mixed in training), one softmax surrogate per depth
(``depths``) is trained and then transferred to ANNA (Algorithm 1, hyperplane LSH, the same
weights), and one low-rank model (``φ = elu + 1``, the linear-transformer kernel, on unit-norm
queries and keys scaled by ``√m``) of the same width and depth is trained on the same data. :func:`evaluate_separation` reports the token error of
each per (k, depth).

Training runs on a GPU with ``scripts/train_runs.py`` (the run names of :meth:`SeparationSpec.runs`);
evaluation needs only numpy and numba::

    python scripts/train_runs.py --out DIR --device cuda $(python -m anna.experiments.separation --runs)
    python -m anna.experiments.separation --weights DIR --json sep.json --plot sep.png
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ParameterError
from ..tasks import generate_khop_batch
from ..train.loop import token_errors
from ..train.tasks import InductionSetup, encode_khop_targets
from ..transformer import Transformer
from .evaluate import evaluate_grid, softmax_logits
from .training import record_path

__all__ = ["SeparationResult", "SeparationSpec", "evaluate_separation", "plot_separation", "separation_table"]

METHODS = ("softmax", "anna", "lowrank")


@dataclass(frozen=True)
class SeparationSpec:
    """What to train and how to evaluate it.

    Examples
    --------
    >>> spec = SeparationSpec()
    >>> spec.runs()[0]
    'khop_softmax_d2=induction:kind=softmax,depth=2,train_ks=0-8,test_k=8,steps=25000,warmup_steps=1000,learning_rate=0.001'
    >>> len(spec.runs())
    10
    """

    max_k: int = 8
    depths: tuple[int, ...] = (2, 3, 4, 5, 6)
    n: int = 100
    alphabet_size: int = 4
    steps: int = 25_000
    warmup_steps: int = 1000
    learning_rate: float = 0.001
    test_size: int = 32
    ell: int = 64
    z: int = 1
    seeds: int = 5
    test_seed: int = 7

    def __post_init__(self) -> None:
        if self.max_k < 1 or not self.depths or min(self.depths) < 1 or self.steps < 1 or self.test_size < 1:
            raise ParameterError(f"need max_k >= 1, depths >= 1, steps >= 1, test_size >= 1; got {self}")
        if self.ell < 1 or self.z < 1 or self.seeds < 1:
            raise ParameterError(f"need ell, z, seeds >= 1; got ell={self.ell}, z={self.z}, seeds={self.seeds}")

    def name(self, kind: str, depth: int) -> str:
        return f"khop_{kind}_d{depth}"

    def setup(self, kind: str, depth: int) -> InductionSetup:
        """The training setup: the induction recipe with k = 0 .. max_k mixed, ``depth`` layers."""
        return InductionSetup(n=self.n, alphabet_size=self.alphabet_size, train_ks=tuple(range(self.max_k + 1)),
                              test_k=self.max_k, depth=depth, kind=kind, steps=self.steps,
                              warmup_steps=self.warmup_steps, learning_rate=self.learning_rate,
                              test_size=self.test_size)

    def runs(self) -> list[str]:
        """``scripts/train_runs.py`` specifications of every model."""
        return [f"{self.name(kind, depth)}=induction:kind={kind},depth={depth},train_ks=0-{self.max_k},"
                f"test_k={self.max_k},steps={self.steps},warmup_steps={self.warmup_steps},"
                f"learning_rate={self.learning_rate:g}"
                for kind in ("softmax", "lowrank") for depth in self.depths]

    def test_set(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``test_size`` fresh rows with hop count ``k`` (seeded by ``test_seed`` and ``k``)."""
        inputs, targets = generate_khop_batch(self.test_size, self.n, self.alphabet_size, k,
                                              seed=self.test_seed * 1000 + k)
        return inputs, encode_khop_targets(targets, self.alphabet_size)


@dataclass(frozen=True)
class SeparationResult:
    """Token errors per (method, depth, k); ``errors[method][depth][k]``."""

    spec: SeparationSpec
    errors: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"spec": {**asdict(self.spec), "depths": list(self.spec.depths)},
                "errors": {m: {str(d): {str(k): None if math.isnan(e) else e for k, e in ks.items()} for d, ks in by_depth.items()}
                           for m, by_depth in self.errors.items()},
                "seconds": self.seconds}

    @classmethod
    def from_json(cls, data: dict) -> SeparationResult:
        spec = SeparationSpec(**{**data["spec"], "depths": tuple(data["spec"]["depths"])})
        errors = {m: {int(d): {int(k): math.nan if e is None else float(e) for k, e in ks.items()} for d, ks in by_depth.items()}
                  for m, by_depth in data["errors"].items()}
        return cls(spec, errors, float(data["seconds"]))


def _error(logits: np.ndarray, targets: np.ndarray) -> float:
    wrong, counted = token_errors(logits, targets)
    return wrong / counted


def evaluate_separation(directory: str | Path, spec: SeparationSpec = SeparationSpec(), *,
                        progress=None) -> SeparationResult:
    """Errors of every trained model in ``directory`` (files named :meth:`SeparationSpec.name`).

    Softmax: the trained surrogate; ANNA: the same weights with Algorithm 1 in every layer
    (hyperplane LSH, ``ell`` tables of ``z`` functions per layer, mean over ``seeds`` hashing
    seeds); low-rank: the trained kernel model. A missing model is an error naming the file.
    """
    began = time.perf_counter()
    directory = Path(directory)
    errors: dict = {method: {} for method in METHODS}
    for depth in spec.depths:
        softmax = _trained(directory, spec.name("softmax", depth))
        lowrank = _trained(directory, spec.name("lowrank", depth))
        for method in METHODS:
            errors[method][depth] = {}
        for k in range(spec.max_k + 1):
            inputs, targets = spec.test_set(k)
            nan = math.nan
            errors["softmax"][depth][k] = nan if softmax is None else _error(softmax_logits(softmax, inputs), targets)
            errors["anna"][depth][k] = nan if softmax is None else evaluate_grid(
                softmax, inputs, targets, [(spec.ell,)] * depth, (spec.z,), seeds=spec.seeds).cells[0].error
            errors["lowrank"][depth][k] = nan if lowrank is None else _error(
                np.stack([lowrank(row) for row in inputs]), targets)
            if progress is not None:
                progress(depth, k)
    return SeparationResult(spec, errors, time.perf_counter() - began)


def _trained(directory: Path, name: str) -> Transformer | None:
    """The trained model ``name``, or ``None`` for a run that diverged (its record says so, no weights)."""
    path = directory / name
    if path.with_name(name + ".npz").exists():
        return Transformer.load(path)
    record = record_path(path)
    if record.exists() and json.loads(record.read_text()).get("diverged_at") is not None:
        return None
    raise FileNotFoundError(f"no trained model {path}.npz: train it with scripts/train_runs.py "
                            f"(python -m anna.experiments.separation --runs lists the runs)")


def _cell(error: float) -> str:
    return "div." if math.isnan(error) else f"{error:.2f}"


def separation_table(result: SeparationResult):
    """A rich table: one row per (method, depth), one column per k."""
    from rich.table import Table

    ks = range(result.spec.max_k + 1)
    table = Table(title=f"k-hop token error (N = {result.spec.n}, |Σ| = {result.spec.alphabet_size}); "
                        f"ANNA: ℓ = {result.spec.ell}, z = {result.spec.z}")
    table.add_column("method")
    table.add_column("L", justify="right")
    for k in ks:
        table.add_column(f"k={k}", justify="right")
    for method in METHODS:
        for depth in result.spec.depths:
            table.add_row(method, str(depth), *(_cell(result.errors[method][depth][k]) for k in ks))
    return table


def plot_separation(result: SeparationResult, path: str | Path) -> Path:
    """Error against k, one panel per method, one line per depth (matplotlib, extra ``plot``)."""
    from .plots import require_pyplot

    plt = require_pyplot()
    fig, axes = plt.subplots(1, len(METHODS), figsize=(4 * len(METHODS), 3.4), sharey=True)
    ks = list(range(result.spec.max_k + 1))
    for axis, method in zip(axes, METHODS):
        for depth in result.spec.depths:
            axis.plot(ks, [result.errors[method][depth][k] for k in ks], marker="o", label=f"L = {depth}")
        axis.set_title(method)
        axis.set_xlabel("hops k")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("token error")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", action="store_true", help="print the training runs and exit")
    parser.add_argument("--weights", metavar="DIR", help="directory of the trained models")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--plot", metavar="PATH")
    args = parser.parse_args(argv)
    spec = SeparationSpec()
    if args.runs:
        print(" ".join(spec.runs()))
        return 0
    if not args.weights:
        parser.error("--weights DIR is required (or --runs)")
    from rich.console import Console

    result = evaluate_separation(args.weights, spec)
    Console().print(separation_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_json(), indent=1))
    if args.plot:
        print(f"wrote {plot_separation(result, args.plot)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
