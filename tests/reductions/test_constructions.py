"""The Section 5 constructions: exact on the reference solvers, with the depth and width they claim.

Direct constructions (Match2, induction heads, k-hop) run with exact-match heads and with ANNA
(Algorithm 1, E2LSH at Theorem 3.4's z and ell); the compiled routes (pointer doubling, 3-SUM)
run through Theorem 4.1. Large sizes are marked slow; each has a small unmarked instance.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from anna.lsh import E2LSH, theory_parameters
from anna.tasks import (BOTTOM, find_k, generate_khop, has_three_sum, hop_k, hop_k_bruteforce, match2_labels,
                        match2_labels_bruteforce)
from mpc_sim.protocols.khop import KHop
from mpc_sim.protocols.threesum import ThreeSum
from reductions.claims import all_claims
from reductions.claims.base import SweepPoint
from reductions.claims.theorem5 import Theorem52, Theorem54, Theorem56, ThreeSumWidth
from reductions.constructions import (INDUCTION_DEPTH, compiled_khop, compiled_khop_depth, compiled_threesum,
                                      doubling_program, induction_transformer, integer_lsh, khop_depth,
                                      khop_transformer, match2_transformer, predicted_width_exponent)
from reductions.constructions import khop as khop_module
from reductions.plots_tasks import KHOP_DEPTH_FIGURE, khop_depth_figure, khop_depth_series, write_task_figures


def khop_data(n, k, seed, alphabet=4):
    inputs, targets = generate_khop(n, alphabet, k, seed=seed)
    return inputs[1:], targets


# --- Match2 (Theorem 5.2) ---------------------------------------------------------------------------
MATCH2_CASES = [([1, 4, 0, 2], 5), ([0], 2), ([1], 2), ([3, 3], 6), ([1, 2], 5), ([36, 1, 0, 18], 37)]


@pytest.mark.parametrize("x,modulus", MATCH2_CASES)
def test_match2_construction_matches_the_bruteforce_labels_on_the_case_table(x, modulus):
    x = np.array(x)
    assert match2_transformer(modulus)(x).tolist() == match2_labels_bruteforce(x, modulus).tolist()


@given(st.integers(2, 40).flatmap(lambda m: st.tuples(st.just(m), st.lists(st.integers(0, m - 1), min_size=1,
                                                                                max_size=30))))
def test_match2_construction_matches_bruteforce_on_random_inputs(case):
    modulus, values = case
    x = np.array(values)
    assert np.array_equal(match2_transformer(modulus)(x), match2_labels_bruteforce(x, modulus))


def test_match2_is_one_layer_one_head_m_one_and_reads_the_empty_neighbourhood_as_zero():
    model = match2_transformer(7)
    report = model.report()
    assert (report.depth, report.heads_per_layer, report.m) == (1, (1,), 1)
    x = np.array([1, 2, 6, 0])                      # 2 has no partner (5 absent)
    trace = model.run(x)
    counts = trace.counts[0][0]
    assert trace.outputs.tolist() == [1, 0, 1, 1]
    assert counts.tolist() == [1, 0, 1, 1]          # no colliding key: count 0, zero output


@pytest.mark.parametrize("exponent", [10, 12, pytest.param(16, marks=pytest.mark.slow)])
def test_match2_is_exact_with_ema_and_with_anna_at_the_theory_parameters(exponent):
    n = 2**exponent
    for modulus in (n + 1, 37):
        x = np.random.default_rng(exponent + modulus).integers(0, modulus, size=n)
        labels = match2_labels(x, modulus)
        assert np.array_equal(match2_transformer(modulus)(x), labels)
        anna = match2_transformer(modulus, attention="anna", n=n, seed=exponent)
        assert np.array_equal(anna(x), labels)
    theory = theory_parameters(n, 0.01, 100.0, E2LSH(width=1.0))
    assert anna.report().tables == ((theory.ell,),)
    assert anna.report().hash_functions == ((theory.z * theory.ell,),)


def test_constructions_refuse_bad_arguments_with_clear_errors():
    with pytest.raises(ValueError, match="modulus"):
        match2_transformer(1)
    with pytest.raises(ValueError, match=r"values in \[0, 5\)"):
        match2_transformer(5)(np.array([1, 5]))
    with pytest.raises(ValueError, match="needs n"):
        match2_transformer(5, attention="anna")
    with pytest.raises(ValueError, match="only used with attention='anna'"):
        match2_transformer(5, lsh=integer_lsh(10))
    with pytest.raises(ValueError, match="attention must be one of"):
        khop_transformer(2, attention="softmax")
    with pytest.raises(ValueError, match="k must be an integer"):
        khop_transformer(-1)
    with pytest.raises(ValueError, match="integer dtype"):
        khop_transformer(1)(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="non-negative"):
        khop_transformer(1)(np.array([[1, 2]]))


# --- k-hop, direct (Theorem 5.6) --------------------------------------------------------------------
@given(st.lists(st.integers(0, 3), min_size=1, max_size=40), st.integers(0, 12))
def test_khop_construction_matches_the_definition_on_random_sequences(values, k):
    x = np.array(values)
    assert np.array_equal(khop_transformer(k)(x), hop_k_bruteforce(x, k))


@pytest.mark.parametrize("alphabet,no_repeats", [(4, True), (2, False), (9, False), (300, False)])
def test_khop_construction_is_exact_for_every_k_up_to_64(alphabet, no_repeats):
    rng = np.random.default_rng(alphabet)
    if no_repeats:
        x, _ = khop_data(600, 1, seed=alphabet, alphabet=alphabet)
    else:
        x = rng.integers(0, alphabet, size=600)
    for k in range(0, 65):
        assert np.array_equal(khop_transformer(k)(x), hop_k(x, k)), k


@pytest.mark.parametrize("exponent,ks", [(12, (1, 5, 64)), pytest.param(14, tuple(range(1, 65)), marks=pytest.mark.slow)])
def test_khop_construction_is_exact_at_large_n(exponent, ks):
    for k in ks:
        x, targets = khop_data(2**exponent, k, seed=k)
        assert np.array_equal(khop_transformer(k)(x), targets), k


def test_khop_depth_is_logarithmic_in_k_and_the_width_constant():
    for k in range(1, 1025):
        model_depth = khop_depth(k)
        assert model_depth == 3 + (k.bit_length() - 1) + int(bin(k).count("1") > 1)
        assert model_depth <= int(np.floor(np.log2(k))) + 4
    for k in (1, 2, 3, 16, 63, 64):
        report = khop_transformer(k).report()
        assert report.depth == khop_depth(k)
        assert report.max_heads <= 2 and report.m <= 3 and report.width <= 6
        assert all(layer.causal for layer in khop_transformer(k).layers)
    assert khop_transformer(0).report().depth == 0


def test_doubling_program_composes_to_k():
    for k in range(1, 300):
        layers, answer = doubling_program(k)
        g, a = 1, None                       # exponents of find held in the registers
        for step in layers:
            if step.copy:
                a = g
            if step.a_req:
                a = a + g
            if step.g_req:
                g = 2 * g
        if answer == "g":
            assert g == k
        else:
            assert a == k


def test_khop_intermediate_layers_hold_ranks_and_find1():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, size=300)
    states = khop_transformer(1).run(x).states
    ranks = np.array([np.count_nonzero(x[:p + 1] == x[p]) for p in range(x.size)])
    assert np.allclose(states[2][:, khop_module._INV_COUNT], 1.0 / ranks)
    valid, pointer, token = (states[3][:, c] for c in khop_module._G)
    find1 = find_k(x, 1)
    assert np.array_equal(np.where(valid > 0.5, pointer, BOTTOM), find1)
    assert np.array_equal(np.where(valid > 0.5, token, BOTTOM), hop_k(x, 1))


def test_khop_construction_is_causal():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 4, size=200)
    y = x.copy()
    y[120:] = rng.integers(0, 4, size=80)
    model = khop_transformer(13)
    assert np.array_equal(model(x)[:120], model(y)[:120])


@pytest.mark.parametrize("n,ks", [(2**9, (3, 16)), pytest.param(2**14, (1, 64), marks=pytest.mark.slow)])
def test_khop_construction_is_exact_with_anna_heads_at_the_theory_parameters(n, ks):
    for k in ks:
        x, targets = khop_data(n, k, seed=k + 1)
        model = khop_transformer(k, attention="anna", n=n, seed=k)
        assert all(h.kind == "anna" and h.lsh == integer_lsh(n) for layer in model.layers for h in layer.heads)
        assert np.array_equal(model(x), targets), k


# --- induction heads (Theorem 5.4) ------------------------------------------------------------------
@pytest.mark.parametrize("exponent", [4, 8, 12, pytest.param(14, marks=pytest.mark.slow)])
def test_induction_heads_keep_depth_3_and_are_exact_at_every_n(exponent):
    x, targets = khop_data(2**exponent, 1, seed=exponent)
    model = induction_transformer()
    assert model.report().depth == INDUCTION_DEPTH == 3
    assert np.array_equal(model(x), targets)
    if exponent <= 12:
        anna = induction_transformer(attention="anna", n=2**exponent, seed=exponent)
        assert np.array_equal(anna(x), targets)


# --- compiled routes (Theorem 4.1) ------------------------------------------------------------------
@pytest.mark.parametrize("n,k", [(16, 1), (16, 3), (16, 64), pytest.param(64, 5, marks=pytest.mark.slow),
                                 pytest.param(64, 64, marks=pytest.mark.slow)])
def test_compiled_pointer_doubling_is_exact_with_one_layer_per_round(n, k):
    x, targets = khop_data(n, k, seed=n + k)
    model = compiled_khop(k, n)
    assert np.array_equal(model(x), targets)
    protocol = KHop(k=k)
    assert model.report.depth == compiled_khop_depth(k, n) == protocol.rounds_bound(protocol.default_config(n, 0.5))


def test_compiled_routes_are_exact_with_anna_heads():
    x, targets = khop_data(16, 3, seed=1)
    assert np.array_equal(compiled_khop(3, 16, attention="anna", seed=2)(x), targets)
    data = np.array([4, 9, -1, 30, 8, -12, 2, 50, 7, 3, 11, 60])
    model = compiled_threesum(12, attention="anna", seed=3)
    assert {h.kind for layer in model.transformer.layers for h in layer.heads} == {"anna"}
    assert model(data).tolist() == [1] == [int(has_three_sum(data))]


def test_compiled_pointer_doubling_depth_grows_by_two_layers_per_doubling_of_k():
    depths = [compiled_khop_depth(2**j, 256) for j in range(0, 8)]
    assert np.diff(depths).tolist() == [2] * 7


@pytest.mark.parametrize("n", [12, pytest.param(32, marks=pytest.mark.slow)])
def test_compiled_threesum_answers_yes_and_no_instances(n):
    protocol = ThreeSum()
    config = protocol.default_config(n, 0.6)
    rng = np.random.default_rng(n)
    no = rng.integers(1, 1000, size=n)                       # positive: no triple
    yes = no.copy()
    yes[[0, n // 2, n - 1]] = (-9, 4, 5)
    model = compiled_threesum(n)
    for data in (no, yes):
        assert model(data).tolist() == [int(has_three_sum(data))]
    assert model.report.depth == protocol.rounds_bound(config)


def test_compiled_threesum_width_follows_memory_times_fanout():
    widths, ns = [], [2**e for e in range(8, 21, 4)]
    for n in ns:
        widths.append(compiled_threesum(n).report.width)
    slope = np.polyfit(np.log(ns), np.log(widths), 1)[0]
    assert abs(slope - predicted_width_exponent(0.6)) < 0.06


# --- claims and figure ------------------------------------------------------------------------------
def test_section5_claims_are_registered_and_hold_in_quick_mode():
    names = [claim.name for claim in all_claims()]
    for name in ("Theorem 5.2", "Theorem 5.4", "Theorem 5.6", "3-SUM"):
        assert name in names
    for claim in (Theorem52(), Theorem54(), Theorem56(), ThreeSumWidth()):
        results = claim.run(quick=True)
        assert results and all(r.holds for r in results), [r for r in results if not r.holds]


def test_khop_depth_series_has_every_curve_of_the_figure():
    series = khop_depth_series(range(1, 65), compiled_n=64)
    assert series["anna_direct"] == [khop_depth(k) for k in range(1, 65)]
    assert series["rnn_lowrank"] == list(range(1, 65))
    assert series["softmax"][-1] == 8 and series["anna_direct"][-1] == 9
    assert all(d < k for d, k in zip(series["anna_direct"], series["k"]) if k >= 7)


def test_khop_figure_is_handed_to_verify_and_drawn_as_png(tmp_path):
    claim = Theorem56()
    sweep = [SweepPoint(64, {"part": "by_k", "k": k, "depth": khop_depth(k), "errors": 0}) for k in (1, 2, 4, 8)]
    (spec,) = claim.figures(sweep)
    assert spec == khop_depth_figure([1, 2, 4, 8], claim.compiled_n)
    assert spec.name == KHOP_DEPTH_FIGURE and not spec.ylog
    assert spec.series[-1].ys == (1.0, 2.0, 4.0, 8.0)          # the depth-k reference line
    pytest.importorskip("matplotlib", reason="figures need the optional 'plot' extra (matplotlib)")
    paths = write_task_figures(tmp_path / "figs")
    assert [p.name for p in paths] == [KHOP_DEPTH_FIGURE + ".png"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
