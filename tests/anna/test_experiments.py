"""anna.experiments: the batched ANNA evaluation equals the transformer's own forward pass, the
shipped weights reproduce the recorded grids, and the CLI writes the JSON and figures.

None of these tests needs torch. The full-grid reproductions are marked slow; a sub-grid of each
(same test rows, same seeds: cells are independent, so a sub-grid's errors are the recorded ones)
runs in CI.
"""
import json
import sys
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from anna.experiments import (
    EXPERIMENTS,
    FAMILIES,
    WEIGHTS_DIR,
    GridCell,
    GridResult,
    anna_logits,
    compare_with_paper,
    evaluate_experiment,
    evaluate_grid,
    grid_path,
    load_record,
    load_weights,
    run_experiment,
    softmax_logits,
    surrogate_logits,
)
from anna.lsh import LSHConfig
from anna.train import InductionSetup, Match2Setup, token_errors
from anna.transformer import init_transformer

TASKS = ("match2", "induction")


def _reference_logits(model, inputs, lsh, seed):
    anna_model = model.with_attention("anna", lsh=list(lsh), seed=seed)
    return np.stack([anna_model(row) for row in inputs])


def _assert_same_predictions(ours, reference):
    scale = max(1.0, float(np.abs(reference).max()))
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4 * scale)
    assert (ours.argmax(-1) == reference.argmax(-1)).all()


# ------------------------------------------------------------ batched evaluation = reference
@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("task, ells, z", [("match2", (5,), 1), ("match2", (16,), 3), ("induction", (72, 12), 2)])
def test_anna_logits_equal_the_transformer_with_anna_heads_row_by_row(task, ells, z, family):
    model = load_weights(task)
    inputs, _ = EXPERIMENTS[task].setup().test_set()
    lsh = [LSHConfig(FAMILIES[family], z, ell) for ell in ells]
    rows = inputs[:4] if task == "match2" else inputs[:2]
    _assert_same_predictions(anna_logits(model, rows, lsh, seed=7), _reference_logits(model, rows, lsh, seed=7))


@pytest.mark.parametrize("task", TASKS)
def test_surrogate_logits_of_the_shipped_models_equal_the_transformer_forward(task):
    model = load_weights(task)  # match2: collision heads (trained through tables); induction: softmax heads
    inputs, _ = EXPERIMENTS[task].setup().test_set()
    _assert_same_predictions(surrogate_logits(model, inputs[:3]), np.stack([model(r) for r in inputs[:3]]))
    if all(head.kind == "softmax" for layer in model.layers for head in layer.heads):
        _assert_same_predictions(softmax_logits(model, inputs[:3]), np.stack([model(r) for r in inputs[:3]]))


@pytest.mark.parametrize("z", [1, 2])
def test_surrogate_logits_of_collision_heads_equal_the_transformer_forward(z):
    model = load_weights("induction").with_attention("collision", z=z)
    inputs, _ = EXPERIMENTS["induction"].setup().test_set()
    _assert_same_predictions(surrogate_logits(model, inputs[:2]), np.stack([model(r) for r in inputs[:2]]))
    with pytest.raises(ValueError, match="softmax_logits needs softmax heads"):
        softmax_logits(model, inputs[:1])


@given(dim=st.sampled_from([2, 3, 8]), depth=st.integers(1, 2), heads=st.integers(1, 2), causal=st.booleans(),
       n=st.integers(1, 9), rows=st.integers(1, 3), z=st.integers(1, 3), ell=st.integers(1, 9),
       family=st.sampled_from(sorted(FAMILIES)), seed=st.integers(0, 2**16))
def test_anna_logits_equal_the_transformer_on_random_models(dim, depth, heads, causal, n, rows, z, ell, family, seed):
    model = init_transformer(vocab_size=5, dim=dim * heads, n_outputs=3, depth=depth, heads=heads, max_len=9,
                             causal=causal, seed=seed)
    inputs = np.random.default_rng(seed).integers(0, 5, size=(rows, n))
    lsh = [LSHConfig(FAMILIES[family], z, ell + layer) for layer in range(depth)]
    _assert_same_predictions(anna_logits(model, inputs, lsh, seed), _reference_logits(model, inputs, lsh, seed))


@pytest.mark.parametrize("causal", [False, True])
def test_every_grid_cell_is_the_mean_over_seeds_of_single_cell_errors(causal):
    model = init_transformer(vocab_size=6, dim=8, n_outputs=3, depth=2, max_len=7, causal=causal, seed=3)
    rng = np.random.default_rng(1)
    inputs, targets = rng.integers(0, 6, size=(5, 7)), rng.integers(0, 3, size=(5, 7))
    ells, zs = ((2, 5), (1, 3)), (1, 2)
    result = evaluate_grid(model, inputs, targets, ells, zs, seeds=3, batch_rows=2)
    assert len(result.cells) == 8 and all(c.seeds == 3 for c in result.cells)
    for cell in result.cells:
        errors = []
        for seed in range(3):
            lsh = [LSHConfig(FAMILIES["hyperplane"], cell.z, ell) for ell in cell.ells]
            wrong, counted = token_errors(anna_logits(model, inputs, lsh, seed), targets)
            errors.append(wrong / counted)
        assert cell.error == pytest.approx(np.mean(errors), abs=1e-12)
        assert cell.error_std == pytest.approx(np.std(errors), abs=1e-12)
    wrong, counted = token_errors(np.stack([model(r) for r in inputs]), targets)
    assert result.surrogate_error == wrong / counted


def test_evaluate_grid_rejects_bad_arguments():
    model = init_transformer(vocab_size=4, dim=4, n_outputs=2, depth=1, max_len=None)
    x = np.zeros((2, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="family"):
        evaluate_grid(model, x, x, [(1,)], (1,), family="e2lsh")
    with pytest.raises(ValueError, match="each of the 1 layers"):
        evaluate_grid(model, x, x, [(1,), (2,)], (1,))
    with pytest.raises(ValueError, match="targets"):
        evaluate_grid(model, x, x[:1], [(1,)], (1,))
    with pytest.raises(ValueError, match="token ids"):
        evaluate_grid(model, x + 4, x, [(1,)], (1,))
    with pytest.raises(ValueError, match="z >= 1"):
        evaluate_grid(model, x, x, [(1,)], (0,))


# ------------------------------------------------------------ shipped weights and recorded grids
def _recorded(task):
    experiment = EXPERIMENTS[task]
    return GridResult.from_json(json.loads(grid_path(task, experiment.family).read_text()))


def _assert_reproduces(result, recorded, tokens):
    for cell in result.cells:
        # identical code and data: equal up to a BLAS-order flip of a hash bit on another machine
        assert cell.error == pytest.approx(recorded.error(cell.ells, cell.z), abs=2 / tokens), cell
    assert result.surrogate_error == pytest.approx(recorded.surrogate_error, abs=2 / tokens)


@pytest.mark.parametrize("task, ells, zs", [("match2", ((1, 8, 16),), (1, 4)), ("induction", ((32, 96), (4, 32)), (1,))])
def test_shipped_weights_reproduce_the_recorded_grid_on_a_subgrid(task, ells, zs):
    experiment = replace(EXPERIMENTS[task], ells=ells, zs=zs)
    result = evaluate_experiment(experiment, load_weights(task))
    tokens = result.test_rows * (32 if task == "match2" else 100)
    _assert_reproduces(result, _recorded(task), tokens)


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_shipped_weights_reproduce_the_full_recorded_grid(task):
    recorded = _recorded(task)
    result = evaluate_experiment(EXPERIMENTS[task], load_weights(task))
    assert len(result.cells) == len(recorded.cells) == EXPERIMENTS[task].cells
    _assert_reproduces(result, recorded, result.test_rows * (32 if task == "match2" else 100))


@pytest.mark.parametrize("task", TASKS)
def test_recorded_grids_are_complete_and_in_the_documented_json_shape(task):
    experiment = EXPERIMENTS[task]
    data = json.loads(grid_path(task, experiment.family).read_text())
    assert data["task"] == task and data["family"] == experiment.family and data["paper"] == experiment.paper
    keys = {"ell", "z", "error", "seeds"} if task == "match2" else {"ell1", "ell2", "z", "error", "seeds"}
    assert all(keys <= set(cell) and cell["seeds"] == 10 for cell in data["grid"])
    assert len(data["grid"]) == experiment.cells
    cells = {(tuple(c[k] for k in sorted(keys - {"z", "error", "seeds"})), c["z"]) for c in data["grid"]}
    assert len(cells) == experiment.cells


def test_shipped_weights_are_small_and_match_their_training_records():
    files = [p for p in WEIGHTS_DIR.iterdir() if p.suffix in (".npz", ".json")]
    assert sum(p.stat().st_size for p in files) < 2 * 1024 * 1024
    for task in TASKS:
        model, record = load_weights(task), load_record(task)
        assert record is not None and record.task == task
        assert all(h.temperature == record.setup["temperature"] and h.normalize
                   for layer in model.layers for h in layer.heads)
        assert model.report().depth == (1 if task == "match2" else 2)
        assert model.dim == record.setup["dim"] and record.steps == record.setup["steps"]
        setup = (Match2Setup if task == "match2" else InductionSetup)(**record.setup)
        inputs, targets = setup.test_set()
        if setup.kind == "hashed":  # trained through sampled tables: its error is the tables' (4 CPU draws)
            pytest.importorskip("torch", reason="a hashed record's error is recomputed with torch (train extra)")
            from anna.experiments.training import surrogate_test_error
            from anna.train import TorchSurrogate
            error = surrogate_test_error(TorchSurrogate(model, hashing=setup.hashing), inputs, targets)
            counted = int((targets != -100).sum())
        else:
            wrong, counted = token_errors(softmax_logits(model, inputs), targets)
            error = wrong / counted
        assert record.surrogate_test_error == pytest.approx(error, abs=2 / counted)


RECORDS = sorted([*WEIGHTS_DIR.glob("*.train.json"),
                  *(WEIGHTS_DIR.parents[2] / "docs" / "training-runs").rglob("*.train.json")])


def test_every_shipped_training_record_loads_with_its_logged_error_under_the_new_name():
    from anna.experiments import TrainingRecord

    assert len(RECORDS) >= 20  # the shipped weights' two and the logged runs under docs/training-runs
    for path in RECORDS:
        data = json.loads(path.read_text())
        old = data.get("softmax_test_error", data.get("surrogate_test_error"))
        record = TrainingRecord.from_json(data)
        assert record.surrogate_test_error == old, path
        assert record.kind == data["setup"].get("kind", "softmax"), path
        again = TrainingRecord.from_json(json.loads(json.dumps(record.to_json())))
        assert again == record and "softmax_test_error" not in record.to_json()
        with pytest.warns(DeprecationWarning, match="surrogate_test_error"):
            assert record.softmax_test_error == old
    kinds = {TrainingRecord.from_json(json.loads(p.read_text())).kind for p in RECORDS}
    assert kinds == {"softmax", "lowrank", "collision", "hashed"}


def test_a_training_record_with_both_error_keys_is_refused():
    from anna.experiments import TrainingRecord

    data = json.loads(RECORDS[0].read_text())
    data.setdefault("softmax_test_error", 0.5)
    data.setdefault("surrogate_test_error", 0.5)
    with pytest.raises(ValueError, match="both 'softmax_test_error' and 'surrogate_test_error'"):
        TrainingRecord.from_json(data)
    with pytest.raises(AttributeError):
        TrainingRecord.from_json(json.loads(RECORDS[0].read_text())).softmax_test_error = 0.5


def test_load_weights_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="--train"):
        load_weights("match2", tmp_path)


# ------------------------------------------------------------ results and comparison
def test_grid_result_round_trips_through_json_and_rejects_duplicates():
    cells = (GridCell((32, 4), 1, 0.2, 10, 0.01), GridCell((40, 4), 1, 0.1, 10))
    result = GridResult("induction", "hyperplane", cells, 0.05, 64, {"error_at_32_4": 0.2})
    data = result.to_json()
    assert data["grid"][0] == {"ell1": 32, "ell2": 4, "z": 1, "error": 0.2, "seeds": 10, "error_std": 0.01}
    assert GridResult.from_json(json.loads(json.dumps(data))) == result
    with pytest.raises(ValueError, match="distinct"):
        GridResult("induction", "hyperplane", cells + cells[:1], 0.05, 64)
    with pytest.raises(ValueError, match="error"):
        GridCell((1,), 1, 1.5, 10)


def test_grid_result_calls_its_own_attention_error_surrogate_error_and_keeps_the_json_key():
    result = GridResult("match2", "hyperplane", (GridCell((8,), 1, 0.0, 10),), 0.125, 256)
    assert result.surrogate_error == 0.125 and result.softmax_error == 0.125  # the old name: a read-only alias
    with pytest.raises(AttributeError):
        result.softmax_error = 0.5
    data = result.to_json()
    assert data["softmax_error"] == 0.125 and "surrogate_error" not in data  # the recorded grids' key
    assert GridResult.from_json(data) == result
    recorded = _recorded("match2")  # a shipped grid still reads
    assert recorded.surrogate_error == json.loads(grid_path("match2", "hyperplane").read_text())["softmax_error"]
    quantity, paper, ours = compare_with_paper(result)[0]
    assert "own attention" in quantity and "collision" in quantity and ours == "0.125"


def test_run_experiment_refuses_setup_fields_without_training():
    with pytest.raises(ValueError, match="train=True"):
        run_experiment(EXPERIMENTS["match2"], setup={"kind": "hashed", "tables": 8})


def test_experiments_import_no_private_module_or_name():
    import ast
    import importlib
    from pathlib import Path

    import anna.experiments

    private = []
    for path in sorted(Path(anna.experiments.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                parts = (node.module or "").split(".") + [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                parts = [part for alias in node.names for part in alias.name.split(".")]
            else:
                continue
            private += [f"{path.name}:{node.lineno} {part}" for part in parts if part.startswith("_")]
    assert private == []
    # the public names, and the old private ones still importable
    assert importlib.import_module("anna.experiments.plots").require_pyplot is not None
    from anna.experiments.plots import _pyplot, require_pyplot
    from anna.train import require_torch
    from anna.train._torch import require_torch as old_require_torch
    assert _pyplot is require_pyplot and old_require_torch is require_torch


def test_match2_comparison_finds_where_the_error_stays_zero():
    errors = {1: 0.3, 2: 0.0, 3: 0.1, 4: 0.0, 8: 0.0, 16: 0.0}
    cells = tuple(GridCell((ell,), 1, err, 10) for ell, err in errors.items())
    rows = dict((q, (p, o)) for q, p, o in compare_with_paper(
        GridResult("match2", "hyperplane", cells, 0.0, 256, EXPERIMENTS["match2"].paper)))
    assert rows["smallest ℓ with zero error for all larger ℓ (z = 1)"] == ("8", "4")
    assert rows["error at ℓ = 8, z = 1"] == ("0", "0.000")


def test_induction_comparison_reports_the_32_4_cell_and_more_first_layer_tables():
    cells = (GridCell((32, 4), 1, 0.3, 10), GridCell((32, 4), 2, 0.25, 10), GridCell((96, 4), 2, 0.08, 10))
    rows = {q: o for q, _, o in compare_with_paper(
        GridResult("induction", "hyperplane", cells, 0.1, 64, EXPERIMENTS["induction"].paper))}
    assert rows["error at (ℓ1, ℓ2) = (32, 4), best z"] == "0.250 (z = 2)"
    assert rows["best error with ℓ1 > 32"].startswith("0.080 at (96, 4)")


# ------------------------------------------------------------ CLI and figures
def test_cli_quick_run_prints_the_tables_and_writes_the_json(tmp_path, capsys):
    from reductions.cli import main

    path = tmp_path / "grid.json"
    assert main(["experiment", "induction", "--quick", "--seeds", "1", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "the paper beside this run" in out and "(32, 4)" in out
    data = json.loads(path.read_text())
    quick = EXPERIMENTS["induction"].quick()
    assert data["task"] == "induction" and len(data["grid"]) == quick.cells
    assert {c["seeds"] for c in data["grid"]} == {1}


def test_cli_z_option_evaluates_only_the_given_zs(tmp_path, capsys):
    from reductions.cli import main

    path = tmp_path / "grid.json"
    assert main(["experiment", "match2", "--quick", "--seeds", "1", "--z", "4", "--z", "1", "--json", str(path)]) == 0
    assert "weights: shipped weights" in capsys.readouterr().out
    data = json.loads(path.read_text())
    assert {c["z"] for c in data["grid"]} == {1, 4}
    assert len(data["grid"]) == 2 * len(EXPERIMENTS["match2"].quick().ells[0])


class _Stopped(Exception):
    """Raised in place of training: the CPU-time warning is printed before anything is trained."""


@pytest.mark.parametrize("task, kind, steps", [
    ("match2", ["--kind", "softmax"], 30_000), ("match2", ["--kind", "hashed", "--tables", "8"], 30_000),
    ("match2", ["--kind", "collision"], 30_000), ("match2", ["--kind", "hashed", "--tables", "8"], 80_000),
    ("induction", ["--kind", "lowrank"], None), ("induction", ["--kind", "collision"], None),
    ("induction", ["--kind", "hashed", "--tables", "32x4"], 3_000), ("induction", ["--kind", "softmax"], 4_000),
])
def test_cli_warns_of_the_cpu_training_time_of_the_kind_asked(task, kind, steps, monkeypatch, capsys):
    import anna.experiments.cli as experiment_cli
    from reductions.cli import main

    def stop(*args, **kwargs):
        raise _Stopped
    monkeypatch.setattr(experiment_cli, "run_experiment", stop)
    with pytest.raises(_Stopped):
        main(["experiment", task, "--train", *kind, *([] if steps is None else ["--steps", str(steps)])])
    out = capsys.readouterr().out
    steps = steps or EXPERIMENTS[task].setup().steps
    runs = 3 if kind[1] == "softmax" and task == "match2" else 1  # Match2 softmax: one surrogate per β
    seconds = steps * runs * experiment_cli.CPU_STEP_SECONDS[task, kind[1]]
    assert experiment_cli.cpu_training_seconds(task, kind[1], steps) == pytest.approx(seconds)
    if seconds > 600:
        assert f"{steps:,} training steps of {kind[1]} heads" in out and f"about {seconds / 3600:.1f} h" in out
    else:
        assert "training steps" not in out


def test_cpu_step_times_per_kind_are_the_benchmark_records():
    from anna.experiments.cli import CPU_STEP_SECONDS
    from anna.train.tasks import KINDS

    path = WEIGHTS_DIR.parents[2] / "benchmarks" / "results" / "train_steps_cpu_kinds.json"
    rows = json.loads(path.read_text())["rows"]
    assert {(r["surrogate"], r["kind"]) for r in rows if r["device"] == "cpu"} == set(CPU_STEP_SECONDS)
    for row in rows:
        assert 1e3 * CPU_STEP_SECONDS[row["surrogate"], row["kind"]] == pytest.approx(row["step_ms"], rel=0.01)
    accepted = {("match2", k) for k in KINDS if k != "lowrank"} | {("induction", k) for k in KINDS}
    assert set(CPU_STEP_SECONDS) == accepted  # every kind the CLI may train has a step time
    assert len({CPU_STEP_SECONDS[key] for key in CPU_STEP_SECONDS if key[0] == "induction"}) == 4


def test_cli_header_names_the_weights_directory_it_read(tmp_path, capsys):
    import shutil

    from reductions.cli import main

    directory = tmp_path / "my-weights"
    directory.mkdir()
    for suffix in (".npz", ".json", ".train.json"):
        shutil.copyfile(WEIGHTS_DIR / f"match2{suffix}", directory / f"match2{suffix}")
    assert main(["experiment", "match2", "--quick", "--seeds", "1", "--z", "1", "--weights", str(directory)]) == 0
    out = capsys.readouterr().out
    assert f"weights: read from {directory}" in out and "shipped" not in out


@pytest.mark.parametrize("task", TASKS)
def test_figures_are_written_as_png(task, tmp_path):
    pytest.importorskip("matplotlib", reason="figures need the optional extra 'plot' (matplotlib)")
    from anna.experiments.plots import plot_grid

    path = plot_grid(_recorded(task), tmp_path / "figs" / f"{task}.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_without_matplotlib_raise_a_clear_error(monkeypatch, tmp_path):
    from anna.experiments.plots import PlotMissing, plot_grid

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotMissing, match=r"\.\[plot\]"):
        plot_grid(_recorded("match2"), tmp_path / "x.png")


def test_fused_gelu_mlp_is_bit_identical_to_the_transformer_mlp():
    from anna.transformer.forward import mlp_forward as _mlp

    model = load_weights("match2")
    mlp = model.layers[0].mlp
    y = (np.random.default_rng(0).standard_normal((300, model.dim)) * 3).astype(np.float32)
    np.testing.assert_array_equal(_mlp(mlp, y), mlp(y))
    np.testing.assert_array_equal(_mlp(mlp, y.astype(np.float64)), mlp(y.astype(np.float64)))


def test_evaluation_refuses_theory_mode_models():
    model = init_transformer(vocab_size=4, dim=4, n_outputs=2, depth=1, max_len=None)
    theory = replace(model, readout=lambda x, positions: x[:, :2])
    with pytest.raises(ValueError, match="trained-mode"):
        softmax_logits(theory, np.zeros((1, 3), dtype=np.int64))
