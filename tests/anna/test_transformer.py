"""The ANNA-transformer: forward pass, theory-mode maps, attention swaps, seeds, save/load, reports."""
from __future__ import annotations

import dataclasses
import io
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from anna.attention import anna_attention
from anna.lsh import CrossPolytope, Hyperplane, LSHConfig
from anna.reference import collision_attention, ema_attention, lowrank_attention, normalize_rows, softmax_attention
from anna.transformer import (
    MLP,
    Head,
    Layer,
    Linear,
    ResourceReport,
    TokenEmbedding,
    Transformer,
    derive_head_seed,
    gelu,
    init_transformer,
    load_transformer,
    save_transformer,
)

TOKENS = np.array([0, 3, 1, 1, 4, 2, 0, 3])
ANGULAR = LSHConfig(Hyperplane(), 2, 3)


def tiny_model(**overrides) -> Transformer:
    params = dict(vocab_size=5, dim=4, n_outputs=3, depth=2, heads=2, head_dim=3, max_len=10,
                  temperature=0.7, seed=11)
    params.update(overrides)
    return init_transformer(**params)


# ---------------------------------------------------------------------------------------------
# A hand-written numpy forward of a trained softmax model (the spec in the package docstring).

_erf = np.vectorize(math.erf)


def numpy_forward(model: Transformer, tokens: np.ndarray) -> np.ndarray:
    n = len(tokens)
    x = model.embedding.tokens[tokens] + model.embedding.positions[:n]
    for layer in model.layers:
        update = np.zeros_like(x)
        for head in layer.heads:
            q = x @ head.query.weight
            k = x @ head.key.weight
            q = q / np.linalg.norm(q, axis=1, keepdims=True)
            k = k / np.linalg.norm(k, axis=1, keepdims=True)
            scores = head.temperature * q @ k.T
            if layer.causal:
                scores = np.where(np.tril(np.ones((n, n), dtype=bool)), scores, -np.inf)
            weights = np.exp(scores - scores.max(axis=1, keepdims=True))
            weights /= weights.sum(axis=1, keepdims=True)
            update += (weights @ (x @ head.value.weight)) @ head.output.weight
        x = x + update
        if layer.mlp is not None:
            hidden = x @ layer.mlp.hidden.weight + layer.mlp.hidden.bias
            hidden = 0.5 * hidden * (1.0 + _erf(hidden / math.sqrt(2.0)))
            x = x + hidden @ layer.mlp.output.weight + layer.mlp.output.bias
    return x @ model.readout.weight + model.readout.bias


@pytest.mark.parametrize("causal", [False, True])
def test_trained_forward_equals_handwritten_numpy_forward(causal):
    model = tiny_model(causal=causal)
    np.testing.assert_allclose(model(TOKENS), numpy_forward(model, TOKENS), rtol=1e-12, atol=1e-12)


@given(st.integers(1, 3), st.integers(1, 3), st.booleans(), st.booleans(), st.integers(0, 2**31),
       st.integers(1, 10))
def test_random_trained_models_match_handwritten_forward(depth, heads, causal, mlp, seed, length):
    model = init_transformer(vocab_size=6, dim=4, n_outputs=2, depth=depth, heads=heads, head_dim=2,
                             max_len=10, causal=causal, mlp=mlp, temperature=2.0, seed=seed)
    tokens = np.random.default_rng(seed).integers(0, 6, size=length)
    np.testing.assert_allclose(model(tokens), numpy_forward(model, tokens), rtol=1e-11, atol=1e-11)


def test_float32_model_stays_float32():
    model = tiny_model(dtype=np.float32)
    out = model(TOKENS)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, numpy_forward(model, TOKENS), rtol=1e-4, atol=1e-4)


def test_return_states_gives_embedding_then_every_layer():
    model = tiny_model()
    outputs, states = model(TOKENS, return_states=True)
    assert len(states) == model.report().depth + 1
    np.testing.assert_array_equal(states[0], model.embedding(TOKENS))
    np.testing.assert_array_equal(outputs, model.readout(states[-1]))
    # states[1] is one layer applied to states[0]: a depth-1 model with the same first layer agrees
    first = Transformer(model.embedding, model.layers[:1], model.readout, seed=model.seed)
    np.testing.assert_array_equal(first(TOKENS, return_states=True)[1][1], states[1])


def test_gelu_is_the_exact_erf_form():
    x = np.linspace(-4, 4, 17)
    np.testing.assert_allclose(gelu(x), 0.5 * x * (1 + _erf(x / math.sqrt(2))), rtol=1e-15, atol=1e-15)
    assert gelu(x.astype(np.float32)).dtype == np.float32


# ---------------------------------------------------------------------------------------------
# Theory mode: callables, positions, exact-match heads (Match2, Thm 5.2)


def match2_model(modulus: int, record: dict | None = None) -> Transformer:
    """Q(x) = -x mod M, K(x) = x, V = 1 (docs/theory.md §4, Thm 5.2); the match bit goes to column 1."""
    def logged(name, f):
        def g(x, positions):
            if record is not None:
                record[name] = positions
            return f(x, positions)
        g.__qualname__ = name
        return g

    head = Head("ema",
                query=logged("query", lambda x, p: np.mod(-x[:, :1], modulus)),
                key=logged("key", lambda x, p: x[:, :1]),
                value=logged("value", lambda x, p: np.ones((x.shape[0], 1), dtype=np.int64)),
                output=logged("output", lambda a, p: np.concatenate([np.zeros_like(a), a], axis=1)),
                dim=1, value_dim=1)
    mlp = logged("mlp", lambda x, p: np.zeros_like(x))
    return Transformer(embedding=lambda inputs: np.stack([inputs.astype(np.float64), np.zeros(len(inputs))], 1),
                       layers=(Layer((head,), mlp),), readout=logged("readout", lambda x, p: x[:, 1]), dim=2)


def test_theory_mode_ema_model_solves_match2():
    modulus = 7
    inputs = np.random.default_rng(5).integers(0, modulus, size=40)
    labels = ((inputs[:, None] + inputs[None, :]) % modulus == 0).any(axis=1).astype(float)
    model = match2_model(modulus)
    assert model.mode == "theory"
    np.testing.assert_array_equal(model(inputs), labels)


def test_theory_mode_callables_receive_positions():
    record: dict = {}
    match2_model(5, record)(np.array([1, 4, 2, 2, 0]))
    assert sorted(record) == ["key", "mlp", "output", "query", "readout", "value"]
    for name, positions in record.items():
        assert positions.dtype == np.int64, name
        np.testing.assert_array_equal(positions, np.arange(5), err_msg=name)


def test_position_aware_callable_changes_the_output():
    # K depends on the position only: token i matches exactly the earlier token it names.
    head = Head("ema", query=lambda x, p: x[:, :1], key=lambda x, p: p[:, None].astype(float),
                value=lambda x, p: 10.0 * p[:, None], output=lambda a, p: np.concatenate([0 * a, a], 1),
                dim=1, value_dim=1)
    model = Transformer(lambda t: np.stack([t.astype(float), np.zeros(len(t))], 1), (Layer((head,)),),
                        lambda x, p: x[:, 1], dim=2)
    np.testing.assert_array_equal(model(np.array([0, 0, 1, 9])), [0.0, 0.0, 10.0, 0.0])


def test_run_reports_collision_counts_of_exact_match_heads():
    inputs = np.array([3, 4, 3, 0, 3])
    trace = match2_model(7).run(inputs)
    x = inputs[:, None].astype(float)
    np.testing.assert_array_equal(trace.counts[0][0], ema_attention(np.mod(-x, 7), x, np.ones((5, 1)))[1])
    assert trace.counts[0][0].tolist() == [1, 3, 1, 1, 1]  # 4 + 3 = 7: three 3s


def test_callable_returning_wrong_shape_is_named_in_the_error():
    head = Head("ema", lambda x, p: x[:2, :1], lambda x, p: x[:, :1], np.ones((2, 1)), np.ones((1, 2)), dim=1)
    model = Transformer(lambda t: np.ones((len(t), 2)), (Layer((head,)),), np.ones((2, 1)), dim=2)
    with pytest.raises(ValueError, match="query must return one row per token"):
        model(np.arange(4))
    head = Head("ema", lambda x, p: x[:, :2], lambda x, p: x[:, :1], np.ones((2, 1)), np.ones((1, 2)), dim=1)
    with pytest.raises(ValueError, match="query must return 1 columns"):
        Transformer(lambda t: np.ones((len(t), 2)), (Layer((head,)),), np.ones((2, 1)), dim=2)(np.arange(4))


# ---------------------------------------------------------------------------------------------
# Swapping attention (docs/theory.md §6)


def same_weights(a: Transformer, b: Transformer) -> bool:
    if a.embedding is not b.embedding or a.readout is not b.readout:
        return False
    for la, lb in zip(a.layers, b.layers, strict=True):
        if la.mlp is not lb.mlp or la.causal != lb.causal:
            return False
        for ha, hb in zip(la.heads, lb.heads, strict=True):
            if any(ha.maps[name] is not hb.maps[name] for name in ha.maps):
                return False
    return True


@pytest.mark.parametrize("kind", ["ema", "anna", "lowrank", "softmax", "collision"])
def test_swapping_attention_keeps_every_weight(kind):
    model = tiny_model()
    swapped = model.with_attention(kind, lsh=ANGULAR if kind == "anna" else None)
    assert same_weights(model, swapped)
    assert {h.kind for layer in swapped.layers for h in layer.heads} == {kind}
    assert all(h.normalize and h.temperature == 0.7 for layer in swapped.layers for h in layer.heads)
    assert swapped(TOKENS).shape == model(TOKENS).shape
    assert model.layers[0].heads[0].kind == "softmax"  # the original is untouched


def test_softmax_to_ema_head_computes_exact_match_on_normalised_vectors():
    model = tiny_model(depth=1, heads=1, mlp=False, max_len=None).with_attention("ema")
    head = model.layers[0].heads[0]
    head = dataclasses.replace(head, key=head.query)  # shared Q = K: equal tokens match exactly
    model = Transformer(model.embedding, (Layer((head,)),), model.readout)
    x0 = model.embedding(TOKENS)
    q = normalize_rows(x0 @ head.query.weight)
    attended, counts = ema_attention(q, q, x0 @ head.value.weight)
    trace = model.run(TOKENS)
    np.testing.assert_array_equal(trace.states[1], x0 + (np.zeros_like(x0) + attended @ head.output.weight))
    np.testing.assert_array_equal(trace.counts[0][0], counts)
    np.testing.assert_array_equal(counts, [2, 2, 2, 2, 1, 1, 2, 2])  # TOKENS = 0 3 1 1 4 2 0 3


HEAD_REFERENCES = {
    "softmax": lambda q, k, v: softmax_attention(q, k, v, temperature=0.7),
    "ema": lambda q, k, v: ema_attention(q, k, v)[0],
    "lowrank": lambda q, k, v: lowrank_attention(q, k, v),  # elu + 1
    "collision": lambda q, k, v: collision_attention(q, k, v, z=1),
    "lowrank-identity": lambda q, k, v: lowrank_attention(q, k, v, lambda x: x + 2.0, lambda x: x + 2.0),
}


@pytest.mark.parametrize("kind", sorted(HEAD_REFERENCES))
def test_each_head_kind_adds_its_reference_attention_to_the_stream(kind):
    model = tiny_model(depth=1, heads=2, mlp=False)
    if kind == "lowrank-identity":  # identity features of the callables Q + 2, K + 2 = features x + 2
        heads = tuple(dataclasses.replace(h, kind="lowrank", feature_map="identity", normalize=False,
                                          query=lambda x, p, w=h.query.weight: x @ w + 2.0,
                                          key=lambda x, p, w=h.key.weight: x @ w + 2.0)
                      for h in model.layers[0].heads)
        model = Transformer(model.embedding, (Layer(heads),), model.readout)
    else:
        model = model.with_attention(kind)
    x0 = model.embedding(TOKENS)
    update = np.zeros_like(x0)
    for h in tiny_model(depth=1, heads=2, mlp=False).layers[0].heads:  # the same weights
        q, k = x0 @ h.query.weight, x0 @ h.key.weight
        if kind != "lowrank-identity":
            q, k = normalize_rows(q), normalize_rows(k)
        update = update + HEAD_REFERENCES[kind](q, k, x0 @ h.value.weight) @ h.output.weight
    np.testing.assert_allclose(model.run(TOKENS).states[1], x0 + update, rtol=1e-13, atol=1e-13)


def test_swap_to_anna_with_one_lsh_config_per_layer():
    model = tiny_model().with_attention("anna", lsh=[ANGULAR, LSHConfig(CrossPolytope(), 1, 5)], seed=3)
    report = model.report()
    assert report.tables == ((3, 3), (5, 5))
    assert report.hash_functions == ((6, 6), (5, 5))
    assert model.seed == 3
    back = model.with_attention("softmax")
    assert all(h.lsh is None and h.seed is None for layer in back.layers for h in layer.heads)
    np.testing.assert_array_equal(back(TOKENS), tiny_model()(TOKENS))


def test_swap_errors_name_the_problem():
    model = tiny_model()
    with pytest.raises(ValueError, match="lsh is required"):
        model.with_attention("anna")
    with pytest.raises(ValueError, match="lsh is only for kind='anna'"):
        model.with_attention("ema", lsh=ANGULAR)
    with pytest.raises(ValueError, match="one per layer"):
        model.with_attention("anna", lsh=[ANGULAR])
    with pytest.raises(ValueError, match="kind must be one of"):
        model.with_attention("flash")


# ---------------------------------------------------------------------------------------------
# Seeds of anna heads


def test_anna_heads_are_deterministic_per_seed():
    model = tiny_model().with_attention("anna", lsh=ANGULAR, seed=4)
    np.testing.assert_array_equal(model(TOKENS), model(TOKENS))
    np.testing.assert_array_equal(model(TOKENS), tiny_model().with_attention("anna", lsh=ANGULAR, seed=4)(TOKENS))
    seeds = {model.head_seed(l, h) for l in range(2) for h in range(2)}
    assert len(seeds) == 4  # every head hashes differently
    other = model.with_attention("anna", seed=5)
    assert {other.head_seed(l, h) for l in range(2) for h in range(2)}.isdisjoint(seeds)


def test_anna_head_hashes_its_normalised_vectors_with_its_seed():
    model = tiny_model(depth=1, heads=2, mlp=False).with_attention("anna", lsh=ANGULAR, seed=8)
    x0 = model.embedding(TOKENS)
    update = np.zeros_like(x0)  # heads are summed in order, then added to the stream
    for h, head in enumerate(model.layers[0].heads):
        q, k = normalize_rows(x0 @ head.query.weight), normalize_rows(x0 @ head.key.weight)
        attended, _ = anna_attention(q, k, x0 @ head.value.weight, ANGULAR, seed=derive_head_seed(8, 0, h))
        update = update + attended @ head.output.weight
    np.testing.assert_array_equal(model.run(TOKENS).states[1], x0 + update)


def test_a_head_seed_of_its_own_overrides_the_derived_one():
    model = tiny_model(depth=1, heads=1).with_attention("anna", lsh=ANGULAR)
    layer = model.layers[0]
    pinned = Transformer(model.embedding, (Layer((dataclasses.replace(layer.heads[0], seed=123),), layer.mlp),),
                         model.readout, seed=model.seed)
    assert pinned.head_seed(0, 0) == 123 and model.head_seed(0, 0) == derive_head_seed(model.seed, 0, 0)
    # a new model seed re-derives every head seed, own seeds included
    assert pinned.with_attention("anna", seed=9).head_seed(0, 0) == derive_head_seed(9, 0, 0)


# ---------------------------------------------------------------------------------------------
# Save / load


ROUND_TRIP_MODELS = {
    "softmax_causal": lambda: tiny_model(causal=True),
    "anna_per_layer": lambda: tiny_model().with_attention("anna", lsh=[ANGULAR, LSHConfig(CrossPolytope(), 1, 4)],
                                                          seed=2),
    "ema_float32": lambda: tiny_model(dtype=np.float32).with_attention("ema"),
    "lowrank_no_mlp": lambda: tiny_model(mlp=False).with_attention("lowrank", feature_map="identity"),
    "collision_z3_causal": lambda: tiny_model(causal=True).with_attention("collision", z=3),
    "no_positions": lambda: tiny_model(max_len=None, depth=1),
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIP_MODELS))
def test_save_load_round_trip_is_bit_exact(tmp_path, name):
    model = ROUND_TRIP_MODELS[name]()
    npz_path, json_path = model.save(tmp_path / "model")
    assert npz_path.name == "model.npz" and json_path.name == "model.json"
    loaded = Transformer.load(tmp_path / "model.json")
    np.testing.assert_array_equal(loaded(TOKENS), model(TOKENS))
    assert loaded.report() == model.report() and loaded.seed == model.seed
    for la, lb in zip(model.layers, loaded.layers, strict=True):
        assert la.causal == lb.causal
        for ha, hb in zip(la.heads, lb.heads, strict=True):
            assert (ha.kind, ha.lsh, ha.seed, ha.temperature, ha.normalize, ha.feature_map, ha.scale, ha.z) == \
                   (hb.kind, hb.lsh, hb.seed, hb.temperature, hb.normalize, hb.feature_map, hb.scale, hb.z)
            for map_name in ha.maps:
                assert ha.maps[map_name].weight.dtype == hb.maps[map_name].weight.dtype
                np.testing.assert_array_equal(ha.maps[map_name].weight, hb.maps[map_name].weight)


def test_head_seed_and_awkward_temperature_survive_round_trip(tmp_path):
    model = tiny_model(depth=1, heads=1, temperature=0.1 + 0.2)
    head = model.layers[0].heads[0]
    head = dataclasses.replace(head, kind="anna", lsh=ANGULAR, seed=2**40)
    model = Transformer(model.embedding, (Layer((head,)),), model.readout)
    save_transformer(model, tmp_path / "m")
    loaded = load_transformer(tmp_path / "m")
    assert loaded.layers[0].heads[0].seed == 2**40
    assert loaded.layers[0].heads[0].temperature == 0.1 + 0.2
    np.testing.assert_array_equal(loaded(TOKENS), model(TOKENS))


def test_saving_a_theory_mode_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="theory mode"):
        match2_model(5).save(tmp_path / "m")
    assert not list(tmp_path.iterdir())


def test_loading_a_theory_mode_or_foreign_file_is_refused(tmp_path):
    tiny_model().save(tmp_path / "m")
    metadata = json.loads((tmp_path / "m.json").read_text())
    (tmp_path / "m.json").write_text(json.dumps({**metadata, "mode": "theory"}))
    with pytest.raises(ValueError, match="only trained-mode"):
        load_transformer(tmp_path / "m")
    (tmp_path / "m.json").write_text(json.dumps({**metadata, "version": 99}))
    with pytest.raises(ValueError, match="version"):
        load_transformer(tmp_path / "m")


def test_loading_never_unpickles_and_checks_arrays(tmp_path):
    tiny_model().save(tmp_path / "m")
    with np.load(tmp_path / "m.npz") as archive:
        arrays = {name: archive[name] for name in archive.files}
    np.savez(tmp_path / "m.npz", **{**arrays, "readout.weight": np.array([object()], dtype=object)})
    with pytest.raises(ValueError, match="allow_pickle"):
        load_transformer(tmp_path / "m")
    np.savez(tmp_path / "m.npz", **{**arrays, "readout.weight": arrays["readout.weight"][:, :2]})
    with pytest.raises(ValueError, match="readout.weight has shape"):
        load_transformer(tmp_path / "m")


# ---------------------------------------------------------------------------------------------
# ResourceReport and rendering


def test_resource_report_numbers_for_a_small_model():
    model = tiny_model()  # d=4, 2 layers x 2 heads, m=3, vocab 5, max_len 10, 3 outputs, MLP 16
    model = Transformer(model.embedding,
                        (model.layers[0],
                         Layer((dataclasses.replace(model.layers[1].heads[0], kind="anna", lsh=ANGULAR),
                                model.layers[1].heads[1]), model.layers[1].mlp)),
                        model.readout)
    report = model.report()
    embedding = 5 * 4 + 10 * 4
    head = 3 * (4 * 3) + 3 * 4
    mlp = (4 * 16 + 16) + (16 * 4 + 4)
    readout = 4 * 3 + 3
    assert report.parameters == embedding + 2 * (2 * head + mlp) + readout == 563
    assert (report.depth, report.heads_per_layer, report.m, report.model_dim, report.width) == (2, (2, 2), 3, 4, 6)
    assert report.kinds == (("softmax", "softmax"), ("anna", "softmax"))
    assert report.tables == ((0, 0), (3, 0)) and report.hash_functions == ((0, 0), (6, 0))
    assert (report.total_tables, report.total_hash_functions, report.callable_maps) == (3, 6, 0)
    assert report.to_dict()["width"] == 6


def test_resource_report_of_a_theory_model_counts_callables_not_parameters():
    report = match2_model(5).report()
    # embedding, Q, K, V, W_h, MLP and ψ are callables
    assert (report.parameters, report.callable_maps) == (0, 7)
    assert (report.m, report.width, report.model_dim) == (1, 1, 2)
    assert report.parameters_label() == "0 + 7 callable maps"


@pytest.mark.parametrize("field,value,message", [
    ("depth", 3, "one entry per layer"),
    ("m", -1, "m must be a non-negative int"),
    ("tables", ((0,), (0, 0)), r"tables\[0\] must be a tuple of 2"),
    ("kinds", (("flash", "ema"), ("ema",)), "kind must be one of"),
    ("tables", ((0, 0), (0,)), "anna head needs ell >= 1"),
    ("hash_functions", ((1, 0), (4,)), "ema head has no LSH tables"),
])
def test_resource_report_rejects_inconsistent_numbers(field, value, message):
    good = dict(depth=2, heads_per_layer=(2, 1), kinds=(("ema", "ema"), ("anna",)), m=4, model_dim=8,
                tables=((0, 0), (2,)), hash_functions=((0, 0), (4,)), parameters=0, callable_maps=3)
    ResourceReport(**good)
    with pytest.raises(ValueError, match=message):
        ResourceReport(**{**good, field: value})


def render(obj) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(obj)
    return console.file.getvalue()


def test_rich_rendering_lists_layers_heads_kinds_and_sizes():
    model = tiny_model(causal=True).with_attention("anna", lsh=ANGULAR, seed=1)
    text = render(model)
    assert "layer 1 (causal): 2 head(s)" in text
    assert text.count("anna (m=3, m_v=3") == 4
    assert f"seed={derive_head_seed(1, 1, 0)}" in text
    assert "MLP(4→16→4, GeLU)" in text and "readout ψ: Linear(4→3, bias)" in text
    assert "563" in render(model.report()) and "anna ℓ=3 z·ℓ=6, anna ℓ=3 z·ℓ=6" in text
    assert "callable" in render(match2_model(5)) and "0 + 7 callable maps" in render(match2_model(5))


# ---------------------------------------------------------------------------------------------
# Validation at construction and at the input


@pytest.mark.parametrize("build,message", [
    (lambda: Head("flash", np.eye(2), np.eye(2), np.eye(2), np.eye(2)), "kind must be one of"),
    (lambda: Head("ema", lambda x, p: x, lambda x, p: x, np.eye(2), np.eye(2)), "dim is required"),
    (lambda: Head("ema", np.eye(2), np.ones((2, 3)), np.eye(2), np.eye(2)), "dim disagrees"),
    (lambda: Head("anna", np.eye(2), np.eye(2), np.eye(2), np.eye(2)), "anna head needs lsh"),
    (lambda: Head("softmax", np.eye(2), np.eye(2), np.eye(2), np.eye(2), lsh=ANGULAR), "takes no lsh"),
    (lambda: Head("softmax", np.eye(2), np.eye(2), np.eye(2), np.eye(2), temperature=-1.0), "temperature"),
    (lambda: Head("lowrank", np.eye(2), np.eye(2), np.eye(2), np.eye(2), feature_map="relu"), "feature_map"),
    (lambda: Head("ema", np.eye(2), np.eye(2), np.eye(2), "W"), "output must be a weight matrix"),
    (lambda: Head("ema", np.eye(2), np.eye(2), np.eye(2), np.eye(2), normalize=1), "normalize must be a bool"),
    (lambda: Linear(np.eye(2), np.zeros(3)), "bias must have length 2"),
    (lambda: Linear(np.eye(2, dtype=np.int64)), "weight must be float32 or float64"),
    (lambda: MLP(Linear(np.ones((2, 8))), Linear(np.ones((8, 3)))), "MLP shapes"),
    (lambda: Layer((Head("ema", np.eye(2), np.eye(2), np.eye(2), np.eye(2)),), causal="no"), "causal must be"),
    (lambda: Layer(("head",)), "heads must be a sequence of Head"),
    (lambda: TokenEmbedding(np.eye(3), np.zeros((4, 2))), "positions must be"),
    (lambda: Transformer(TokenEmbedding(np.eye(3)), (), np.ones((2, 2))), "readout dimension is 2"),
    (lambda: Transformer(lambda t: t, (), np.ones((2, 2))), "dim is required"),
    (lambda: Transformer(TokenEmbedding(np.eye(3)), (), np.ones((3, 2)), seed=-1), "seed must be non-negative"),
])
def test_bad_construction_raises_value_error_naming_the_problem(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("inputs,message", [
    (np.array([0, 9]), r"token ids in \[0, 5\)"),
    (np.array([0.0, 1.0]), "1-D integer array"),
    ([0, 1], "1-D integer array"),
    (np.zeros(11, dtype=np.int64), "longer than max_len 10"),
])
def test_bad_inputs_raise_value_error(inputs, message):
    with pytest.raises(ValueError, match=message):
        tiny_model()(inputs)


def test_embedding_output_is_checked_in_theory_mode():
    model = Transformer(lambda t: np.full((len(t), 2), np.nan), (), lambda x, p: x, dim=2)
    with pytest.raises(ValueError, match="embedding output contains NaN"):
        model(np.arange(3))
    model = Transformer(lambda t: np.ones((len(t), 3)), (), lambda x, p: x, dim=2)
    with pytest.raises(ValueError, match="embedding output must have d = 2"):
        model(np.arange(3))


def test_head_dims_are_inferred_from_whichever_map_is_a_matrix():
    head = Head("ema", lambda x, p: x, np.ones((4, 2)), lambda x, p: x, np.ones((3, 4)))
    assert (head.dim, head.value_dim) == (2, 3)


def test_weights_are_private_read_only_copies():
    weight = np.eye(2)
    f = Linear(weight)
    weight[0, 0] = 5.0
    assert f.weight[0, 0] == 1.0
    with pytest.raises(ValueError):
        f.weight[0, 0] = 2.0


def test_a_lowrank_heads_scale_round_trips_and_other_kinds_refuse_it(tmp_path):
    model = init_transformer(vocab_size=5, dim=4, n_outputs=3, depth=1, max_len=10, kind="lowrank", scale=3.0, seed=2)
    model.save(tmp_path / "m")
    again = Transformer.load(tmp_path / "m")
    assert again.layers[0].heads[0].scale == 3.0
    np.testing.assert_array_equal(again(TOKENS), model(TOKENS))
    assert model.with_attention("softmax").layers[0].heads[0].scale == 1.0
    with pytest.raises(ValueError, match="only a lowrank head takes scale"):
        init_transformer(vocab_size=5, dim=4, n_outputs=3, depth=1, max_len=10, scale=3.0)
    with pytest.raises(ValueError, match="scale"):
        init_transformer(vocab_size=5, dim=4, n_outputs=3, depth=1, max_len=10, kind="lowrank", scale=0.0)


def test_a_collision_head_attends_with_its_z_and_swaps_to_and_from_anna_keeping_z():
    model = tiny_model(depth=1, heads=1, mlp=False, causal=True)
    x0 = model.embedding(TOKENS)
    h = model.layers[0].heads[0]
    q, k, v = normalize_rows(x0 @ h.query.weight), normalize_rows(x0 @ h.key.weight), x0 @ h.value.weight
    collision = model.with_attention("collision", z=2)
    expected = x0 + collision_attention(q, k, v, z=2, causal=True) @ h.output.weight
    np.testing.assert_allclose(collision.run(TOKENS).states[1], expected, rtol=1e-13, atol=1e-13)
    assert "hyperplane z=2" in collision.layers[0].heads[0].label()
    # anna -> collision takes the tables' z (their expectation); a collision head keeps its own
    anna = model.with_attention("anna", lsh=LSHConfig(Hyperplane(), 3, 8))
    assert anna.with_attention("collision").layers[0].heads[0].z == 3
    assert collision.with_attention("collision").layers[0].heads[0].z == 2
    assert collision.with_attention("softmax").layers[0].heads[0].z == 1
    assert collision.report().tables == ((0,),)


def test_only_collision_heads_take_z():
    with pytest.raises(ValueError, match="only a collision head takes z"):
        init_transformer(vocab_size=5, dim=4, n_outputs=3, depth=1, max_len=10, z=2)
    with pytest.raises(ValueError, match="z must be"):
        init_transformer(vocab_size=5, dim=4, n_outputs=3, depth=1, max_len=10, kind="collision", z=0)
    with pytest.raises(ValueError, match="z is only for kind='collision'"):
        tiny_model().with_attention("softmax", z=2)
    with pytest.raises(ValueError, match="z must be"):
        tiny_model().with_attention("collision", z=1.5)
