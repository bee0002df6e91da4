"""The ANNA-definition checker: hand-built violations, failure rates against Theorem 3.4's bound."""
from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console

from anna.attention import anna_weights
from anna.check import AnnaCheck, FailureRate, anna_failure_rate, check_anna, pairwise_distances
from anna.lsh import E2LSH, Hyperplane, LSHConfig, theory_parameters


def render(obj) -> str:
    text = io.StringIO()
    Console(file=text, width=140).print(obj)
    return text.getvalue()


# One query at the origin; keys at distances 0.5 (near), 1.5 (between r and c r) and 5 (far).
Q = np.array([[0.0, 0.0]])
K = np.array([[0.5, 0.0], [0.0, 1.5], [5.0, 0.0]])
R, C, ELL = 1.0, 2.0, 3
# |N(q, c r)| = 2, so condition 2 asks w_near >= 1 / ((2 - 1) * 3 + 1) = 1/4.


def test_weights_inside_both_conditions_hold():
    for w in ([1.0, 0.0, 0.0], [0.25, 0.75, 0.0], [0.5, 0.5, 0.0]):
        report = check_anna(Q, K, np.array([w]), R, C, ELL)
        assert report.holds and report.condition1 == report.condition2 == 0 and report.violations == ()


def test_weight_on_a_far_key_violates_condition_1():
    report = check_anna(Q, K, np.array([[0.6, 0.0, 0.4]]), R, C, ELL)
    assert not report.holds and (report.condition1, report.condition2) == (1, 0)
    (v,) = report.violations
    assert (v.query, v.key, v.condition) == (0, 2, 1)
    assert v.distance == pytest.approx(5.0) and v.weight == pytest.approx(0.4) and v.required == pytest.approx(2.0)
    assert "c*r" in v.detail


def test_too_little_weight_on_a_near_key_violates_condition_2():
    report = check_anna(Q, K, np.array([[0.2, 0.8, 0.0]]), R, C, ELL)
    assert (report.condition1, report.condition2, report.failed_queries) == (0, 1, 1)
    (v,) = report.violations
    assert (v.key, v.condition) == (0, 2) and v.required == pytest.approx(0.25)
    assert "<= r" in v.detail


def test_a_zero_row_violates_condition_2_only_when_a_key_is_near():
    assert not check_anna(Q, K, np.zeros((1, 3)), R, C, ELL).holds
    lonely = check_anna(np.array([[0.0, 3.0]]), K, np.zeros((1, 3)), R, C, ELL)
    assert lonely.holds


def test_every_violation_is_counted_and_the_list_is_capped():
    q = np.zeros((3, 1))
    k = np.concatenate([np.zeros((60, 1)), np.full((60, 1), 9.0)])
    w = np.full((3, 120), 1 / 120)  # all far keys get weight: 180 condition-1 pairs
    report = check_anna(q, k, w, 1.0, 2.0, 1)
    assert report.condition1 == 180 and report.condition2 == 180 and report.failed_queries == 3
    assert len(report.violations) == 200  # MAX_LISTED per condition
    assert "FAILS" in render(report) and "180" in render(report)


def test_check_anna_agrees_with_a_direct_reading_of_the_definition():
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((30, 3)), rng.standard_normal((40, 3))
    w = rng.random((30, 40)) * (rng.random((30, 40)) < 0.3)
    w /= np.where(w.sum(1, keepdims=True) > 0, w.sum(1, keepdims=True), 1)
    r, c, ell = 0.8, 1.7, 2
    report = check_anna(q, k, w, r, c, ell)
    cond1 = cond2 = 0
    for i in range(30):
        dist = [float(np.sqrt(((q[i] - k[j]) ** 2).sum())) for j in range(40)]
        neighbours = sum(d <= c * r for d in dist)
        for j in range(40):
            cond1 += w[i, j] > 0 and dist[j] > c * r
            cond2 += dist[j] <= r and w[i, j] < 1 / ((neighbours - 1) * ell + 1)
    assert (report.condition1, report.condition2) == (cond1, cond2) and cond1 > 0 and cond2 > 0


def test_pairwise_distances_match_the_naive_norms():
    rng = np.random.default_rng(1)
    q, k = rng.standard_normal((7, 4)).astype(np.float32), rng.standard_normal((9, 4)).astype(np.float32)
    expected = np.linalg.norm(q.astype(np.float64)[:, None] - k.astype(np.float64)[None], axis=2)
    np.testing.assert_allclose(pairwise_distances(q, k), expected, rtol=1e-14)


@pytest.mark.parametrize("weights,match", [
    (np.array([[0.5, 0.5]]), r"weights must have shape \(N_q, N_k\) = \(1, 3\)"),
    (np.array([[1.2, -0.2, 0.0]]), r"weights must be non-negative, got weights\[0, 1\]"),
    (np.array([[0.5, 0.2, 0.0]]), "row 0 sums to 0.7"),
    (np.array([[np.nan, 0.0, 0.0]]), "weights contains NaN or inf"),
    (np.array([[1, 0, 0]]), "weights must be float32 or float64"),
])
def test_invalid_weights_raise_value_errors(weights, match):
    with pytest.raises(ValueError, match=match):
        check_anna(Q, K, weights, R, C, ELL)


@pytest.mark.parametrize("kwargs,match", [
    ({"r": -1.0}, "r must be >= 0"),
    ({"c": 1.0}, "c must be > 1"),
    ({"ell": 0}, "ell must be a positive integer"),
    ({"r": float("nan")}, "r must be >= 0"),
])
def test_invalid_parameters_raise_value_errors(kwargs, match):
    args = {"r": R, "c": C, "ell": ELL} | kwargs
    with pytest.raises(ValueError, match=match):
        check_anna(Q, K, np.array([[1.0, 0.0, 0.0]]), **args)


# ------------------------------------------------------------------------ failure rates
def ring(n_far: int, r: float, far: float, dim: int = 6, seed: int = 0):
    """One query at 0, one key at distance r, ``n_far`` keys at distance ``far`` (just past c r)."""
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((n_far + 1, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    k = np.concatenate([directions[:1] * r, directions[1:] * far])
    return np.zeros((1, dim)), k


def test_theory_parameters_keep_the_failure_rate_within_the_theorem_3_4_bound():
    r, c = 1.0, 8.0
    q, k = ring(20, r, c * r * 1.001)
    theory = theory_parameters(k.shape[0], r, c, E2LSH(4.0))
    lsh = theory.config(E2LSH(4.0))
    rate = anna_failure_rate(q, k, lsh, r, c, seeds=300)
    assert isinstance(rate, FailureRate) and rate.trials == 300
    assert (rate.n_near_pairs, rate.n_far_pairs) == (1, 20)
    assert rate.bound == pytest.approx(min(1.0, 20 * lsh.ell * theory.p2**lsh.z + (1 - theory.p1**lsh.z) ** lsh.ell))
    assert 0.0 < rate.bound < 0.5  # the bound says something here ...
    assert rate.within_bound(sigmas=3.0)  # ... and Algorithm 1 respects it
    assert rate.failures > 0  # far keys sit just past c r, so the bound is nearly tight: failures happen
    assert "union bound" in render(rate)


def test_too_few_tables_make_near_keys_go_missing():
    q, k = ring(20, 1.0, 8.01)
    rate = anna_failure_rate(q, k, LSHConfig(E2LSH(4.0), 6, 1), 1.0, 8.0, seeds=40)
    assert rate.condition2_failures > 20 and rate.rate > 0.5  # p1**6 ~ 0.26: the near key often misses


def test_too_few_functions_let_far_keys_collide():
    q, k = ring(20, 1.0, 8.01)
    rate = anna_failure_rate(q, k, LSHConfig(E2LSH(4.0), 1, 8), 1.0, 8.0, seeds=40)
    assert rate.condition1_failures == rate.trials  # p2 ~ 0.2 per function, 20 far keys x 8 tables
    report = check_anna(q, k, anna_weights(q, k, LSHConfig(E2LSH(4.0), 1, 8), seed=0), 1.0, 8.0, 8)
    assert isinstance(report, AnnaCheck) and report.condition1 > 0


def test_angular_failure_rates_need_unit_vectors():
    q, k = ring(3, 0.2, 0.9)
    with pytest.raises(ValueError, match="must have unit-norm rows"):
        anna_failure_rate(q, k, LSHConfig(Hyperplane(), 2, 2), 0.2, 2.0, seeds=2)


def test_failure_rate_rejects_bad_seeds():
    q, k = ring(3, 1.0, 9.0)
    lsh = LSHConfig(E2LSH(), 1, 1)
    with pytest.raises(ValueError, match="seeds must be a positive count"):
        anna_failure_rate(q, k, lsh, 1.0, 8.0, seeds=0)
    with pytest.raises(ValueError, match="seeds must not be empty"):
        anna_failure_rate(q, k, lsh, 1.0, 8.0, seeds=[])
    with pytest.raises(ValueError, match="seed must be non-negative"):
        anna_failure_rate(q, k, lsh, 1.0, 8.0, seeds=[1, -2])
    assert anna_failure_rate(q, k, lsh, 1.0, 8.0, seeds=[4, 4]).trials == 2
