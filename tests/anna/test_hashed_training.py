"""anna.train.hashed: training through sampled hyperplane tables, and its surrogate, trainer and setups.

The tables' forward pass is checked against a plain loop and against Algorithm 1 itself
(:func:`anna.anna_attention` with :class:`anna.lsh.Hyperplane` tables, the same hyperplanes); the
soft buckets against their definition; the hashed surrogate against the numpy model with ANNA heads.
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from anna import Hyperplane, LSHConfig, anna_attention
from anna.errors import ModelError, ParameterError
from anna.train import InductionSetup, Match2Setup, TrainConfig
from anna.train.hashed import HashedTraining
from anna.transformer import init_transformer

torch = pytest.importorskip("torch", reason="training needs torch, the optional extra 'train' "
                                            "(pip install torch==2.13.0); CI does not install it")
torch.set_num_threads(1)

from anna.train import TorchSurrogate, train_surrogate  # noqa: E402
from anna.train.hashed import hashed_attention, soft_buckets  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _planes(directions: np.ndarray) -> np.ndarray:
    """Hyperplane directions (ell, z, m) as the (m, ell * z) plane matrix :func:`hashed_attention` takes."""
    ell, z, m = directions.shape
    return directions.reshape(ell * z, m).T.copy()


def loop_reference(q, k, v, planes, z, causal):
    """Algorithm 1 by explicit loops: per table, compare the z bits of query and key; count; average."""
    n_q, n_k = q.shape[0], k.shape[0]
    ell = planes.shape[1] // z
    out = np.zeros((n_q, v.shape[1]))
    counts = np.zeros(n_q, dtype=np.int64)
    for i in range(n_q):
        for j in range(n_k):
            if causal and j > i:
                continue
            c = 0
            for u in range(ell):
                same = True
                for t in range(z):
                    r = planes[:, u * z + t]
                    if (q[i] @ r >= 0) != (k[j] @ r >= 0):
                        same = False
                c += same
            counts[i] += c
            out[i] += c * v[j]
        if counts[i]:
            out[i] /= counts[i]
    return out, counts


@st.composite
def table_cases(draw):
    n = draw(st.integers(1, 7))
    return dict(n=n, m=draw(st.integers(1, 5)), d_v=draw(st.integers(1, 3)), z=draw(st.integers(1, 3)),
                ell=draw(st.integers(1, 4)), seed=draw(st.integers(0, 2**31 - 1)), causal=draw(st.booleans()))


@given(case=table_cases())
def test_hashed_attention_straight_through_equals_the_loop_reference_and_algorithm_1(case):
    rng = np.random.default_rng(case["seed"])
    n, m, z, ell, causal = case["n"], case["m"], case["z"], case["ell"], case["causal"]
    q, k = rng.standard_normal((n, m)), rng.standard_normal((n, m))
    v = rng.standard_normal((n, case["d_v"]))
    params = Hyperplane().sample(m, z, ell, case["seed"])
    planes = _planes(params.directions)
    mask = torch.ones(n, n, dtype=torch.bool).triu(1) if causal else None
    ours = hashed_attention(torch.tensor(q)[None], torch.tensor(k)[None], torch.tensor(v)[None],
                            torch.tensor(planes), z, 0.25, True, mask)[0].detach().numpy()
    expected, counts = loop_reference(q, k, v, planes, z, causal)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
    algorithm1, algorithm1_counts = anna_attention(q, k, v, LSHConfig(Hyperplane(), z=z, ell=ell),
                                                   seed=case["seed"], causal=causal)
    np.testing.assert_array_equal(algorithm1_counts, counts)
    np.testing.assert_allclose(ours, algorithm1, rtol=1e-10, atol=1e-12)
    assert (ours[counts == 0] == 0).all()


def test_hashed_attention_gives_zero_rows_to_queries_that_collide_with_no_key():
    # one hyperplane along the first axis: queries on its negative side meet no key on the positive side
    planes = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    q = torch.tensor([[[-1.0, 0.3], [2.0, 0.1]]], dtype=torch.float64)
    k = torch.tensor([[[1.0, 0.5], [3.0, -0.2]]], dtype=torch.float64)
    v = torch.tensor([[[1.0], [3.0]]], dtype=torch.float64)
    out = hashed_attention(q, k, v, planes, 1, 0.25, True)[0]
    assert out[:, 0].tolist() == [0.0, 2.0]


def test_straight_through_buckets_are_one_hot_per_table():
    projections = torch.tensor(np.random.default_rng(0).standard_normal((5, 3 * 2)))
    rows = soft_buckets(projections, z=2, tau=0.25, straight_through=True).detach().numpy()
    tables = rows.reshape(5, 3, 4)
    assert set(np.unique(tables).tolist()) == {0.0, 1.0}
    assert (tables.sum(-1) == 1).all() and ((tables == 1).sum(-1) == 1).all()
    bits = (projections.numpy().reshape(5, 3, 2) >= 0).astype(int)
    np.testing.assert_array_equal(tables.argmax(-1), bits[..., 0] + 2 * bits[..., 1])  # bucket Σ bit_t 2**t


def test_soft_buckets_are_distributions_that_tend_to_the_tables_as_tau_goes_to_zero():
    projections = torch.tensor(np.random.default_rng(1).standard_normal((6, 4 * 3)))
    hard = soft_buckets(projections, z=3, tau=1.0, straight_through=True).detach().numpy()
    gaps = []
    for tau in (1.0, 0.1, 0.01, 0.001):
        soft = soft_buckets(projections, z=3, tau=tau, straight_through=False).numpy()
        assert (soft >= 0).all()
        np.testing.assert_allclose(soft.reshape(6, 4, 8).sum(-1), 1.0, rtol=1e-12)
        gaps.append(np.abs(soft - hard).max())
    assert gaps == sorted(gaps, reverse=True) and gaps[0] > 0.1
    smallest = np.abs(projections.numpy()).min()
    assert gaps[-1] < 8 * np.exp(-smallest / 0.001) + 1e-12  # each bit within σ(-|a|/τ) of the hard one


@pytest.mark.parametrize("straight_through", [True, False])
def test_bucket_gradients_reach_the_projections_in_both_modes(straight_through):
    projections = torch.tensor(np.random.default_rng(2).standard_normal((4, 2 * 2)) * 0.5, requires_grad=True)
    rows = soft_buckets(projections, z=2, tau=0.5, straight_through=straight_through)
    weights = torch.tensor(np.random.default_rng(3).standard_normal(rows.shape))
    (rows * weights).sum().backward()
    assert torch.isfinite(projections.grad).all() and (projections.grad != 0).any()


# ------------------------------------------------------------------ the hashed surrogate
def _hashed_template():
    return init_transformer(vocab_size=5, dim=6, n_outputs=3, depth=2, max_len=9, heads=2, kind="collision",
                            causal=True, seed=0, dtype=np.float32)


def test_hashed_surrogate_draws_one_gaussian_per_hyperplane_coordinate_per_step():
    template = _hashed_template()
    hashing = HashedTraining(z=3, tables=(4, 2))
    surrogate = TorchSurrogate(template, hashing=hashing)
    widths = [[surrogate.params[f"layers.{l}.heads.{h}.query.weight"].shape[1] for h in range(2)] for l in range(2)]
    assert surrogate.noise_size == sum(w * ell * 3 for ws, ell in zip(widths, (4, 2)) for w in ws)
    assert TorchSurrogate(template).noise_size == 0
    surrogate.draw_noise(seed=5, step=3)
    first = surrogate.noise.clone()
    surrogate.draw_noise(seed=5, step=4)
    assert not torch.equal(first, surrogate.noise)
    surrogate.draw_noise(seed=5, step=3)
    assert torch.equal(first, surrogate.noise)
    surrogate.draw_noise(seed=6, step=3)
    assert not torch.equal(first, surrogate.noise)


def test_hashed_surrogate_refuses_tables_for_another_number_of_layers():
    with pytest.raises(ModelError, match="tables"):
        TorchSurrogate(_hashed_template(), hashing=HashedTraining(z=1, tables=(4,)))
    with pytest.raises(ModelError, match="HashedTraining"):
        TorchSurrogate(_hashed_template(), hashing=(1, (4, 4)))


def test_hashed_match2_surrogate_equals_the_numpy_model_with_anna_heads_on_the_same_hyperplanes():
    setup = Match2Setup(kind="hashed", z=1, tables=(4,), test_size=4, train_size=64)
    surrogate = TorchSurrogate(setup.template(seed=3), dtype=torch.float64, hashing=setup.hashing)
    rng = np.random.default_rng(0)  # weights away from the template, so the export is what is compared
    surrogate.load_arrays({k: v + 0.1 * rng.standard_normal(v.shape) for k, v in surrogate.numpy_arrays().items()})
    model = surrogate.to_transformer().with_attention("anna", lsh=LSHConfig(Hyperplane(), z=1, ell=4))
    params = Hyperplane().sample(setup.dim, 1, 4, model.head_seed(0, 0))
    with torch.no_grad():
        surrogate.noise.copy_(torch.tensor(_planes(params.directions).reshape(-1)))
    inputs, _ = setup.test_set()
    with torch.no_grad():
        ours = surrogate(inputs).numpy()
    reference = np.stack([model(row) for row in inputs])
    np.testing.assert_allclose(ours, reference, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------ training
def test_hashed_training_resumed_half_way_equals_the_uninterrupted_run(tmp_path):
    setup = Match2Setup(kind="hashed", z=2, tables=(3,), n=8, modulus=7, dim=8, train_size=64, batch_size=4)
    config = dict(log_every=5, checkpoint_every=15, learning_rate=0.01)
    straight = TorchSurrogate(setup.template(seed=1), hashing=setup.hashing)
    whole = train_surrogate(straight, setup.device_batches(0, chunk_size=7), TrainConfig(steps=30, **config),
                            seed=4)
    checkpoint = tmp_path / "run.ckpt"
    train_surrogate(TorchSurrogate(setup.template(seed=1), hashing=setup.hashing),
                    setup.device_batches(0, chunk_size=7), TrainConfig(steps=15, **config), checkpoint=checkpoint,
                    seed=4)
    resumed = TorchSurrogate(setup.template(seed=1), hashing=setup.hashing)
    log = train_surrogate(resumed, setup.device_batches(0, chunk_size=7), TrainConfig(steps=30, **config),
                          checkpoint=checkpoint, seed=4)
    assert log.resumed_from == 15 and log.losses == whole.losses
    for name, value in straight.numpy_arrays().items():
        np.testing.assert_array_equal(resumed.numpy_arrays()[name], value, err_msg=name)
    other = TorchSurrogate(setup.template(seed=1), hashing=setup.hashing)  # other hyperplanes, other run
    assert train_surrogate(other, setup.device_batches(0, chunk_size=7), TrainConfig(steps=30, **config),
                           seed=5).losses != whole.losses


def test_training_through_the_tables_lowers_the_loss():
    setup = Match2Setup(kind="hashed", z=1, tables=(8,), n=8, modulus=5, dim=16, train_size=256, batch_size=16,
                        steps=200, warmup_steps=0, decay="none", grad_clip=1.0)
    surrogate = TorchSurrogate(setup.template(seed=0), hashing=setup.hashing)
    log = train_surrogate(surrogate, setup.device_batches(0), TrainConfig(steps=200, batch_size=16, log_every=25,
                                                                          learning_rate=0.01, grad_clip=1.0))
    assert len(log.losses) == 8 and all(np.isfinite(loss) for _, loss in log.losses)
    assert log.losses[-1][1] < 0.5 * log.losses[0][1]


def test_a_hashed_surrogates_test_error_is_the_mean_over_draws_of_its_tables():
    from anna.experiments.training import surrogate_test_error
    from anna.train import token_errors

    setup = Match2Setup(kind="hashed", z=2, tables=(2,), n=8, modulus=5, dim=8, test_size=40)
    surrogate = TorchSurrogate(setup.template(seed=0), hashing=setup.hashing)
    inputs, targets = setup.test_set()
    errors = []
    for draw in range(3):
        surrogate.draw_noise(draw)
        with torch.no_grad():
            wrong, counted = token_errors(surrogate(inputs).numpy(), targets)
        errors.append(wrong / counted)
    assert len(set(errors)) > 1  # the draws differ, so the mean is not any one of them by accident
    assert surrogate_test_error(surrogate, inputs, targets, draws=3) == pytest.approx(np.mean(errors), abs=1e-12)


def test_train_to_file_trains_a_hashed_setup_and_records_its_tables(tmp_path):
    from anna.experiments.training import train_to_file
    from anna.transformer import Transformer

    setup = InductionSetup(kind="hashed", z=2, tables=[3, 2], n=10, dim=8, steps=4, log_every=2, test_size=2,
                           warmup_steps=0, decay="none")
    record = train_to_file(setup, tmp_path / "m", on_log=lambda *args: None)
    assert record.steps == 4 and record.setup["kind"] == "hashed" and record.setup["tables"] == [3, 2]
    assert InductionSetup(**record.setup).hashing == setup.hashing  # the record's setup is valid as saved
    model = Transformer.load(tmp_path / "m")
    assert {(h.kind, h.z) for layer in model.layers for h in layer.heads} == {("collision", 2)}


# ------------------------------------------------------------------ setups
@pytest.mark.parametrize("bad, field", [
    (dict(kind="hashed"), "tables"),
    (dict(kind="hashed", tables=(4, 4)), "tables"),
    (dict(kind="hashed", tables=(4,), z=0), "z"),
    (dict(kind="hashed", tables=(4,), z=9), "z"),
    (dict(kind="hashed", tables=(4,), tau=0.0), "tau"),
    (dict(kind="hashed", tables=(4,), tau=-1.0), "tau"),
    (dict(kind="hashed", tables=(4,), straight_through="yes"), "straight_through"),
    (dict(kind="softmax", tables=(4,)), "tables"),
    (dict(kind="softmax", z=2), "z"),
    (dict(init=3), "init"),
])
def test_setups_refuse_bad_hashing_fields_naming_the_field(bad, field):
    with pytest.raises(ParameterError, match=field):
        Match2Setup(**bad)
    two_layers = {**bad, "tables": bad["tables"] + (4,)} if "tables" in bad else bad  # InductionSetup: depth 2
    with pytest.raises(ParameterError, match=field):
        InductionSetup(**two_layers)


def test_setups_take_tables_as_a_tuple_list_or_single_count():
    assert InductionSetup(kind="hashed", tables=[32, 4]).hashing == HashedTraining(1, (32, 4))
    assert InductionSetup(kind="hashed", z=2, tables=(8, 8), tau=0.5, straight_through=False).hashing == \
        HashedTraining(2, (8, 8), 0.5, False)
    assert Match2Setup(kind="hashed", tables=4).tables == (4,)
    assert Match2Setup().hashing is None
    assert {h.kind for h in Match2Setup(kind="hashed", tables=(4,)).template(0).layers[0].heads} == {"collision"}


def test_init_loads_a_saved_model_as_the_template(tmp_path):
    saved = init_transformer(vocab_size=37, dim=8, n_outputs=2, depth=1, max_len=None, seed=7, dtype=np.float32)
    saved.save(tmp_path / "init")
    setup = Match2Setup(kind="hashed", tables=(4,), dim=8, init=str(tmp_path / "init"))
    template = setup.template(seed=0)
    ours = TorchSurrogate(template).numpy_arrays()
    expected = TorchSurrogate(saved).numpy_arrays()
    assert sorted(ours) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(ours[name], value, err_msg=name)
    assert not np.array_equal(ours["readout.weight"], TorchSurrogate(Match2Setup(dim=8).template(0))
                              .numpy_arrays()["readout.weight"])


# ------------------------------------------------------------------ scripts/train_runs.py
def _train_runs():
    spec = importlib.util.spec_from_file_location("train_runs", ROOT / "scripts" / "train_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("text, key, expected", [
    ("32x4", "tables", (32, 4)),
    ("8x8x8", "tables", (8, 8, 8)),
    ("true", "straight_through", True),
    ("false", "straight_through", False),
    ("0-8", "train_ks", tuple(range(9))),
    ("none", "grad_clip", None),
    ("none", "decay", "none"),
    ("3", "z", 3),
    ("0.25", "tau", 0.25),
    ("hashed", "kind", "hashed"),
])
def test_train_runs_parses_field_values(text, key, expected):
    value = _train_runs()._value(text, key)
    assert value == expected and type(value) is type(expected)


def test_train_runs_parses_a_hashed_run_into_a_valid_setup():
    name, task, overrides = _train_runs().parse_run("h=induction:kind=hashed,z=2,tables=32x4,tau=0.5,"
                                                    "straight_through=false")
    setup = InductionSetup(**overrides)
    assert (name, task) == ("h", "induction")
    assert setup.hashing == HashedTraining(2, (32, 4), 0.5, False)
