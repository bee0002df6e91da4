"""The paper's tasks: fast reference solvers against brute force, generators' properties."""
from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import anna.tasks
from anna.tasks import (
    BOTTOM,
    find_k,
    find_k_bruteforce,
    generate_khop,
    generate_khop_batch,
    generate_khop_mixed,
    generate_match2,
    generate_match2_balanced,
    generate_three_sum,
    has_three_sum,
    hop_k,
    hop_k_bruteforce,
    khop_vocab_size,
    match2_labels,
    match2_labels_bruteforce,
    three_sum,
    three_sum_bruteforce,
)
from anna.tasks import _common, khop, match2, threesum

seeds = st.integers(0, 2**32 - 1)


def arr(values) -> np.ndarray:
    return np.array(values, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Shared case tables
# ---------------------------------------------------------------------------------------------

MATCH2_CASES = [  # (x, modulus, expected labels from the definition, worked by hand)
    ([], 5, []),
    ([0], 2, [1]),               # 0 + 0 ≡ 0 with j = i
    ([1], 2, [1]),               # 1 + 1 ≡ 0 mod 2 with j = i
    ([1], 3, [0]),
    ([1, 1], 3, [0, 0]),
    ([1, 2], 3, [1, 1]),
    ([3, 3, 1], 6, [1, 1, 0]),   # M/2 is self-complementary for even M
    ([1, 4, 0, 2], 5, [1, 1, 1, 0]),
    ([5, 32, 5, 36, 0, 18, 19], 37, [1, 1, 1, 0, 1, 1, 1]),
]

AABCBABCA = [0, 0, 1, 2, 1, 0, 1, 2, 0]  # a, b, c = 0, 1, 2
KHOP_CASES = [  # (x, k, expected hop_k, worked by hand from the 1-indexed definition)
    ([], 1, []),
    ([2], 0, [2]),
    ([2], 1, [BOTTOM]),
    (AABCBABCA, 0, AABCBABCA),
    (AABCBABCA, 1, [BOTTOM, 0, BOTTOM, BOTTOM, 2, 1, 0, 1, 1]),
    (AABCBABCA, 2, [BOTTOM, 0, BOTTOM, BOTTOM, BOTTOM, BOTTOM, 1, 2, 0]),
    (AABCBABCA, 3, [BOTTOM, 0, BOTTOM, BOTTOM, BOTTOM, BOTTOM, BOTTOM, BOTTOM, 1]),
    (AABCBABCA, 9, [BOTTOM, 0, BOTTOM, BOTTOM, BOTTOM, BOTTOM, BOTTOM, BOTTOM, BOTTOM]),
    ([5, 5, 5], 1, [BOTTOM, 5, 5]),          # immediate repeat: find¹(i) = i is a fixed point
    ([5, 5, 5], 1000, [BOTTOM, 5, 5]),
    ([0, 1, 0, 1, 0, 1], 1, [BOTTOM, BOTTOM, 1, 0, 1, 0]),
    ([0, 1, 0, 1, 0, 1], 2, [BOTTOM, BOTTOM, BOTTOM, 1, 0, 1]),
    ([7, 100, 7], 1, [BOTTOM, BOTTOM, 100]),  # symbols need not be small
]

BIG = 2**62
THREESUM_CASES = [  # (x, has a solution)
    ([], False),
    ([0], False),
    ([0, 0], False),
    ([0, 0, 0], True),
    ([1, -1, 0], True),
    ([1, 2, 3], False),
    ([-5, 2, 3], True),
    ([3, -6, 3], True),           # equal values at distinct indices count
    ([2, -4], False),             # 2 + 2 - 4 = 0 would reuse index 0
    ([2, -4, 7, 9, -1], False),
    ([5, -1, 7, -4, 3], True),
    ([BIG, BIG, -2 * BIG], True),            # 2**63 overflows int64 in numpy
    ([BIG, BIG, BIG, -BIG], False),
    ([-2 * BIG, -2 * BIG, 0], False),        # -2**64 wraps to 0 in int64
]


# ---------------------------------------------------------------------------------------------
# Match2
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("x", "modulus", "expected"), MATCH2_CASES)
def test_match2_fast_and_bruteforce_labels_match_hand_worked_cases(x, modulus, expected):
    assert match2_labels(arr(x), modulus).tolist() == expected
    assert match2_labels_bruteforce(arr(x), modulus).tolist() == expected


@given(st.integers(2, 12).flatmap(
    lambda m: st.tuples(st.just(m), st.lists(st.integers(0, m - 1), max_size=40))))
def test_match2_fast_labels_equal_bruteforce_on_random_inputs(case):
    modulus, values = case
    x = arr(values)
    fast = match2_labels(x, modulus)
    assert fast.dtype == np.int64 and fast.shape == x.shape
    np.testing.assert_array_equal(fast, match2_labels_bruteforce(x, modulus))


@given(seeds, st.integers(1, 30), st.integers(2, 15))
def test_generate_match2_is_in_range_labelled_and_deterministic(seed, n, modulus):
    x, y = generate_match2(n, modulus, seed)
    assert x.shape == y.shape == (n,)
    assert x.min() >= 0 and x.max() < modulus
    np.testing.assert_array_equal(y, match2_labels_bruteforce(x, modulus))
    x2, y2 = generate_match2(n, modulus, seed)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)


def test_generate_match2_uniform_values_are_about_58_percent_positive_at_paper_size():
    # The reason a balanced generator is needed: P(positive) = 1/37 + 36/37 (1 - (36/37)^31).
    rate = np.mean([generate_match2(32, 37, seed=s)[1].mean() for s in range(400)])
    expected = 1 / 37 + 36 / 37 * (1 - (36 / 37) ** 31)
    assert abs(rate - expected) < 0.02 and rate > 0.55


@given(seeds, st.integers(1, 12), st.integers(3, 12), st.integers(1, 6))
def test_balanced_match2_rows_have_exactly_half_positive_tokens(seed, n, modulus, count):
    x, y = generate_match2_balanced(count, n, modulus, seed)
    assert x.shape == y.shape == (count, n)
    assert x.min() >= 0 and x.max() < modulus
    assert (y.sum(axis=1) == n // 2).all()
    for row, labels in zip(x, y):
        np.testing.assert_array_equal(labels, match2_labels_bruteforce(row, modulus))


def test_balanced_match2_at_paper_size_is_balanced_near_uniform_and_not_value_determined():
    x, y = generate_match2_balanced(10_000, n=32, modulus=37, seed=1)  # numbers in the docstring
    assert y.mean() == 0.5
    counts = np.bincount(x.ravel(), minlength=37)
    assert counts.min() > 0.95 * x.size / 37 and counts.max() < 1.05 * x.size / 37
    for v in range(1, 37):  # every value of a pair class appears with both labels, in similar amounts
        assert 0.45 <= y[x == v].mean() <= 0.52
    assert (y[x == 0] == 1).all()


def test_balanced_match2_is_deterministic_per_seed():
    a = generate_match2_balanced(50, seed=4)
    b = generate_match2_balanced(50, seed=4)
    c = generate_match2_balanced(50, seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


# ---------------------------------------------------------------------------------------------
# k-hop induction heads
# ---------------------------------------------------------------------------------------------

def test_khop_worked_example_aabcbabca():
    x = arr(AABCBABCA)
    a, b = 0, 1
    # 1-indexed position 9 is 0-based index 8; find¹(9) = 7, find²(9) = 6.
    assert hop_k(x, 1)[8] == b and hop_k(x, 2)[8] == a
    assert find_k(x, 1)[8] == 7 - 1 and find_k(x, 2)[8] == 6 - 1
    assert hop_k_bruteforce(x, 1)[8] == b and hop_k_bruteforce(x, 2)[8] == a


@pytest.mark.parametrize(("x", "k", "expected"), KHOP_CASES)
def test_khop_fast_and_bruteforce_match_hand_worked_cases(x, k, expected):
    assert hop_k(arr(x), k).tolist() == expected
    assert hop_k_bruteforce(arr(x), k).tolist() == expected
    np.testing.assert_array_equal(find_k(arr(x), k), find_k_bruteforce(arr(x), k))


@given(st.lists(st.integers(0, 4), max_size=40), st.integers(0, 8))
def test_khop_fast_find_and_hop_equal_bruteforce_on_random_inputs(values, k):
    x = arr(values)
    f = find_k(x, k)
    np.testing.assert_array_equal(f, find_k_bruteforce(x, k))
    np.testing.assert_array_equal(hop_k(x, k), hop_k_bruteforce(x, k))
    assert ((f == -1) | ((f >= 0) & (f <= np.arange(x.size)))).all()  # causal: find^k(i) <= i


@given(st.lists(st.integers(0, 3), min_size=1, max_size=30), st.integers(0, 5))
def test_khop_is_causal_appending_symbols_never_changes_earlier_answers(values, k):
    x = arr(values)
    full = hop_k(x, k)
    for p in range(1, x.size + 1):
        np.testing.assert_array_equal(hop_k(x[:p], k), full[:p])


@given(st.lists(st.integers(0, 3), max_size=30), st.integers(0, 5))
def test_khop_hops_compose(values, k):
    x = arr(values)
    f1, fk = find_k(x, 1), find_k(x, k)
    expected = np.where(fk >= 0, f1[np.maximum(fk, 0)], -1)
    np.testing.assert_array_equal(find_k(x, k + 1), expected)


@given(seeds, st.integers(1, 30), st.integers(2, 5), st.integers(0, 4), st.integers(1, 5))
def test_khop_batch_rows_have_leading_token_no_repeats_and_exact_targets(seed, n, alphabet, k, count):
    inputs, targets = generate_khop_batch(count, n, alphabet, k, seed)
    assert inputs.shape == (count, n + 1) and targets.shape == (count, n)
    assert inputs.dtype == targets.dtype == np.int64
    assert (inputs[:, 0] == alphabet + k).all()
    x = inputs[:, 1:]
    assert x.min() >= 0 and x.max() < alphabet
    assert (x[:, 1:] != x[:, :-1]).all()
    for row, t in zip(x, targets):
        np.testing.assert_array_equal(t, hop_k_bruteforce(row, k))


@given(seeds, st.integers(1, 30), st.integers(1, 4), st.integers(0, 4))
def test_khop_batch_with_repeats_allowed_matches_bruteforce(seed, n, alphabet, k):
    inputs, targets = generate_khop_batch(4, n, alphabet, k, seed, no_repeats=False)
    assert (inputs[:, 0] == alphabet + k).all()
    for row, t in zip(inputs[:, 1:], targets):
        np.testing.assert_array_equal(t, hop_k_bruteforce(row, k))


def test_khop_no_repeats_next_symbol_is_uniform_over_the_other_symbols():
    inputs, _ = generate_khop_batch(500, 100, 4, 1, seed=2)
    x = inputs[:, 1:]
    transitions = np.zeros((4, 4))
    np.add.at(transitions, (x[:, :-1].ravel(), x[:, 1:].ravel()), 1)
    assert np.all(np.diag(transitions) == 0)
    rates = transitions / transitions.sum(axis=1, keepdims=True)
    off = rates[~np.eye(4, dtype=bool)]
    assert np.all(np.abs(off - 1 / 3) < 0.02)
    assert np.all(np.abs(np.bincount(x[:, 0], minlength=4) / 500 - 0.25) < 0.07)


def test_khop_repeats_allowed_produces_immediate_repeats():
    inputs, _ = generate_khop_batch(20, 50, 3, 1, seed=0, no_repeats=False)
    assert (inputs[:, 2:] == inputs[:, 1:-1]).any()


def test_generate_khop_equals_row_zero_of_the_batch_and_is_deterministic():
    single = generate_khop(100, 4, 1, seed=9)
    batch = generate_khop_batch(1, 100, 4, 1, seed=9)
    np.testing.assert_array_equal(single[0], batch[0][0])
    np.testing.assert_array_equal(single[1], batch[1][0])
    again = generate_khop(100, 4, 1, seed=9)
    np.testing.assert_array_equal(single[0], again[0])
    assert not np.array_equal(single[0], generate_khop(100, 4, 1, seed=10)[0])
    assert single[0].shape == (101,) and single[1].shape == (100,)


@given(seeds, st.sets(st.integers(0, 4), min_size=1, max_size=3), st.integers(2, 4))
def test_khop_mixed_rows_use_hop_counts_from_the_set_with_matching_targets(seed, ks, alphabet):
    inputs, targets = generate_khop_mixed(12, 15, alphabet, ks, seed)
    row_k = inputs[:, 0] - alphabet
    assert set(row_k.tolist()) <= ks
    for row, k, t in zip(inputs[:, 1:], row_k.tolist(), targets):
        np.testing.assert_array_equal(t, hop_k_bruteforce(row, k))
    again = generate_khop_mixed(12, 15, alphabet, sorted(ks), seed)
    np.testing.assert_array_equal(inputs, again[0])


def test_khop_mixed_draws_every_hop_count_about_equally():
    inputs, _ = generate_khop_mixed(3000, 10, 4, [0, 1], seed=1)
    share = np.mean(inputs[:, 0] == 4 + 1)
    assert 0.45 < share < 0.55


def test_khop_vocab_size_covers_every_generated_token():
    inputs, _ = generate_khop_mixed(50, 20, 4, {0, 1, 3}, seed=0)
    assert khop_vocab_size(4, 3) == 8
    assert inputs.max() < khop_vocab_size(4, 3)


def test_khop_targets_at_paper_size_contain_bottom_and_symbols():
    _, targets = generate_khop_mixed(64, 100, 4, {0, 1}, seed=0)
    assert (targets == BOTTOM).any()
    assert set(np.unique(targets).tolist()) == {BOTTOM, 0, 1, 2, 3}


# ---------------------------------------------------------------------------------------------
# 3-SUM
# ---------------------------------------------------------------------------------------------

def assert_valid_triple(x: np.ndarray, triple) -> None:
    i, j, k = triple
    assert 0 <= i < j < k < x.size
    assert int(x[i]) + int(x[j]) + int(x[k]) == 0


@pytest.mark.parametrize(("x", "solvable"), THREESUM_CASES)
def test_three_sum_fast_and_bruteforce_agree_on_case_table(x, solvable):
    x = arr(x)
    fast, brute = three_sum(x), three_sum_bruteforce(x)
    assert (fast is not None) == (brute is not None) == solvable == has_three_sum(x)
    if solvable:
        assert_valid_triple(x, fast)
        assert_valid_triple(x, brute)


@given(st.lists(st.integers(-20, 20), max_size=25))
def test_three_sum_fast_finds_a_valid_triple_exactly_when_bruteforce_does(values):
    x = arr(values)
    fast, brute = three_sum(x), three_sum_bruteforce(x)
    assert (fast is None) == (brute is None)
    if fast is not None:
        assert_valid_triple(x, fast)
        assert all(isinstance(i, int) for i in fast)


def test_three_sum_accepts_other_integer_dtypes():
    assert has_three_sum(np.array([1, 2, -3], dtype=np.int8))
    assert not has_three_sum(np.array([1, 2, 3], dtype=np.uint64))


@given(seeds, st.integers(3, 25), st.integers(1, 30))
def test_planted_three_sum_instances_have_a_solution_in_range(seed, n, r):
    x = generate_three_sum(n, r, seed, planted=True)
    assert x.shape == (n,) and x.dtype == np.int64
    assert np.abs(x).max() <= r
    assert three_sum_bruteforce(x) is not None
    assert_valid_triple(x, three_sum(x))


@given(seeds, st.integers(1, 25), st.integers(200, 10**6))
def test_unplanted_three_sum_instances_have_no_solution_in_range(seed, n, r):
    x = generate_three_sum(n, r, seed, planted=False)
    assert x.shape == (n,) and np.abs(x).max() <= r
    assert three_sum_bruteforce(x) is None


def test_unplanted_three_sum_at_larger_size_has_no_solution():
    x = generate_three_sum(400, 10**7, seed=3, planted=False)
    assert not has_three_sum(x)
    assert np.unique(x).size > 350  # not a degenerate instance


def test_unplanted_three_sum_raises_when_every_draw_for_a_value_is_rejected(monkeypatch):
    # With one draw per value, the dense range [-2, 2] rejects a draw long before 50 values.
    monkeypatch.setattr(threesum, "_FREE_ATTEMPTS", 1)
    with pytest.raises(ValueError, match="3-SUM-free.*increase value_range"):
        generate_three_sum(50, 2, seed=0, planted=False)


def test_unplanted_three_sum_in_a_dense_range_is_still_free_but_structured():
    x = generate_three_sum(300, 30, seed=0, planted=False)
    assert three_sum(x) is None
    assert np.unique(x).size < 30  # the documented skew: few distinct values


@pytest.mark.parametrize("planted", [None, True, False])
def test_three_sum_generator_is_deterministic_per_seed(planted):
    a = generate_three_sum(30, 10**4, seed=7, planted=planted)
    b = generate_three_sum(30, 10**4, seed=7, planted=planted)
    c = generate_three_sum(30, 10**4, seed=8, planted=planted)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(a).max() <= 10**4


def test_three_sum_generator_covers_both_answers_when_unplanted():
    answers = {has_three_sum(generate_three_sum(12, 30, seed=s)) for s in range(40)}
    assert answers == {True, False}


# ---------------------------------------------------------------------------------------------
# Validation and documentation
# ---------------------------------------------------------------------------------------------

BAD_CALLS = [
    (lambda: match2_labels([1, 2], 5), "x must be a numpy array"),
    (lambda: match2_labels(np.array([1.0, 2.0]), 5), "x must have an integer dtype"),
    (lambda: match2_labels(np.array([True, False]), 5), "x must have an integer dtype"),
    (lambda: match2_labels(arr([[1, 2]]), 5), "x must have rank 1"),
    (lambda: match2_labels(arr([1, 5]), 5), r"x must have values in \[0, 5\), got 5 at index 1"),
    (lambda: match2_labels(arr([-1]), 5), r"x must have values in \[0, 5\)"),
    (lambda: match2_labels(arr([0]), 1), "modulus must be an integer >= 2"),
    (lambda: match2_labels(arr([0]), 2.0), "modulus must be an integer >= 2"),
    (lambda: generate_match2(0, 5), "n must be an integer >= 1"),
    (lambda: generate_match2(5, 5, seed=-1), "seed must be non-negative"),
    (lambda: generate_match2_balanced(10, 4, 2), "modulus must be an integer >= 3"),
    (lambda: generate_match2_balanced(0), "count must be an integer >= 1"),
    (lambda: find_k(arr([0, 1]), -1), "k must be an integer >= 0"),
    (lambda: hop_k(arr([0, 1]), True), "k must be an integer >= 0"),
    (lambda: hop_k(arr([0, -1]), 1), r"x must have values in \[0, inf\)"),
    (lambda: hop_k(np.array([0.5]), 1), "x must have an integer dtype"),
    (lambda: generate_khop(10, 1, 1), r"alphabet_size \(with no_repeats=True\) must be an integer >= 2"),
    (lambda: generate_khop(10, 0, 1, no_repeats=False), "alphabet_size must be an integer >= 1"),
    (lambda: generate_khop(10, 4, 1, no_repeats=1), "no_repeats must be a bool"),
    (lambda: generate_khop(0, 4, 1), "n must be an integer >= 1"),
    (lambda: generate_khop_batch(0, 5, 4, 1), "count must be an integer >= 1"),
    (lambda: generate_khop_mixed(5, 5, 4, []), "ks must contain at least one hop count"),
    (lambda: generate_khop_mixed(5, 5, 4, 1), "ks must be an iterable"),
    (lambda: generate_khop_mixed(5, 5, 4, [0, -2]), "each hop count in ks must be an integer >= 0"),
    (lambda: khop_vocab_size(4, -1), "max_k must be an integer >= 0"),
    (lambda: three_sum(np.array([0.0, 0.0, 0.0])), "x must have an integer dtype"),
    (lambda: three_sum(arr([[0, 0, 0]])), "x must have rank 1"),
    (lambda: generate_three_sum(2, 5, planted=True), "n must be an integer >= 3"),
    (lambda: generate_three_sum(5, 0), "value_range must be an integer >= 1"),
    (lambda: generate_three_sum(5, 2**63), r"value_range must be at most 2\*\*62"),
    (lambda: generate_three_sum(5, 5, planted="yes"), "planted must be True, False or None"),
]


@pytest.mark.parametrize(("call", "message"), BAD_CALLS)
def test_bad_task_inputs_raise_value_errors_naming_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_tasks_package_reexports_exactly_its_modules_public_names():
    names = set(khop.__all__) | set(match2.__all__) | set(threesum.__all__)
    assert set(anna.tasks.__all__) == names
    assert all(hasattr(anna.tasks, name) for name in names)


@pytest.mark.parametrize("module", [match2, khop, threesum, _common])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0
