"""The paper's experiments (docs/theory.md §6): a trained softmax surrogate run with Algorithm 1.

Train ``softmax(β q̂ k̂ᵀ) v`` with unit-norm queries and keys (:mod:`anna.train`, needs torch),
keep every weight, swap every attention for Algorithm 1 with angular LSH, and measure the test
error over a grid of (ℓ per layer, z), averaged over 10 hashing seeds.

- :mod:`.specs`: the two experiments (Match2; 1-hop induction heads), grids and paper numbers;
- :mod:`.evaluate`: the batched grid evaluation and its result dataclasses (no torch needed);
- :mod:`.run`: load the shipped weights (or retrain: softmax surrogates, or through hash tables as the
  shipped ones were) and evaluate; :mod:`.training` writes weights;
- :mod:`.report`, :mod:`.plots`: rich tables and the two PNG figures (matplotlib, extra ``plot``);
- :mod:`.cli`: ``anna-mpc experiment match2|induction``.

Examples
--------
>>> from anna.experiments import EXPERIMENTS
>>> EXPERIMENTS["match2"].zs, EXPERIMENTS["induction"].ells[0][:3]
((1, 2, 3, 4, 5, 6), (32, 40, 48))
"""
from .evaluate import FAMILIES, GridCell, GridResult, anna_logits, evaluate_grid, softmax_logits, surrogate_logits
from .run import ExperimentRun, evaluate_experiment, load_record, load_weights, run_experiment
from .specs import EXPERIMENTS, WEIGHTS_DIR, Experiment, compare_with_paper, grid_path
from .training import TrainingRecord, record_path

__all__ = [
    "EXPERIMENTS",
    "ExperimentRun",
    "Experiment",
    "FAMILIES",
    "GridCell",
    "GridResult",
    "TrainingRecord",
    "WEIGHTS_DIR",
    "anna_logits",
    "compare_with_paper",
    "evaluate_experiment",
    "evaluate_grid",
    "grid_path",
    "load_record",
    "load_weights",
    "record_path",
    "run_experiment",
    "softmax_logits",
    "surrogate_logits",
]
