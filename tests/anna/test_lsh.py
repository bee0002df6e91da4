"""LSH families: numba codes vs the plain-numpy definition, seeds, closed forms, Theorem 3.4."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from anna.lsh import FAMILIES as REGISTERED
from anna.lsh import (
    E2LSH,
    CrossPolytope,
    Hyperplane,
    LSHConfig,
    combine_codes,
    measure_collision_rates,
    theory_parameters,
)
from anna.strategies import attention_inputs, lsh_families

# every registered family's examples: a family added to anna.lsh.FAMILIES is tested here unchanged
FAMILIES = [family for cls in REGISTERED.values() for family in cls.examples()]
FAMILY_IDS = [f.name for f in FAMILIES]


def assert_codes_match_reference(family, x, params):
    codes = family.hash(x, params)
    reference = combine_codes(family.hash_functions(x, params), params.multipliers)
    assert codes.shape == (x.shape[0], params.ell) and codes.dtype == np.uint64
    tolerance = 8 * max(x.shape[1], 8) * np.finfo(x.dtype).eps  # a few times the rounding of a dot product
    ambiguous = (family.boundary_margins(x, params) < tolerance).any(axis=2)
    mismatch = codes != reference
    assert not (mismatch & ~ambiguous).any(), "codes differ where the reference is not at a cell boundary"
    return mismatch, ambiguous


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dim", [1, 5, 16, 33])
def test_numba_codes_equal_combined_reference_values_away_from_cell_boundaries(family, dtype, dim):
    x = np.random.default_rng(dim).standard_normal((150, dim)).astype(dtype) * 3.0
    params = family.sample(dim, z=3, ell=5, seed=11)
    mismatch, ambiguous = assert_codes_match_reference(family, x, params)
    assert mismatch.mean() < 0.01 and ambiguous.mean() < 0.05  # the comparison is not vacuous


@given(inputs=attention_inputs(max_queries=30, min_rows=1), family=lsh_families(),
       z=st.integers(1, 4), ell=st.integers(1, 5), seed=st.integers(0, 2**40))
def test_numba_codes_equal_reference_on_generated_rows(inputs, family, z, ell, seed):
    params = family.sample(inputs.q.shape[1], z, ell, seed)
    assert_codes_match_reference(family, inputs.q, params)


def test_table_major_codes_are_the_transpose():
    x = np.random.default_rng(0).standard_normal((70, 6))
    for family in FAMILIES:
        params = family.sample(6, 2, 3, 0)
        np.testing.assert_array_equal(family.hash(x, params, table_major=True), family.hash(x, params).T)


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
def test_same_seed_gives_identical_codes_and_other_seeds_differ(family):
    x = np.random.default_rng(1).standard_normal((200, 12))
    codes = family.hash(x, family.sample(12, 2, 4, seed=5))
    np.testing.assert_array_equal(codes, family.hash(x, family.sample(12, 2, 4, seed=5)))
    other = family.hash(x, family.sample(12, 2, 4, seed=6))
    assert (codes != other).mean() > 0.5


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
def test_tables_are_independent_draws_and_prefix_stable_in_ell(family):
    x = np.random.default_rng(2).standard_normal((100, 8))
    small, large = family.sample(8, 3, 4, seed=9), family.sample(8, 3, 10, seed=9)
    np.testing.assert_array_equal(family.hash(x, small), family.hash(x, large)[:, :4])
    np.testing.assert_array_equal(family.hash(x, large.select(4, 10)), family.hash(x, large)[:, 4:])
    # distinct tables group the rows differently (a repeated table would give identical partitions)
    codes = family.hash(x, large)
    partitions = {tuple(np.unique(codes[:, u], return_inverse=True)[1]) for u in range(10)}
    assert len(partitions) == 10


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_IDS)
def test_codes_collide_exactly_when_all_z_values_agree(family):
    x = np.random.default_rng(3).integers(-1, 2, size=(120, 4)).astype(np.float64)  # many equal tuples
    params = family.sample(4, 3, 6, seed=1)
    codes, values = family.hash(x, params), family.hash_functions(x, params)
    for u in range(6):
        same_code = codes[:, u, None] == codes[None, :, u]
        same_tuple = (values[:, None, u, :] == values[None, :, u, :]).all(axis=2)
        np.testing.assert_array_equal(same_code, same_tuple)


def test_cross_polytope_values_name_the_nearest_signed_basis_vector():
    family = CrossPolytope(rotations=2)
    params = family.sample(8, 1, 3, seed=4)
    x = np.random.default_rng(4).standard_normal((40, 8))
    values = family.hash_functions(x, params)
    mats = family.rotation_matrices(params)
    # rotations are orthogonal up to scale D**rounds, so H D ... H D is a (scaled) rotation
    np.testing.assert_allclose(mats[0, 0] @ mats[0, 0].T, 8.0**2 * np.eye(8))
    for u in range(3):
        y = x @ mats[u, 0].T
        best = np.argmax(np.abs(y), axis=1)
        expected = 2 * best + (y[np.arange(40), best] < 0)
        np.testing.assert_array_equal(values[:, u, 0], expected)
    assert values.min() >= 0 and values.max() < 16


# ----------------------------------------------------------------------- collision laws
def test_collision_probability_closed_forms_at_known_points():
    assert E2LSH(4.0).collision_probability(0.0) == 1.0
    # Datar et al.: p(w/c) with t = w/c; at distance = width, t = 1
    t = 1.0
    expected = 1 - 2 * 0.5 * math.erfc(t / math.sqrt(2)) - 2 / (math.sqrt(2 * math.pi) * t) * (1 - math.exp(-0.5))
    assert E2LSH(4.0).collision_probability(4.0) == pytest.approx(expected, rel=1e-12)
    assert Hyperplane().collision_probability(0.0) == 1.0
    assert Hyperplane().collision_probability(2.0) == pytest.approx(0.0, abs=1e-15)
    assert Hyperplane().collision_probability(1.0) == pytest.approx(1 - 1 / 3, rel=1e-12)  # 60 degrees
    assert CrossPolytope().collision_probability(2.0, dim=8) == 0.0  # antipodes never share a signed vertex
    for family in FAMILIES:
        grid = [0.1, 0.4, 0.8, 1.2, 1.6]
        probs = [family.collision_probability(d, dim=16) for d in grid]
        assert all(a > b for a, b in zip(probs, probs[1:])), f"{family.name} not decreasing: {probs}"


MEASURED = [
    (E2LSH(4.0), 16, 1.0, 4.0),
    (E2LSH(1.0), 3, 0.5, 2.0),
    (Hyperplane(), 16, 0.5, 2.5),
    (CrossPolytope(), 16, 0.6, 2.0),
    (CrossPolytope(), 64, 0.8, 1.5),
]


@pytest.mark.parametrize("family,dim,r,c", MEASURED, ids=[f"{m[0].name}-d{m[1]}" for m in MEASURED])
def test_measured_collision_rates_match_closed_forms_within_sampling_error(family, dim, r, c):
    m = measure_collision_rates(family, dim, r, c, pairs=4000, seed=3)
    estimate_error = 0.0014 * 3 if isinstance(family, CrossPolytope) else 0.0  # Monte Carlo closed form
    assert abs(m.p1 - m.p1_theory) <= 4 * m.p1_stderr + estimate_error
    assert abs(m.p2 - m.p2_theory) <= 4 * m.p2_stderr + estimate_error
    assert m.p1_stderr == pytest.approx(math.sqrt(m.p1 * (1 - m.p1) / 4000))
    assert 0 < m.rho_measured < 1 and m.rho_theory == pytest.approx(
        math.log(1 / m.p1_theory) / math.log(1 / m.p2_theory))


def test_measured_rates_detect_a_wrong_law():
    # sanity of the test above: the hyperplane law at the wrong distance is rejected
    m = measure_collision_rates(Hyperplane(), 16, 0.5, 2.5, pairs=4000, seed=3)
    wrong = Hyperplane().collision_probability(0.6)
    assert abs(m.p1 - wrong) > 4 * m.p1_stderr


# --------------------------------------------------------------------------- Theorem 3.4
@pytest.mark.parametrize("n", [10, 100, 10_000])
@pytest.mark.parametrize("family,r,c", [(E2LSH(4.0), 1.0, 8.0), (E2LSH(2.0), 0.5, 4.0), (Hyperplane(), 0.2, 1.9)])
def test_theory_parameters_meet_the_inequalities_of_theorem_3_4(n, family, r, c):
    t = theory_parameters(n, r, c, family)
    assert t.p1 == family.collision_probability(r) and t.p2 == family.collision_probability(c * r)
    assert t.p2**t.z <= n**-3 < t.p2 ** (t.z - 1) or t.z == 1
    assert (1 - t.p1**t.z) ** t.ell <= n**-3
    assert t.ell <= math.ceil(3 / t.p1 * n ** (3 * t.rho) * math.log(n))
    assert t.eta_bound <= (t.ell + 1) / n + 1e-12
    assert t.theorem_applies == (c > math.sqrt(3) and t.rho < 1 / 3)
    assert t.config(family) == LSHConfig(family, t.z, t.ell)


def test_theory_parameters_need_dim_for_the_cross_polytope():
    t = theory_parameters(50, 0.5, 2.0, CrossPolytope(), dim=32)
    assert t.z >= 1 and t.ell >= 1
    with pytest.raises(ValueError, match="dim is required"):
        theory_parameters(50, 0.5, 2.0, CrossPolytope())


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("bad,match", [
    (np.zeros((3, 4), dtype=np.int64), "x must be float32 or float64"),
    (np.zeros(4), "x must have rank 2"),
    (np.zeros((3, 5)), "x must have 4 columns"),
    (np.full((3, 4), np.nan), "x contains NaN or inf"),
    (np.zeros((4, 3)).T, "x must be C-contiguous"),
    (np.zeros((3, 8))[:, ::2], "x must be C-contiguous"),
    ([[0.0] * 4], "x must be a numpy array"),
])
def test_hash_rejects_bad_rows_naming_x(bad, match):
    family = E2LSH()
    with pytest.raises(ValueError, match=match):
        family.hash(bad, family.sample(4, 1, 1))


def test_hash_rejects_params_of_another_family():
    with pytest.raises(ValueError, match="params must be HyperplaneParams"):
        Hyperplane().hash(np.zeros((2, 3)), E2LSH().sample(3, 1, 1))


@pytest.mark.parametrize("call,match", [
    (lambda: E2LSH(0.0), "width must be positive"),
    (lambda: E2LSH(float("nan")), "width must be positive"),
    (lambda: CrossPolytope(rotations=0), "rotations must be a positive integer"),
    (lambda: E2LSH().sample(0, 1, 1), "dim must be a positive integer"),
    (lambda: E2LSH().sample(3, 1.5, 1), "z must be a positive integer"),
    (lambda: Hyperplane().sample(3, 1, 0), "ell must be a positive integer"),
    (lambda: Hyperplane().sample(3, 1, 1, seed=-1), "seed must be non-negative"),
    (lambda: E2LSH().sample(3, 1, 4).select(2, 2), "table range"),
    (lambda: LSHConfig(E2LSH(), 0, 3), "z must be a positive integer"),
    (lambda: LSHConfig(E2LSH(), 2, True), "ell must be a positive integer"),
    (lambda: LSHConfig("e2lsh", 2, 3), "family must be an LSH family"),
    (lambda: Hyperplane().collision_probability(2.5), r"in \[0, 2\]"),
    (lambda: E2LSH().collision_probability(-1.0), "distance must be finite and >= 0"),
    (lambda: theory_parameters(100, 1.0, 1.0), "c must be > 1"),
    (lambda: theory_parameters(100, -1.0, 2.0), "r must be positive"),
    (lambda: theory_parameters(1, 1.0, 2.0), "n must be at least 2"),
    (lambda: theory_parameters(100, 0.9, 3.0, Hyperplane()), "exceeds 2"),
    (lambda: measure_collision_rates(E2LSH(), 4, 1.0, 2.0, pairs=0), "pairs must be a positive integer"),
])
def test_bad_parameters_raise_value_errors_that_name_them(call, match):
    with pytest.raises(ValueError, match=match):
        call()
