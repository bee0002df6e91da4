"""anna.train: the torch surrogate mirrors the numpy transformer; training runs, resumes and exports.

Tests that need torch take the ``torch`` fixture, which skips them (with the reason) when the
optional extra ``train`` is not installed; the rest run everywhere.
"""
import dataclasses
import json
import sys
from dataclasses import replace

import numpy as np
import pytest

from anna.train import (
    IGNORE,
    InductionSetup,
    Match2Setup,
    TorchMissing,
    TrainConfig,
    encode_khop_targets,
    require_torch,
    token_errors,
)
from anna.tasks import hop_k, match2_labels
from anna.transformer import init_transformer


@pytest.fixture
def torch():
    module = pytest.importorskip("torch", reason="training needs torch, the optional extra 'train' "
                                                 "(pip install torch==2.13.0); CI does not install it")
    module.set_num_threads(1)
    return module


# ------------------------------------------------------------------ without torch
def test_require_torch_names_the_pinned_install_command_when_torch_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(TorchMissing, match=r"pip install torch==2\.13\.0"):
        require_torch()
    from anna.train import TorchSurrogate
    with pytest.raises(ImportError, match="torch"):
        TorchSurrogate(init_transformer(vocab_size=3, dim=4, n_outputs=2, depth=1, max_len=None))


def test_match2_batches_are_rows_of_the_training_set_and_depend_only_on_the_step():
    setup = Match2Setup(train_size=50, batch_size=8)
    inputs, labels = setup.training_set()
    batches = setup.batches(seed=3)
    x, y = batches(7)
    assert x.shape == y.shape == (8, 32)
    rows = {tuple(r) for r in inputs.tolist()}
    assert all(tuple(r) in rows for r in x.tolist())
    assert all((y[i] == match2_labels(x[i], 37)).all() for i in range(8))
    again = setup.batches(seed=3)(7)
    assert (again[0] == x).all() and not (batches(8)[0] == x).all()


def test_induction_batches_mix_hop_counts_and_align_targets_with_inputs():
    setup = InductionSetup(batch_size=40)
    inputs, targets = setup.batches(seed=0)(0)
    assert inputs.shape == targets.shape == (40, 101)
    assert (targets[:, 0] == IGNORE).all()
    assert set((inputs[:, 0] - 4).tolist()) == {0, 1}
    for row, target in zip(inputs, targets):
        expected = hop_k(row[1:], int(row[0]) - 4)
        assert (encode_khop_targets(expected[None], 4)[0] == target).all()


def test_encode_khop_targets_maps_bottom_to_class_alphabet_size():
    assert encode_khop_targets(np.array([[-1, 0, 3]]), 4).tolist() == [[IGNORE, 4, 0, 3]]
    with pytest.raises(ValueError, match="targets"):
        encode_khop_targets(np.array([1, 2]), 4)


def test_token_errors_skip_ignored_tokens():
    logits = np.array([[[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]])
    assert token_errors(logits, np.array([[1, 1, IGNORE]])) == (1, 2)
    with pytest.raises(ValueError, match="disagree"):
        token_errors(logits, np.array([[1, 1]]))


@pytest.mark.parametrize("bad", [{"steps": 0}, {"steps": 5, "learning_rate": -1.0}, {"steps": 5, "batch_size": 1.5},
                                 {"steps": 5, "grad_clip": 0.0}])
def test_train_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_setups_reject_bad_values():
    with pytest.raises(ValueError, match="temperature"):
        Match2Setup(temperature=0.0)
    with pytest.raises(ValueError, match="train_ks"):
        InductionSetup(train_ks=(0,), test_k=1)


# ------------------------------------------------------------------ with torch
@pytest.mark.parametrize("setup", [Match2Setup(test_size=5), InductionSetup(test_size=3)], ids=["match2", "induction"])
def test_torch_forward_equals_numpy_forward_with_softmax_heads(torch, setup):
    from anna.train import TorchSurrogate

    template = setup.template(seed=4)
    surrogate = TorchSurrogate(template)
    # move the weights away from the template so the export is what is compared
    rng = np.random.default_rng(0)
    surrogate.load_arrays({k: (v + 0.1 * rng.standard_normal(v.shape)).astype(v.dtype)
                           for k, v in surrogate.numpy_arrays().items()})
    model = surrogate.to_transformer()
    inputs, _ = setup.test_set()
    with torch.no_grad():
        ours = surrogate(inputs).numpy()
    reference = np.stack([model(row) for row in inputs])
    assert ours.dtype == reference.dtype == np.float32
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
    assert (ours.argmax(-1) == reference.argmax(-1)).mean() > 0.99


def test_surrogate_refuses_non_softmax_heads_and_bad_inputs(torch):
    from anna.train import TorchSurrogate

    model = init_transformer(vocab_size=3, dim=4, n_outputs=2, depth=1, max_len=4)
    with pytest.raises(ValueError, match="softmax"):
        TorchSurrogate(model.with_attention("ema"))
    surrogate = TorchSurrogate(model)
    with pytest.raises(ValueError, match="token ids"):
        surrogate(np.array([[0, 3]]))
    with pytest.raises(ValueError, match="max_len"):
        surrogate(np.zeros((1, 5), dtype=np.int64))
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        surrogate(np.array([0, 1]))


def test_a_few_training_steps_lower_the_loss_and_the_export_keeps_the_logits(torch):
    from anna.train import TorchSurrogate, train_surrogate

    setup = Match2Setup(train_size=256)
    surrogate = TorchSurrogate(setup.template(seed=0))
    log = train_surrogate(surrogate, setup.batches(0), TrainConfig(steps=60, log_every=10))
    assert log.steps == 60 and len(log.losses) == 6 and log.resumed_from == 0
    assert log.losses[-1][1] < log.losses[0][1]
    inputs, _ = setup.test_set()
    with torch.no_grad():
        logits = surrogate(inputs[:8]).numpy()
    exported = surrogate.to_transformer()
    np.testing.assert_allclose(np.stack([exported(r) for r in inputs[:8]]), logits, rtol=1e-4, atol=1e-4)


def test_resuming_from_a_checkpoint_gives_the_uninterrupted_run(torch, tmp_path):
    from anna.train import TorchSurrogate, train_surrogate

    setup = InductionSetup(n=12, dim=16, batch_size=4)
    straight = TorchSurrogate(setup.template(seed=1))
    train_surrogate(straight, setup.batches(0), TrainConfig(steps=6, log_every=2))
    resumed = TorchSurrogate(setup.template(seed=1))
    checkpoint = tmp_path / "run.ckpt"
    train_surrogate(resumed, setup.batches(0), TrainConfig(steps=3, log_every=2, checkpoint_every=3),
                    checkpoint=checkpoint)
    fresh = TorchSurrogate(setup.template(seed=1))  # starts from the template; the checkpoint restores it
    log = train_surrogate(fresh, setup.batches(0), TrainConfig(steps=6, log_every=2, checkpoint_every=3),
                          checkpoint=checkpoint)
    assert log.resumed_from == 3 and log.steps == 6
    for name, value in straight.numpy_arrays().items():
        np.testing.assert_array_equal(fresh.numpy_arrays()[name], value, err_msg=name)


def test_train_to_file_writes_weights_loadable_without_torch_and_a_record(torch, tmp_path):
    from anna.experiments.training import TrainingRecord, record_path, train_to_file
    from anna.transformer import Transformer

    setup = Match2Setup(train_size=64, test_size=8, steps=5)
    record = train_to_file(setup, tmp_path / "m", seed=2, on_log=lambda step, loss: None)
    model = Transformer.load(tmp_path / "m")
    assert model.layers[0].heads[0].temperature == setup.temperature
    saved = TrainingRecord.from_json(json.loads(record_path(tmp_path / "m").read_text()))
    assert saved == record and saved.steps == 5 and saved.setup["temperature"] == 0.1
    inputs, targets = setup.test_set()
    logits = np.stack([model(r) for r in inputs])
    wrong, counted = token_errors(logits, targets)
    assert abs(wrong / counted - record.surrogate_test_error) <= 2 / counted


def test_grad_clip_bounds_the_gradient_norm_at_every_step(torch, monkeypatch):
    from anna.train import TorchSurrogate, train_surrogate

    original = torch.nn.utils.clip_grad_norm_
    norms = []

    def recording(params, max_norm):
        params = list(params)
        total = original(params, max_norm)
        norms.append(float(torch.sqrt(sum((p.grad ** 2).sum() for p in params))))
        return total

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording)
    setup = Match2Setup(train_size=64)
    surrogate = TorchSurrogate(setup.template(seed=0))
    train_surrogate(surrogate, setup.batches(0), TrainConfig(steps=4, log_every=2, grad_clip=0.01))
    assert len(norms) == 4 and max(norms) <= 0.01 * (1 + 1e-5)


@pytest.mark.parametrize("task", ["match2", "induction"])
def test_cli_train_writes_weights_then_evaluates_them(torch, task, tmp_path, capsys):
    from anna.experiments import load_record, load_weights
    from reductions.cli import main

    grid = tmp_path / "grid.json"
    argv = ["experiment", task, "--train", "--steps", "2", "--weights", str(tmp_path), "--quick", "--seeds", "1",
            "--json", str(grid)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    record = load_record(task, tmp_path)
    assert record.steps == 2 and load_weights(task, tmp_path).report().depth == (1 if task == "match2" else 2)
    data = json.loads(grid.read_text())
    assert data["task"] == task and str(tmp_path) in data["weights"]
    assert not list(tmp_path.glob("*.ckpt"))  # every run completed: no checkpoint left beside the weights
    if task == "match2":  # one surrogate per β, the kept one has the best cell
        assert all(f"β = {beta}" in out for beta in ("0.1", "1", "10"))
        assert {p.name for p in tmp_path.glob("match2_beta*.npz")} == {"match2_beta0.1.npz", "match2_beta1.npz",
                                                                       "match2_beta10.npz"}


def test_an_interrupted_experiment_run_keeps_its_checkpoint_and_resumes_from_it(torch, tmp_path):
    from anna.experiments import EXPERIMENTS, load_record, run_experiment

    experiment = replace(EXPERIMENTS["induction"].quick(), seeds=1)
    fields = {"log_every": 1, "checkpoint_every": 1}
    logged = []

    def interrupt_at_step_3(step, loss):
        logged.append(step)
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(experiment, train=True, weights_dir=tmp_path, steps=4, setup=fields, on_log=interrupt_at_step_3)
    assert (tmp_path / "induction.ckpt").exists() and not (tmp_path / "induction.npz").exists()
    resumed = []
    run = run_experiment(experiment, train=True, weights_dir=tmp_path, steps=4, setup=fields,
                         on_log=lambda step, loss: resumed.append(step))
    assert logged == [1, 2, 3] and resumed == [3, 4]  # the checkpoint of step 2 was resumed, not a fresh run
    assert run.record == load_record("induction", tmp_path) and run.record.steps == 4
    assert [loss[0] for loss in run.record.losses] == [1, 2, 3, 4]
    assert not (tmp_path / "induction.ckpt").exists() and (tmp_path / "induction.npz").exists()


def test_cli_trains_through_hash_tables_with_the_given_tables_and_z(torch, tmp_path, capsys):
    from anna.experiments import load_record, load_weights
    from reductions.cli import main

    grid = tmp_path / "grid.json"
    argv = ["experiment", "match2", "--train", "--kind", "hashed", "--tables", "8", "--z", "2", "--steps", "5",
            "--weights", str(tmp_path), "--quick", "--seeds", "1", "--json", str(grid)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"training through hash tables into {tmp_path}" in out and "tables ℓ = 8 of z = 2" in out
    record = load_record("match2", tmp_path)
    assert record.steps == 5 and record.setup["steps"] == 5
    assert (record.setup["kind"], record.setup["tables"], record.setup["z"], record.setup["tau"]) == ("hashed", [8], 2,
                                                                                                      0.25)
    assert {(h.kind, h.z) for h in load_weights("match2", tmp_path).layers[0].heads} == {("collision", 2)}
    assert not list(tmp_path.glob("match2_beta*"))  # no β sweep: tables do not use β
    assert {c["z"] for c in json.loads(grid.read_text())["grid"]} == {2}  # --z: trained with and evaluated


def test_cli_trains_induction_through_tables_from_init_weights_with_tau(torch, tmp_path, capsys):
    from anna.experiments import WEIGHTS_DIR, load_record, load_weights
    from reductions.cli import main

    init = str(WEIGHTS_DIR / "induction")
    argv = ["experiment", "induction", "--train", "--kind", "hashed", "--tables", "32x4", "--z", "2", "--tau", "0.5",
            "--init", init, "--steps", "2", "--weights", str(tmp_path), "--quick", "--seeds", "1"]
    assert main(argv) == 0
    record = load_record("induction", tmp_path)
    assert record.steps == 2
    assert {k: record.setup[k] for k in ("kind", "tables", "z", "tau", "init")} == {
        "kind": "hashed", "tables": [32, 4], "z": 2, "tau": 0.5, "init": init}
    trained, start = load_weights("induction", tmp_path), load_weights("induction")
    first = trained.layers[0].heads[0].query.weight
    assert first.shape == start.layers[0].heads[0].query.weight.shape
    assert not np.array_equal(first, start.layers[0].heads[0].query.weight)  # trained on from the init weights
    assert np.abs(first - start.layers[0].heads[0].query.weight).max() < 0.1  # ... two small steps away


# ------------------------------------------------------------------ device batches, CUDA path
@pytest.fixture
def cuda(torch):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (torch.cuda.is_available() is False); CI has none, the GPU runs use it")
    return torch


def test_device_khop_rows_equal_the_numpy_reference_row_by_row(torch):
    from anna.train.data import _generator, khop_rows

    inputs, targets = khop_rows(_generator("cpu", 5, 0), 64, 40, 4, (0, 1, 2, 3, 8))
    inputs, targets = inputs.numpy(), targets.numpy()
    assert inputs.shape == targets.shape == (64, 41)
    assert set((inputs[:, 0] - 4).tolist()) <= {0, 1, 2, 3, 8} and len(set(inputs[:, 0].tolist())) > 2
    assert (np.diff(inputs[:, 1:], axis=1) != 0).all()  # no immediate repeats
    for row_inputs, row_targets in zip(inputs, targets):
        expected = encode_khop_targets(hop_k(row_inputs[1:], int(row_inputs[0]) - 4)[None], 4)[0]
        np.testing.assert_array_equal(row_targets, expected)


def test_device_batches_depend_only_on_seed_and_step(torch):
    setup = InductionSetup(n=10, batch_size=3)
    source = setup.device_batches(seed=1, chunk_size=4)
    again = setup.device_batches(seed=1, chunk_size=4)
    for step in (0, 3, 4, 9):
        assert all(torch.equal(a, b) for a, b in zip(source.batch(step), again.batch(step)))
    assert not torch.equal(source.batch(0)[0], source.batch(1)[0])
    match2 = Match2Setup(train_size=40, batch_size=5)
    rows = {tuple(r) for r in match2.training_set()[0].tolist()}
    x, y = match2.device_batches(seed=0, chunk_size=3).batch(4)
    assert all(tuple(r) in rows for r in x.tolist())
    assert all((y[i].numpy() == match2_labels(x[i].numpy(), 37)).all() for i in range(5))


def test_resume_with_device_batches_and_warmup_equals_the_uninterrupted_run(torch, tmp_path):
    from anna.train import TorchSurrogate, train_surrogate

    setup = InductionSetup(n=12, dim=16, batch_size=4)
    config = dict(log_every=2, checkpoint_every=2, learning_rate=0.01, warmup_steps=3, grad_clip=1.0)
    straight = TorchSurrogate(setup.template(seed=1))
    whole = train_surrogate(straight, setup.device_batches(0, chunk_size=3), TrainConfig(steps=8, **config))
    checkpoint = tmp_path / "run.ckpt"
    first = TorchSurrogate(setup.template(seed=1))
    train_surrogate(first, setup.device_batches(0, chunk_size=3), TrainConfig(steps=4, **config),
                    checkpoint=checkpoint)
    second = TorchSurrogate(setup.template(seed=1))
    log = train_surrogate(second, setup.device_batches(0, chunk_size=3), TrainConfig(steps=8, **config),
                          checkpoint=checkpoint)
    assert log.resumed_from == 4 and log.losses == whole.losses
    for name, value in straight.numpy_arrays().items():
        np.testing.assert_array_equal(second.numpy_arrays()[name], value, err_msg=name)


def test_time_limit_stops_at_a_checkpoint_and_the_next_call_finishes(torch, tmp_path):
    from anna.train import TorchSurrogate, train_surrogate

    setup = Match2Setup(train_size=64)
    checkpoint = tmp_path / "run.ckpt"
    config = TrainConfig(steps=6, log_every=2, checkpoint_every=100)
    stopped = train_surrogate(TorchSurrogate(setup.template(0)), setup.device_batches(0), config,
                              checkpoint=checkpoint, time_limit=0.0)
    assert stopped.steps == 2 and checkpoint.exists()
    finished = train_surrogate(TorchSurrogate(setup.template(0)), setup.device_batches(0), config,
                               checkpoint=checkpoint)
    assert finished.resumed_from == 2 and finished.steps == 6 and len(finished.losses) == 3


def test_a_diverging_run_stops_and_keeps_its_loss_curve(torch):
    from anna.train import TorchSurrogate, train_surrogate

    setup = Match2Setup(train_size=64)
    surrogate = TorchSurrogate(setup.template(0))
    with torch.no_grad():
        surrogate.params["readout.weight"].fill_(float("nan"))
    log = train_surrogate(surrogate, setup.device_batches(0), TrainConfig(steps=10, log_every=2))
    assert log.diverged_at == 2 and log.steps == 2 and len(log.losses) == 1


def test_a_diverged_run_to_file_writes_its_record_and_no_nan_weights(torch, tmp_path):
    from anna.experiments.training import train_to_file

    setup = InductionSetup(kind="lowrank", n=12, dim=8, steps=6, log_every=2, learning_rate=1e30, grad_clip=None,
                           warmup_steps=0, decay="none", test_size=2)
    record = train_to_file(setup, tmp_path / "m", on_log=lambda *args: None)
    assert record.diverged_at == 2 and record.surrogate_test_error == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.train.json"]


@pytest.mark.parametrize("scaled", [dict(), dict(normalize=True, scale=2.8)])
def test_lowrank_surrogate_equals_the_numpy_lowrank_transformer(torch, scaled):
    from anna.train import TorchSurrogate

    template = init_transformer(vocab_size=6, dim=8, n_outputs=3, depth=2, max_len=12, kind="lowrank",
                                causal=True, seed=3, dtype=np.float32, **{"normalize": False, **scaled})
    surrogate = TorchSurrogate(template)
    inputs = np.random.default_rng(0).integers(0, 6, size=(3, 12))
    with torch.no_grad():
        logits = surrogate(inputs).numpy()
    np.testing.assert_allclose(np.stack([template(r) for r in inputs]), logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("z", [1, 3])
def test_collision_surrogate_equals_the_numpy_collision_transformer(torch, z):
    from anna.train import TorchSurrogate

    template = init_transformer(vocab_size=6, dim=8, n_outputs=3, depth=2, max_len=12, kind="collision", z=z,
                                causal=True, seed=3, dtype=np.float32)
    surrogate = TorchSurrogate(template)
    inputs = np.random.default_rng(0).integers(0, 6, size=(3, 12))
    with torch.no_grad():
        logits = surrogate(inputs).numpy()
    np.testing.assert_allclose(np.stack([template(r) for r in inputs]), logits, rtol=1e-4, atol=1e-4)
    assert surrogate.to_transformer().layers[1].heads[0].z == z


def test_collision_surrogate_gradients_stay_finite_when_a_query_equals_a_key(torch):
    from anna.train import TorchSurrogate

    template = init_transformer(vocab_size=4, dim=4, n_outputs=2, depth=1, max_len=6, kind="collision",
                                causal=True, seed=1, dtype=np.float64)
    head = template.layers[0].heads[0]
    shared = dataclasses.replace(head, key=head.query)  # q_i == k_i: cosine 1, arccos' infinite unclamped
    template = dataclasses.replace(template, layers=(dataclasses.replace(template.layers[0], heads=(shared,)),))
    surrogate = TorchSurrogate(template)
    surrogate(np.array([[0, 1, 1, 2, 3, 0]])).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in surrogate.params.values() if p.grad is not None)


def test_induction_setup_trains_collision_heads_with_its_z(torch, tmp_path):
    from anna.experiments import evaluate_grid
    from anna.experiments.training import train_to_file
    from anna.transformer import Transformer

    setup = InductionSetup(kind="collision", z=2, n=12, dim=8, steps=4, log_every=2, test_size=4,
                           learning_rate=1e-3, warmup_steps=0, decay="none")
    assert {h.kind for layer in setup.template(0).layers for h in layer.heads} == {"collision"}
    record = train_to_file(setup, tmp_path / "m", on_log=lambda *args: None)
    assert record.setup["kind"] == "collision" and record.setup["z"] == 2
    model = Transformer.load(tmp_path / "m")
    assert {(h.kind, h.z) for layer in model.layers for h in layer.heads} == {("collision", 2)}
    inputs, targets = setup.test_set()
    grid = evaluate_grid(model, inputs, targets, ((4,), (4,)), (2,), seeds=1)
    assert grid.surrogate_error == pytest.approx(record.surrogate_test_error)  # the collision surrogate's own error


@pytest.mark.parametrize("bad", [dict(kind="softmax", z=2), dict(kind="collision", z=0), dict(kind="cosine")])
def test_induction_setup_rejects_z_without_collision_heads_and_unknown_kinds(bad):
    with pytest.raises(ValueError, match="z|kind"):
        InductionSetup(**bad)


@pytest.mark.parametrize("bad", [dict(device="gpu"), dict(graph="yes"), dict(graph=True), dict(warmup_steps=-1)])
def test_train_config_rejects_bad_device_graph_and_warmup(bad):
    with pytest.raises(ValueError):
        TrainConfig(steps=5, **bad)


def test_cuda_graph_training_resumes_bit_identically_and_matches_eager(cuda, tmp_path):
    from anna.train import TorchSurrogate, train_surrogate

    torch = cuda
    setup = InductionSetup(n=20, dim=32, batch_size=8)
    config = dict(log_every=5, checkpoint_every=5, learning_rate=0.01, warmup_steps=4, grad_clip=1.0,
                  device="cuda")
    straight = TorchSurrogate(setup.template(seed=1), device="cuda")
    whole = train_surrogate(straight, setup.device_batches(0, "cuda", chunk_size=7), TrainConfig(steps=30, **config))
    checkpoint = tmp_path / "run.ckpt"
    train_surrogate(TorchSurrogate(setup.template(seed=1), device="cuda"), setup.device_batches(0, "cuda", chunk_size=7),
                    TrainConfig(steps=15, **config), checkpoint=checkpoint)
    resumed = TorchSurrogate(setup.template(seed=1), device="cuda")
    log = train_surrogate(resumed, setup.device_batches(0, "cuda", chunk_size=7), TrainConfig(steps=30, **config),
                          checkpoint=checkpoint)
    assert log.losses == whole.losses
    for name, value in straight.numpy_arrays().items():
        np.testing.assert_array_equal(resumed.numpy_arrays()[name], value, err_msg=name)
    eager = TorchSurrogate(setup.template(seed=1), device="cuda")
    train_surrogate(eager, setup.device_batches(0, "cuda", chunk_size=7), TrainConfig(steps=30, graph=False, **config))
    for name, value in straight.numpy_arrays().items():
        np.testing.assert_allclose(eager.numpy_arrays()[name], value, rtol=1e-3, atol=1e-4, err_msg=name)
    exported = straight.to_transformer()
    inputs, _ = setup.test_set()
    with torch.no_grad():
        logits = straight(inputs[:4]).cpu().numpy()
    np.testing.assert_allclose(np.stack([exported(r) for r in inputs[:4]]), logits, rtol=1e-3, atol=1e-3)


def test_separation_marks_a_diverged_run_instead_of_failing(torch, tmp_path):
    from rich.console import Console

    from anna.experiments.separation import (SeparationResult, SeparationSpec, evaluate_separation,
                                             separation_table)
    from anna.experiments.training import train_to_file

    spec = SeparationSpec(max_k=1, depths=(1,), n=12, steps=4, test_size=2, ell=2, seeds=1)
    for kind, lr in (("softmax", 0.01), ("lowrank", 1e30)):
        setup = InductionSetup(**{**spec.setup(kind, 1).__dict__, "dim": 8, "warmup_steps": 0, "log_every": 2,
                                  "learning_rate": lr, "grad_clip": None, "decay": "none"})
        train_to_file(setup, tmp_path / spec.name(kind, 1), on_log=lambda step, loss: None)
    result = evaluate_separation(tmp_path, spec)
    assert all(np.isnan(e) for e in result.errors["lowrank"][1].values())
    assert all(0 <= e <= 1 for e in result.errors["softmax"][1].values())
    console = Console(width=120, record=True)
    console.print(separation_table(result))
    assert "div." in console.export_text()
    again = SeparationResult.from_json(json.loads(json.dumps(result.to_json(), allow_nan=False)))
    assert np.isnan(again.errors["lowrank"][1][0]) and again.errors["softmax"] == result.errors["softmax"]


def test_separation_runs_train_and_evaluate_every_method_depth_and_k(torch, tmp_path):
    from anna.experiments.separation import SeparationResult, SeparationSpec, evaluate_separation
    from anna.experiments.training import train_to_file

    spec = SeparationSpec(max_k=2, depths=(1, 2), n=12, steps=3, test_size=2, ell=2, seeds=1)
    for kind in ("softmax", "lowrank"):
        for depth in spec.depths:
            setup = InductionSetup(**{**spec.setup(kind, depth).__dict__, "dim": 8, "warmup_steps": 1,
                                      "log_every": 1})
            train_to_file(setup, tmp_path / spec.name(kind, depth), on_log=lambda step, loss: None)
    result = evaluate_separation(tmp_path, spec)
    assert set(result.errors) == {"softmax", "anna", "lowrank"}
    assert all(set(result.errors[m][d]) == {0, 1, 2} and all(0 <= e <= 1 for e in result.errors[m][d].values())
               for m in result.errors for d in spec.depths)
    assert SeparationResult.from_json(result.to_json()).errors == result.errors
    with pytest.raises(FileNotFoundError, match="khop_softmax_d3"):
        evaluate_separation(tmp_path, SeparationSpec(max_k=2, depths=(3,), n=12, test_size=2))
