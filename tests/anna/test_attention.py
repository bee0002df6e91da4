"""Algorithm 1 (numba kernels) against the explicit weights, on shared cases and hypothesis inputs."""
from __future__ import annotations

import io

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

import anna.attention as attention_module
from anna.kernels import common as kernel_common
from anna.attention import MAX_DENSE_ENTRIES, AnnaStats, anna_attention, anna_weights, collision_counts
from anna.lsh import E2LSH, CrossPolytope, Hyperplane, LSHConfig
from anna.strategies import attention_inputs, lsh_configs


def assert_matches_weights(q, k, v, lsh, seed, causal):
    """out == W v (W from anna_weights) and counts == sum_j c_ij, to the documented tolerance.

    anna.attention's numerics note: float32 outputs within (ell + 1) * 2**-24 of W v relative to
    max|v| (plus the output's own rounding); float64 sums are exact to ~1e-12.
    """
    out, counts = anna_attention(q, k, v, lsh, seed=seed, causal=causal)
    c = collision_counts(q, k, lsh, seed=seed, causal=causal)
    expected = anna_weights(q, k, lsh, seed=seed, causal=causal) @ v.astype(np.float64)
    scale = float(np.abs(v).max()) if v.size else 1.0
    tol = (lsh.ell + 2) * 2.0**-24 if v.dtype == np.float32 else 1e-12
    assert out.dtype == v.dtype and out.shape == (q.shape[0], v.shape[1])
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, c.sum(axis=1))
    np.testing.assert_allclose(out, expected, rtol=0, atol=tol * scale)
    assert not out[counts == 0].any(), "queries without collisions must get the zero row"
    return out, counts


def planted(n, dim, dtype, seed, clusters=5):
    """Points around a few centres (so buckets hold several keys), with repeated keys."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)) * 6
    k = centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, dim)) * 0.5
    q = centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, dim)) * 0.5
    k[7::7] = k[6:-1:7]  # exact duplicates
    q[::3] = k[::3]
    v = rng.standard_normal((n, 3))
    return q.astype(dtype), k.astype(dtype), v.astype(dtype)


CASES = [
    # (family, z, ell, n, dim)
    (E2LSH(4.0), 2, 4, 120, 6),
    (E2LSH(1.0), 1, 9, 200, 3),
    (E2LSH(8.0), 4, 3, 150, 17),
    (Hyperplane(), 3, 5, 160, 8),
    (Hyperplane(), 1, 2, 90, 2),
    (CrossPolytope(), 1, 6, 140, 8),
    (CrossPolytope(), 2, 4, 130, 13),
    (CrossPolytope(rotations=1), 1, 3, 100, 64),
]
CASE_IDS = [f"{c[0].name}-z{c[1]}-l{c[2]}-d{c[4]}" for c in CASES]


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("family,z,ell,n,dim", CASES, ids=CASE_IDS)
def test_algorithm1_output_equals_explicit_weights_times_values(family, z, ell, n, dim, dtype, causal):
    q, k, v = planted(n, dim, dtype, seed=z * 31 + ell)
    if family.angular:
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        k /= np.linalg.norm(k, axis=1, keepdims=True)
    out, counts = assert_matches_weights(q, k, v, LSHConfig(family, z, ell), seed=4, causal=causal)
    assert 0 < np.count_nonzero(counts) and counts.max() > ell  # buckets are shared: a real test


@given(inputs=attention_inputs(), lsh=lsh_configs(), seed=st.integers(0, 2**31), causal=st.booleans())
def test_algorithm1_equals_explicit_weights_on_generated_inputs(inputs, lsh, seed, causal):
    q, k, v = inputs.q, inputs.k, inputs.v
    if causal:
        n = min(q.shape[0], k.shape[0])
        q, k, v = q[:n].copy(), k[:n].copy(), v[:n].copy()
    assert_matches_weights(q, k, v, lsh, seed, causal)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_runs_segments_and_table_chunks_give_the_same_result(monkeypatch, causal):
    # Small budgets force the multi-run (Algorithm 2 running sums), multi-segment (causal prefix)
    # and multi-chunk (tables hashed in groups) paths; the result must not change.
    q, k, v = planted(300, 5, np.float64, seed=1)
    k[1::2] = k[0::2]  # keys in pairs and narrow cells: ~N/2 two-key buckets per table, all hit
    q = np.roll(k, 3, axis=0)
    lsh = LSHConfig(E2LSH(0.5), 3, 7)
    reference, reference_counts = anna_attention(q, k, v, lsh, seed=2, causal=causal)
    monkeypatch.setattr(attention_module, "_TABLE_CHUNK", 3)
    monkeypatch.setattr(attention_module, "_CAUSAL_SEGMENT", 37)
    monkeypatch.setattr(attention_module, "_MIN_BUDGET", 1)
    seen_runs = []
    original_runs = attention_module._runs
    monkeypatch.setattr(attention_module, "_runs", lambda nb, budget: seen_runs.append(original_runs(nb, budget))
                        or seen_runs[-1])
    out, counts = assert_matches_weights(q, k, v, lsh, seed=2, causal=causal)
    assert len(seen_runs) == 3 and max(len(r) for r in seen_runs) > 1  # 3 chunks, some with several runs
    np.testing.assert_allclose(out, reference, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(counts, reference_counts)


def test_runs_split_tables_when_buckets_exceed_the_budget():
    runs = attention_module._runs(np.array([5, 5, 3, 9, 1, 1]), budget=10)
    assert runs == [(0, 2), (2, 3), (3, 5), (5, 6)]
    assert attention_module._runs(np.array([12, 3]), budget=10) == [(0, 1), (1, 2)]  # one table always fits
    assert attention_module._runs(np.array([2, 3]), budget=10) == [(0, 2)]


def test_output_is_identical_for_equal_seeds_and_thread_counts_and_differs_across_seeds(monkeypatch):
    monkeypatch.setattr(kernel_common, "PARALLEL_WORK", 0)  # small as it is, run this on every thread
    q, k, v = planted(400, 8, np.float32, seed=3)
    lsh = LSHConfig(E2LSH(2.0), 2, 6)
    out, counts = anna_attention(q, k, v, lsh, seed=10)
    again, again_counts = anna_attention(q, k, v, lsh, seed=10)
    np.testing.assert_array_equal(out, again)
    np.testing.assert_array_equal(counts, again_counts)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single, single_counts = anna_attention(q, k, v, lsh, seed=10, causal=False)
        causal_single = anna_attention(q, k, v, lsh, seed=10, causal=True)[0]
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(out, single)  # fixed summation order: no dependence on threads
    np.testing.assert_array_equal(anna_attention(q, k, v, lsh, seed=10, causal=True)[0], causal_single)
    other, other_counts = anna_attention(q, k, v, lsh, seed=11)
    assert not np.array_equal(out, other) and not np.array_equal(counts, other_counts)


def test_causal_queries_see_only_earlier_keys():
    q, k, v = planted(150, 4, np.float64, seed=5)
    lsh = LSHConfig(E2LSH(6.0), 1, 4)
    c = collision_counts(q, k, lsh, seed=1, causal=True)
    assert np.array_equal(c, np.tril(collision_counts(q, k, lsh, seed=1)))
    out, counts = anna_attention(q, k, v, lsh, seed=1, causal=True)
    # query 0 can only see key 0
    assert counts[0] == c[0, 0]
    if counts[0]:
        np.testing.assert_allclose(out[0], v[0])
    # changing a later key never changes an earlier output
    k2, v2 = k.copy(), v.copy()
    k2[100:] += 3.0
    v2[100:] = -v2[100:]
    out2, _ = anna_attention(q, k2, v2, lsh, seed=1, causal=True)
    np.testing.assert_array_equal(out[:100], out2[:100])


def test_equal_query_and_key_always_collide_and_far_points_never_do():
    k = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    v = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    out, counts = anna_attention(k.copy(), k, v, LSHConfig(E2LSH(1.0), 2, 5), seed=0)
    np.testing.assert_array_equal(out, v)
    np.testing.assert_array_equal(counts, [5, 5, 5])


def test_mixed_query_and_key_dtypes_hash_in_float64():
    q, k, v = planted(80, 5, np.float64, seed=6)
    lsh = LSHConfig(E2LSH(2.0), 2, 3)
    out, counts = anna_attention(q.astype(np.float32), k, v, lsh, seed=1)
    expected = anna_weights(q.astype(np.float32), k, lsh, seed=1) @ v
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_empty_inputs_give_empty_or_zero_outputs():
    lsh = LSHConfig(Hyperplane(), 2, 3)
    out, counts, stats = anna_attention(np.zeros((0, 4)), np.ones((5, 4)), np.ones((5, 2)), lsh, return_stats=True)
    assert out.shape == (0, 2) and counts.shape == (0,) and stats.empty_queries == 0
    out, counts, stats = anna_attention(np.ones((3, 4)), np.zeros((0, 4)), np.zeros((0, 2)), lsh,
                                        return_stats=True)
    np.testing.assert_array_equal(out, np.zeros((3, 2)))
    np.testing.assert_array_equal(counts, [0, 0, 0])
    assert stats.empty_queries == 3 and stats.buckets_per_table.tolist() == [0, 0, 0]


# ------------------------------------------------------------------------------------ stats
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_stats_report_candidates_bucket_loads_and_empty_queries(causal):
    q, k, v = planted(180, 6, np.float64, seed=7)
    q[:10] += 50.0  # some queries far from every key
    lsh = LSHConfig(E2LSH(3.0), 2, 5)
    out, counts, stats = anna_attention(q, k, v, lsh, seed=3, causal=causal, return_stats=True)
    assert isinstance(stats, AnnaStats)
    c = collision_counts(q, k, lsh, seed=3, causal=causal)
    np.testing.assert_array_equal(stats.candidates, (c > 0).sum(axis=1))
    assert stats.empty_queries == int((counts == 0).sum()) > 0
    key_codes = lsh.family.hash(k, lsh.family.sample(6, 2, 5, 3))
    for u in range(5):
        _, loads = np.unique(key_codes[:, u], return_counts=True)
        assert stats.buckets_per_table[u] == loads.size
        assert stats.max_bucket_load[u] == loads.max()
        assert stats.mean_bucket_load[u] == pytest.approx((loads**2).sum() / k.shape[0])
    assert stats.max_candidates == stats.candidates.max()
    text = io.StringIO()
    Console(file=text, width=100).print(stats)
    assert "empty queries" in text.getvalue()


# -------------------------------------------------------------------------------- bad input
def _inputs():
    rng = np.random.default_rng(0)
    return rng.standard_normal((4, 3)), rng.standard_normal((5, 3)), rng.standard_normal((5, 2))


LSH = LSHConfig(E2LSH(), 1, 2)


@pytest.mark.parametrize("name,make,match", [
    ("q", lambda q, k, v: (q[0], k, v), "q must have rank 2"),
    ("k", lambda q, k, v: (q, k[None], v), "k must have rank 2"),
    ("q", lambda q, k, v: (q.astype(np.int64), k, v), "q must be float32 or float64"),
    ("v", lambda q, k, v: (q, k, v.astype(np.float16)), "v must be float32 or float64"),
    ("q", lambda q, k, v: (q[:, :2].copy(), k, v), "q and k must have the same number of columns"),
    ("v", lambda q, k, v: (q, k, v[:4]), "k and v must have the same number of rows"),
    ("q", lambda q, k, v: (np.where(np.eye(4, 3) > 0, np.nan, q), k, v),
     r"q contains NaN or inf \(first at index \(0, 0\)\)"),
    ("k", lambda q, k, v: (q, np.where(np.eye(5, 3) > 0, np.inf, k), v), "k contains NaN or inf"),
    ("v", lambda q, k, v: (q, k, np.full_like(v, -np.inf)), "v contains NaN or inf"),
    ("k", lambda q, k, v: (q, np.asfortranarray(k), v), "k must be C-contiguous"),
    ("v", lambda q, k, v: (q, k, np.repeat(v, 2, axis=1)[:, ::2]), "v must be C-contiguous"),
    ("q", lambda q, k, v: (q.tolist(), k, v), "q must be a numpy array"),
    ("q", lambda q, k, v: (q[:, :0].copy(), k[:, :0].copy(), v), "at least one column"),
])
def test_bad_arrays_raise_value_errors_naming_the_argument(name, make, match):
    q, k, v = make(*_inputs())
    with pytest.raises(ValueError, match=match):
        anna_attention(q, k, v, LSH)
    if name != "v":
        with pytest.raises(ValueError, match=match):
            anna_weights(q, k, LSH)


def test_bad_options_raise_value_errors():
    q, k, v = _inputs()
    with pytest.raises(ValueError, match=r"causal attention needs as many queries as keys \(N_q == N_k\)"):
        anna_attention(q, k, v, LSH, causal=True)
    with pytest.raises(ValueError, match="causal attention needs"):
        anna_weights(q, k, LSH, causal=True)
    with pytest.raises(ValueError, match="causal must be a bool"):
        anna_attention(q, k, v, LSH, causal="yes")
    with pytest.raises(ValueError, match="return_stats must be a bool"):
        anna_attention(q, k, v, LSH, return_stats=1)
    with pytest.raises(ValueError, match="lsh must be an LSHConfig"):
        anna_attention(q, k, v, E2LSH())
    with pytest.raises(ValueError, match="seed must be non-negative"):
        anna_attention(q, k, v, LSH, seed=-3)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        anna_attention(q, k, v, LSH, seed=1.5)


def test_dense_weights_refuse_sizes_beyond_the_limit():
    side = int(np.sqrt(MAX_DENSE_ENTRIES)) + 1
    big = np.zeros((side, 2))
    with pytest.raises(ValueError, match="exceed MAX_DENSE_ENTRIES"):
        anna_weights(big, big, LSH)


def test_weights_rows_are_distributions_or_zero():
    q, k, _ = planted(60, 4, np.float64, seed=9)
    q[0] += 1000.0
    w = anna_weights(q, k, LSHConfig(E2LSH(2.0), 2, 3), seed=0)
    sums = w.sum(axis=1)
    assert sums[0] == 0.0 and np.allclose(sums[1:][sums[1:] > 0], 1.0) and (w >= 0).all()
