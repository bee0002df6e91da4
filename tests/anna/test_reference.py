"""The exact references against brute-force dense attention (shared cases and hypothesis)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from anna.attention import anna_attention
from anna.lsh import Hyperplane, LSHConfig
from anna.reference import (
    COSINE_CLAMP,
    collision_attention,
    collision_weights,
    elu_feature_map,
    ema_attention,
    lowrank_attention,
    normalize_rows,
    softmax_attention,
)

# ---------------------------------------------------------------------------------------------
# Dense oracles: N_q x N_k weight matrices, written straight from docs/theory.md §2.


def dense_ema(q, k, v, causal=False):
    match = (q[:, None, :].astype(np.float64) == k[None, :, :].astype(np.float64)).all(axis=2)
    if causal:
        match &= np.tril(np.ones((q.shape[0], k.shape[0]), dtype=bool))
    counts = match.sum(axis=1)
    weights = match / np.maximum(counts, 1)[:, None]
    return weights @ v.astype(np.float64), counts


def dense_softmax(q, k, v, beta=1.0, causal=False):
    scores = beta * (q.astype(np.float64) @ k.astype(np.float64).T)
    if causal:
        scores = np.where(np.tril(np.ones(scores.shape, dtype=bool)), scores, -np.inf)
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    return (weights / weights.sum(axis=1, keepdims=True)) @ v.astype(np.float64)


def dense_lowrank(q, k, v, phi_q, phi_k, causal=False):
    scores = phi_q(q.astype(np.float64)) @ phi_k(k.astype(np.float64)).T
    if causal:
        scores = np.tril(scores)
    return (scores / scores.sum(axis=1, keepdims=True)) @ v.astype(np.float64)


def dense_collision(q, k, v, z=1, causal=False):
    """Weights from the hyperplane family's own collision probability ``1 − θ/π`` at the chord of
    the unit rows (clipped to the probabilities of the clamped cosines), to the power z."""
    chord = lambda a, b: float(np.linalg.norm(a / np.linalg.norm(a) - b / np.linalg.norm(b)))
    low, high = (1.0 - np.arccos(c) / np.pi for c in (-1.0 + COSINE_CLAMP, 1.0 - COSINE_CLAMP))
    p = np.array([[np.clip(Hyperplane().collision_probability(min(2.0, chord(a, b))), low, high) ** z
                   for b in k.astype(np.float64)] for a in q.astype(np.float64)])
    if causal:
        p = np.tril(p)
    return (p / p.sum(axis=1, keepdims=True)) @ v.astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Inputs: small integer-valued entries make exact matches frequent.


@st.composite
def attention_inputs(draw, same_length=False, levels=3):
    n_q = draw(st.integers(1, 12))
    n_k = n_q if same_length else draw(st.integers(1, 12))
    m = draw(st.integers(1, 3))
    d_v = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    q = rng.integers(-levels // 2, levels - levels // 2, size=(n_q, m)).astype(dtype)
    k = rng.integers(-levels // 2, levels - levels // 2, size=(n_k, m)).astype(dtype)
    v = rng.normal(size=(n_k, d_v)).astype(dtype)
    return q, k, v


def random_qkv(n_q, n_k, m, d_v, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n_q, m)).astype(dtype), rng.normal(size=(n_k, m)).astype(dtype),
            rng.normal(size=(n_k, d_v)).astype(dtype))


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Exact-match attention

EMA_CASES = [
    # (name, q, k) -- values are 10 * key index + 1
    ("all_match", [[1.0], [1.0]], [[1.0], [1.0], [1.0]]),
    ("no_match", [[1.0], [2.0]], [[3.0], [4.0], [5.0]]),
    ("signed_zero_matches", [[-0.0, 1.0]], [[0.0, 1.0], [0.0, -1.0]]),
    ("vector_equality_not_coordinates", [[1.0, 2.0]], [[1.0, 3.0], [2.0, 2.0], [1.0, 2.0]]),
    ("causal_sees_only_earlier_keys", [[1.0], [2.0], [1.0]], [[2.0], [1.0], [1.0]]),
    ("self_match_diagonal", [[0.0], [1.0], [0.0], [1.0]], [[0.0], [1.0], [0.0], [1.0]]),
]


# causal needs N_q == N_k, so only the square cases run causally
EMA_RUNS = [(name, q, k, causal) for name, q, k in EMA_CASES
            for causal in ([False, True] if len(q) == len(k) else [False])]


@pytest.mark.parametrize("name,q,k,causal", EMA_RUNS, ids=[f"{r[0]}-causal={r[3]}" for r in EMA_RUNS])
def test_ema_matches_dense_oracle_on_case_table(name, q, k, causal):
    q, k = np.array(q), np.array(k)
    v = 10.0 * np.arange(k.shape[0], dtype=np.float64)[:, None] + 1.0
    out, counts = ema_attention(q, k, v, causal=causal)
    expected, expected_counts = dense_ema(q, k, v, causal=causal)
    np.testing.assert_allclose(out, expected, rtol=1e-15)
    np.testing.assert_array_equal(counts, expected_counts)


@given(attention_inputs())
def test_ema_equals_dense_oracle(inputs):
    q, k, v = inputs
    out, counts = ema_attention(q, k, v)
    expected, expected_counts = dense_ema(q, k, v)
    assert out.dtype == v.dtype and counts.dtype == np.int64
    np.testing.assert_array_equal(counts, expected_counts)
    np.testing.assert_allclose(out, expected, **tol(v.dtype))


@given(attention_inputs(same_length=True))
def test_causal_ema_equals_dense_masked_oracle(inputs):
    q, k, v = inputs
    out, counts = ema_attention(q, k, v, causal=True)
    expected, expected_counts = dense_ema(q, k, v, causal=True)
    np.testing.assert_array_equal(counts, expected_counts)
    np.testing.assert_allclose(out, expected, **tol(v.dtype))


def test_ema_on_integer_keys_equals_grouping_by_value():
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 20, size=300)
    queries = rng.integers(0, 25, size=200)
    values = rng.normal(size=(300, 2))
    out, counts = ema_attention(queries[:, None].astype(np.float64), keys[:, None].astype(np.float64), values)
    for i, query in enumerate(queries):
        group = values[keys == query]
        assert counts[i] == len(group)
        expected = group.mean(axis=0) if len(group) else np.zeros(2)
        np.testing.assert_allclose(out[i], expected, rtol=1e-12, atol=1e-15)


def test_ema_no_match_gives_zero_row_and_count_zero_distinct_from_real_zero():
    q = np.array([[1.0], [7.0]])
    k = np.array([[1.0], [1.0]])
    v = np.array([[1.0], [-1.0]])  # the matched average is a real zero
    out, counts = ema_attention(q, k, v)
    np.testing.assert_array_equal(out, [[0.0], [0.0]])
    np.testing.assert_array_equal(counts, [2, 0])


def test_causal_ema_prefix_sums_do_not_mix_groups():
    # A huge-valued group next to a tiny one: a global cumsum minus offset would lose the tiny one.
    n = 64
    k = (np.arange(n) % 2).astype(np.float64)[:, None]
    v = np.where(k == 0, 1e17, 1.0)
    out, counts = ema_attention(k, k, v, causal=True)
    np.testing.assert_array_equal(out[k[:, 0] == 1], 1.0)
    np.testing.assert_array_equal(counts, np.arange(n) // 2 + 1)


def test_ema_large_input_runs_without_quadratic_memory():
    # 200k x 200k dense would need 40 G entries; the grouped implementation is near-linear.
    rng = np.random.default_rng(0)
    n = 200_000
    k = rng.integers(0, 1000, size=(n, 1)).astype(np.float64)
    v = rng.normal(size=(n, 1))
    out, counts = ema_attention(k, k, v, causal=True)
    assert counts.sum() == sum(c * (c + 1) // 2 for c in np.bincount(k[:, 0].astype(int)))
    first = np.flatnonzero(k[:, 0] == k[0, 0])
    np.testing.assert_allclose(out[first[:3], 0], np.cumsum(v[first[:3], 0]) / np.arange(1, 4))


# ---------------------------------------------------------------------------------------------
# Softmax attention


@given(st.integers(1, 10), st.integers(1, 10), st.integers(1, 4), st.integers(0, 2**31),
       st.sampled_from([0.0, 0.1, 1.0, 10.0]), st.booleans())
def test_softmax_equals_dense_oracle(n_q, n_k, m, seed, beta, causal):
    if causal:
        n_k = n_q
    q, k, v = random_qkv(n_q, n_k, m, 2, seed)
    out = softmax_attention(q, k, v, temperature=beta, causal=causal, chunk=3)
    np.testing.assert_allclose(out, dense_softmax(q, k, v, beta, causal), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_softmax_is_invariant_to_chunk_size(causal):
    q, k, v = random_qkv(37, 37, 5, 3, seed=1)
    results = [softmax_attention(q, k, v, temperature=2.0, causal=causal, chunk=c) for c in (1, 4, 16, 37, 1000)]
    for result in results[1:]:
        np.testing.assert_allclose(result, results[0], rtol=1e-13, atol=1e-14)


def test_softmax_is_stable_for_huge_scores():
    q = np.array([[1000.0], [-1000.0]])
    k = np.array([[1.0], [2.0]])
    v = np.array([[1.0], [5.0]])
    out = softmax_attention(q, k, v, temperature=10.0)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, [[5.0], [1.0]])


def test_softmax_normalize_uses_unit_norm_queries_and_keys():
    q, k, v = random_qkv(6, 9, 4, 2, seed=2)
    out = softmax_attention(q * 7.0, k * 0.1, v, temperature=3.0, normalize=True)
    np.testing.assert_allclose(out, dense_softmax(normalize_rows(q), normalize_rows(k), v, 3.0), rtol=1e-12)


def test_normalize_rows_gives_unit_rows_and_keeps_zero_rows():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-3, 0.0]], dtype=np.float32)
    y = normalize_rows(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), [1.0, 0.0, 1.0], rtol=1e-6)


def test_softmax_keeps_float32_dtype():
    q, k, v = random_qkv(4, 5, 3, 2, seed=3, dtype=np.float32)
    out = softmax_attention(q, k, v)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, dense_softmax(q, k, v), rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Low-rank attention


def squares(x):
    return np.concatenate([x**2, np.ones((x.shape[0], 1))], axis=1)


@given(st.integers(1, 10), st.integers(1, 10), st.integers(1, 4), st.integers(0, 2**31), st.booleans(),
       st.sampled_from(["elu", "squares"]), st.integers(1, 4))
def test_lowrank_equals_dense_oracle(n_q, n_k, m, seed, causal, feature, chunk):
    if causal:
        n_k = n_q
    q, k, v = random_qkv(n_q, n_k, m, 3, seed)
    phi = elu_feature_map if feature == "elu" else squares
    out = lowrank_attention(q, k, v, phi, phi, causal=causal, chunk=chunk)
    np.testing.assert_allclose(out, dense_lowrank(q, k, v, phi, phi, causal), rtol=1e-10, atol=1e-12)


def test_lowrank_default_feature_map_is_elu_plus_one():
    q, k, v = random_qkv(5, 7, 3, 2, seed=4)
    np.testing.assert_allclose(lowrank_attention(q, k, v),
                               dense_lowrank(q, k, v, elu_feature_map, elu_feature_map), rtol=1e-12)
    assert (elu_feature_map(np.linspace(-30, 30, 101)[:, None]) > 0).all()


def test_lowrank_with_separate_query_and_key_maps():
    q, k, v = random_qkv(5, 7, 3, 2, seed=5)

    def phi_q(x):
        return np.exp(x)

    def phi_k(x):
        return np.exp(-x)

    np.testing.assert_allclose(lowrank_attention(q, k, v, phi_q, phi_k),
                               dense_lowrank(q, k, v, phi_q, phi_k), rtol=1e-12)


def test_lowrank_zero_normaliser_raises():
    q = np.array([[1.0], [2.0]])
    k = np.array([[1.0], [-1.0]])
    v = np.ones((2, 1))
    with pytest.raises(ValueError, match="normaliser"):
        lowrank_attention(q, k, v, lambda x: x, lambda x: x)  # 1*1 + 1*(-1) = 0
    with pytest.raises(ValueError, match=r"normaliser.*first i = 1"):
        lowrank_attention(q, k, v, lambda x: x, lambda x: x, causal=True, chunk=1)


def test_lowrank_feature_map_shape_errors_name_the_map():
    q, k, v = random_qkv(3, 3, 2, 1, seed=6)
    with pytest.raises(ValueError, match="phi_q"):
        lowrank_attention(q, k, v, lambda x: x[:2], elu_feature_map)
    with pytest.raises(ValueError, match="same rank"):
        lowrank_attention(q, k, v, elu_feature_map, squares)


# ---------------------------------------------------------------------------------------------
# Collision attention: the expectation of Algorithm 1 with hyperplane tables


@given(st.integers(1, 10), st.integers(1, 10), st.integers(1, 4), st.integers(0, 2**31), st.integers(1, 4),
       st.booleans())
def test_collision_equals_the_hyperplane_collision_probability_oracle(n_q, n_k, m, seed, z, causal):
    if causal:
        n_k = n_q
    q, k, v = random_qkv(n_q, n_k, m, 2, seed)
    out = collision_attention(q, k, v, z=z, causal=causal, chunk=3)
    # the oracle clamps probabilities (not cosines) below 1: equal up to the clamp's effect near θ = 0
    np.testing.assert_allclose(out, dense_collision(q, k, v, z, causal), rtol=1e-6, atol=1e-6)


def test_collision_weights_of_same_orthogonal_and_opposite_directions():
    x = np.array([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [1.0, 1.0]])
    w = collision_weights(x[:1], x, z=1)[0]
    np.testing.assert_allclose(w, [1.0, 0.5, 0.0, 0.75], atol=1e-3)
    np.testing.assert_allclose(collision_weights(x[:1], x, z=3)[0], w ** 3, rtol=1e-12)
    assert collision_weights(x, x, causal=True)[0, 1:].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("z, causal", [(1, False), (1, True), (2, True)])
def test_algorithm1_with_many_hyperplane_tables_converges_to_collision_attention(z, causal):
    q, k, v = random_qkv(12, 12, 4, 3, seed=5)
    exact = collision_attention(q, k, v, z=z, causal=causal)
    errors = []
    for ell in (8, 128, 2048):
        outs = [anna_attention(q, k, v, LSHConfig(Hyperplane(), z, ell), seed=s, causal=causal)[0] for s in range(4)]
        errors.append(float(np.mean([np.abs(out - exact).mean() for out in outs])))
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 0.25 * errors[0] and errors[2] < 0.03, errors  # ~ 1/√ℓ: 16x fewer tables per step


def test_collision_keeps_float32_and_never_leaves_a_row_empty():
    q, k, v = random_qkv(5, 5, 3, 2, seed=1, dtype=np.float32)
    out = collision_attention(-k, k, v, z=4, causal=True)  # every query opposite to its own key
    assert out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_allclose(out[0], v[0], rtol=1e-6)  # one visible key: its value, whatever the angle


# ---------------------------------------------------------------------------------------------
# Boundary validation (shared by the references)

REFERENCES = {
    "ema": lambda q, k, v, **kw: ema_attention(q, k, v, **kw),
    "softmax": lambda q, k, v, **kw: softmax_attention(q, k, v, **kw),
    "lowrank": lambda q, k, v, **kw: lowrank_attention(q, k, v, **kw),
    "collision": lambda q, k, v, **kw: collision_attention(q, k, v, **kw),
}
GOOD = random_qkv(3, 4, 2, 2, seed=7)
BAD_INPUTS = [
    # (argument position, replacement, message fragment)
    (0, GOOD[0][:, :1].copy(), "same number of columns"),
    (0, GOOD[0].ravel(), "q must have rank 2"),
    (1, GOOD[1].astype(np.int64), "k must be float32 or float64"),
    (1, np.asfortranarray(GOOD[1]), "k must be C-contiguous"),
    (2, np.full((4, 2), np.nan), "v contains NaN"),
    (2, GOOD[2][:3].copy(), "k and v must have the same number of rows"),
    (2, [[1.0, 2.0]] * 4, "v must be a numpy array"),
]


@pytest.mark.parametrize("reference", sorted(REFERENCES))
@pytest.mark.parametrize("position,replacement,message", BAD_INPUTS)
def test_bad_inputs_raise_value_error_naming_the_argument(reference, position, replacement, message):
    args = list(GOOD)
    args[position] = replacement
    with pytest.raises(ValueError, match=message):
        REFERENCES[reference](*args)


@pytest.mark.parametrize("reference", sorted(REFERENCES))
def test_causal_requires_as_many_queries_as_keys(reference):
    with pytest.raises(ValueError, match="q and k must have the same number of rows"):
        REFERENCES[reference](*GOOD, causal=True)


def test_bad_scalar_arguments_raise_value_error():
    with pytest.raises(ValueError, match="temperature"):
        softmax_attention(*GOOD, temperature=float("nan"))
    with pytest.raises(ValueError, match="chunk"):
        softmax_attention(*GOOD, chunk=0)
    with pytest.raises(ValueError, match="causal"):
        ema_attention(*GOOD, causal="yes")
    with pytest.raises(ValueError, match="at least one key"):
        softmax_attention(GOOD[0], np.zeros((0, 2)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="at least one key"):
        collision_attention(GOOD[0], np.zeros((0, 2)), np.zeros((0, 2)))
    for z in (0, 1.5, True):
        with pytest.raises(ValueError, match="z must be"):
            collision_attention(*GOOD, z=z)
