"""The claims of ``anna-mpc verify``: the fit helper, the result records, and for every claim a
sweep that violates it and must make it fail (tiny instances only; the sweeps run in ``verify``)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from rich.console import Console

from anna.attention import anna_weights
from anna.check import check_anna
from anna.lsh import LSHConfig
from reductions.claims import (ClaimResult, SweepPoint, Theorem34, Theorem41, Theorem42, Theorem44, Theorem52,
                               Theorem54, Theorem56, ThreeSumWidth, all_claims, fit_loglog, results_table)
from reductions.claims.theorem34 import DEFAULT_SETTINGS, planted_data, sparse_anna_check


def _verdicts(results):
    return {r.quantity: r.holds for r in results}


# --- the fit and the records ----------------------------------------------------------------------
def test_fit_loglog_recovers_power_laws_and_lines_and_refuses_degenerate_input():
    fit = fit_loglog([2, 4, 8, 16], [3 * 2**1.5, 3 * 4**1.5, 3 * 8**1.5, 3 * 16**1.5])
    assert fit.slope == pytest.approx(1.5) and fit.r2 == pytest.approx(1.0)
    assert fit.predict(32) == pytest.approx(3 * 32**1.5)
    line = fit_loglog([0, 1, 2, 3], [3, 4, 5, 6], logx=False, logy=False)
    assert (round(line.slope, 9), round(line.intercept, 9)) == (1.0, 3.0)
    for xs, ys in (([1, 1], [2, 3]), ([1], [1]), ([1, 2], [0, 1]), ([1, 2], [1, 2, 3])):
        with pytest.raises(ValueError):
            fit_loglog(xs, ys)


def test_the_four_kinds_of_check_hold_and_fail_on_their_boundaries():
    claim = Theorem41()
    ns = [2**e for e in range(4, 12)]
    assert claim.exponent("q", ns, [n**0.55 for n in ns], 0.5).holds
    assert not claim.exponent("q", ns, [n**0.65 for n in ns], 0.5).holds
    assert not claim.exponent("q", ns, [n**0.35 for n in ns], 0.5).holds       # two-sided
    upper = claim.slope_at_most("q", ns, [n**0.2 for n in ns], 0.5)
    assert upper.holds and upper.ratio == pytest.approx(0.4)
    assert not claim.slope_at_most("q", ns, [n**0.7 for n in ns], 0.5).holds
    bound = claim.bound("q", ns, [1.0] * len(ns), [2.0] * len(ns))
    assert bound.holds and bound.ratio == pytest.approx(0.5)
    assert not claim.bound("q", ns, [3.0] * len(ns), [2.0] * len(ns)).holds
    assert claim.exact("q", ns, [True] * len(ns)).holds
    assert not claim.exact("q", ns, [True, False] + [True] * 6).holds


def test_results_are_json_numbers_with_series_fit_and_tolerance():
    ns = [2**e for e in range(4, 9)]
    r = Theorem41().exponent("width", ns, [n**0.5 for n in ns], 0.5, y_label="width")
    d = json.loads(json.dumps(r.to_dict()))
    assert isinstance(d["measured"], float) and d["predicted"] == 0.5 and d["tolerance"] == 0.1
    assert d["series"]["n"] == ns and len(d["series"]["width"]) == len(ns)
    assert d["fit"]["slope"] == pytest.approx(0.5) and d["holds"] is True
    with pytest.raises(ValueError):
        ClaimResult("c", "q", "guess", 1.0, 1.0, 0.1, True)


def test_the_table_prints_the_tolerance_and_fits_80_columns():
    ns = [2**e for e in range(6, 14)]
    rows = [Theorem42().exponent("machines / (D r log n (5+m)/m) (c=16, eps=0.25)", ns, ns, 1.0),
            Theorem41().exact("depth = R x layers/round (connectivity, eps 0.6)", ns, [True] * len(ns)),
            Theorem34().bound("eta <= union bound (angular, cross-polytope)", ns, [0.0] * 8, [0.5] * 8)]
    console = Console(width=80, record=True)
    console.print(results_table(rows))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "tol" in text and "0.1" in text and "2^6..2^13" in text


# --- Theorem 3.4 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("setting", DEFAULT_SETTINGS, ids=lambda s: s.label)
def test_sparse_anna_check_agrees_with_the_dense_checker(setting):
    q, k = planted_data(setting, 48, seed=3)
    for z, ell in ((1, 1), (2, 3), (4, 12)):
        lsh = LSHConfig(setting.family, z, ell)
        sparse = sparse_anna_check(q, k, lsh, setting.r, setting.c, seed=5)
        dense = check_anna(q, k, anna_weights(q, k, lsh, seed=5), setting.r, setting.c, ell)
        assert sparse.failed_queries == dense.failed_queries
        assert sparse.near_pairs - sparse.near_ok == dense.condition2
        assert sparse.far_pairs - sparse.far_excluded == dense.condition1


def test_theorem34_holds_on_a_tiny_sweep_and_fails_on_violations():
    claim = Theorem34(quick_exponents=(5, 6, 7), quick_time_exponents=(6, 7, 8), quick_eta_exponents=(5, 6),
                      quick_eta_seeds=2, rho_pairs=4000)
    sweep = claim.sweep(quick=True)
    results = claim.check(sweep)
    assert all(r.holds for r in results if "log n" not in r.quantity), [r for r in results if not r.holds]
    assert {r.kind for r in results if "log n" in r.quantity} == {"exponent", "slope at most"}
    broken = []
    for p in sweep:
        v = dict(p.values)
        if v["part"] == "check":
            v["near_ok"] = v["near_pairs"] - 1
            v["far_excluded"] = v["far_pairs"] - 1
        elif v["part"] == "eta":
            v["failures"] = v["seeds"]
            v["bound"] = 0.01
        elif v["part"] == "time":
            v["seconds"], v["hash_seconds"] = 2.0 * p.n ** 3, float(p.n) ** 3
        elif v["part"] == "rho":
            v["rho"] = v["rho_theory"] + 0.2
        broken.append(SweepPoint(p.n, v))
    assert not any(r.holds for r in claim.check(broken))


# --- Theorem 4.1 ------------------------------------------------------------------------------------
def _t41_point(n, **over):
    v = {"protocol": "sort", "eps": 0.5, "rounds": 6, "fanout": int(n**0.5), "s": int(n**0.5),
         "memory": int(n**0.5), "depth": 6, "heads": int(n**0.5) + 1, "m": int(n**0.5),
         "width": int(n**0.5) * (int(n**0.5) + 1), "alpha_half": int(n**0.5) // 2 + 1, "depth_half": 12, "exact": True}
    v.update(over)
    return SweepPoint(n, v)


def test_theorem41_check_fails_on_wrong_output_depth_or_width():
    ns = [2**e for e in (8, 10, 12, 14)]
    good = [_t41_point(n) for n in ns]
    assert all(r.holds for r in Theorem41().check(good)), Theorem41().check(good)
    bad = [_t41_point(n, exact=False, depth=7, width=5) for n in ns]
    verdicts = _verdicts(Theorem41().check(bad))
    assert not any(verdicts.values()), verdicts


# --- Theorem 4.2 ------------------------------------------------------------------------------------
def _small_theorem42():
    return Theorem42(eps=(0.25,), c=(16.0,), quick_exponents=(5, 6, 7, 8), quick_simulate={16.0: (5, 6, 7)},
                     quick_baseline_exponents=(3, 4, 5), rho_pairs=4000)


def test_theorem42_holds_on_a_small_sweep_and_each_check_fails_on_violations():
    claim = _small_theorem42()
    sweep = claim.sweep(quick=True)
    results = claim.check(sweep)
    assert [r.holds for r in results if "memory" not in r.quantity] == \
        [True] * (len(results) - 1), [r for r in results if not r.holds]
    broken = []
    for p in sweep:
        v = dict(p.values)
        if v["kind"] == "anna":
            v["machines"] = p.n ** 3
            if v["simulated"]:
                v.update(agrees=False, rounds=v["formula"] + p.n, max_memory=p.n ** 2)
        elif v["kind"] == "softmax":
            v.update(machines=p.n ** 3, active=p.n ** 3)
        broken.append(SweepPoint(p.n, v))
    verdicts = _verdicts(claim.check(broken))
    assert not any(verdicts.values()), verdicts


def test_theorem42_reports_c_2_as_not_applicable_with_the_failing_hypothesis_and_numbers():
    claim = Theorem42(eps=(0.25,), c=(2.0,), quick_exponents=(5, 6), quick_simulate={}, quick_baseline_exponents=(),
                      rho_pairs=4000)
    sweep = claim.sweep(quick=True)
    assert [p.values["kind"] for p in sweep] == ["rho"]                 # nothing swept at c = 2
    rows = claim.check(sweep)
    assert [r.kind for r in rows] == ["not applicable"] * 2
    assert all(not r.holds and not r.failed and r.measured >= 1 / 3 and r.predicted == pytest.approx(1 / 3)
               for r in rows)
    assert "ell is 366 at n = 16" in rows[0].detail and "3/c^2 = 0.750" in rows[0].detail
    from rich.console import Console
    console = Console(width=80, record=True)
    console.print(results_table(rows))
    assert "n/a" in console.export_text() and "NO" not in console.export_text()
    assert claim.not_applicable("x", 0.2, 1 / 3).holds


def test_theorem34_eta_row_says_why_its_range_is_short():
    claim = Theorem34()
    label = DEFAULT_SETTINGS[1].label
    etas = [SweepPoint(2**e, {"part": "eta", "family": label, "seeds": 8, "failures": 0, "bound": 0.2,
                              "work": 2**e * 100, "seconds": 3.0}) for e in (5, 6, 7, 8)]
    assert "only (a factor 8)" in claim._eta_range_note(label, etas)
    long = [SweepPoint(2**e, dict(etas[0].values)) for e in range(5, 13)]
    assert claim._eta_range_note(label, long) == ""


def test_theorem42_refuses_c_outside_the_theorem():
    with pytest.raises(ValueError, match="sqrt 3"):
        Theorem42(c=(1.5,))
    with pytest.raises(ValueError, match="eps"):
        Theorem42(eps=(0.8,), eps_prime=0.75)


# --- Theorem 4.4 ------------------------------------------------------------------------------------
def test_theorem44_measures_heads_on_the_built_model_and_fails_on_violations():
    claim = Theorem44(quick_exponents=(6, 7, 8, 9))
    sweep = claim.sweep(quick=True)
    results = claim.check(sweep)
    assert all(r.holds for r in results if "heads" not in r.quantity and "m vs" not in r.quantity), results
    assert all(p.values["heads"] == claim.fanout(p.n) + 1 for p in sweep)      # alpha routing heads + 1
    broken = [SweepPoint(p.n, {**p.values, "exact": False, "depth": p.values["depth"] * p.n,
                               "m": p.n ** 2, "heads": p.n, "width": p.n ** 3}) for p in sweep]
    assert not any(_verdicts(claim.check(broken)).values())


# --- Section 5 -------------------------------------------------------------------------------------
def test_theorem52_fails_on_errors_and_wrong_sizes():
    good = [SweepPoint(2**e, {"ema_errors": 0, "anna_errors": 0, "jitter_errors": 0, "positive": 0.6, "z": 3,
                              "ell": 5, "eta_bound": 0.01, "depth": 1, "heads": 1, "m": 1}) for e in (6, 8, 10)]
    assert all(r.holds for r in Theorem52().check(good))
    bad = [SweepPoint(p.n, {**p.values, "ema_errors": 1, "anna_errors": 2, "jitter_errors": 3, "depth": 2})
           for p in good]
    assert not any(r.holds for r in Theorem52().check(bad))


def test_theorem52_jittered_anna_keys_are_within_r_and_still_exact():
    from anna.tasks import match2_labels
    from reductions.claims.theorem5 import jittered
    from reductions.constructions.match2 import match2_transformer
    x = np.random.default_rng(1).integers(0, 65, size=64)
    model = jittered(match2_transformer(65, attention="anna", n=64, seed=0), 0.01, seed=2)
    assert (model(x) == match2_labels(x, 65)).all()


def test_theorem54_fails_on_errors_and_growing_depth():
    bad = [SweepPoint(2**e, {"ema_errors": 1, "depth": e, "width": 6, "anna_errors": 1}) for e in (6, 8, 10)]
    assert not any(r.holds for r in Theorem54().check(bad))


def _near_values(**changes):
    values = {"near_runs": 8, "near_failed_runs": 0, "near_bad_runs": 0, "near_errors": 0, "near_queries": 5000,
              "near_misses": 0, "near_far_hits": 0, "near_collided_tables": 95_000, "near_tried_tables": 100_000,
              "near_miss_bound": 1e-20, "near_run_bound": 0.01, "near_p1z": 0.85, "near_z": 21, "near_ell": 25}
    return values | changes


def test_theorem54_near_key_checks_hold_on_clean_runs_and_fail_on_misses_far_hits_and_wrong_outputs():
    good = [SweepPoint(2**e, {"ema_errors": 0, "depth": 3, "width": 6, "anna_errors": 0} | _near_values())
            for e in (6, 8, 10)]
    assert all(_verdicts(Theorem54().check(good)).values())
    bad = [SweepPoint(p.n, {**p.values, **_near_values(near_failed_runs=4, near_bad_runs=1, near_misses=3,
                                                       near_far_hits=7, near_collided_tables=60_000)})
           for p in good]
    verdicts = _verdicts(Theorem54().check(bad))
    near = {q: v for q, v in verdicts.items() if "within r" in q or "miss" in q or "LSH failure" in q}
    assert len(near) == 4 and not any(near.values()), verdicts


def test_theorem54_exercises_the_ell_table_recall_with_near_keys_and_stays_exact():
    claim = Theorem54(quick_exponents=(6, 8), near_seeds=2, quick_near_seeds=2)
    sweep = claim.sweep(quick=True)
    assert all(p.values["near_runs"] == 2 for p in sweep)
    # near pairs are found through the tables: some (group, table) trials miss, but no query misses all
    assert all(0 < p.values["near_collided_tables"] < p.values["near_tried_tables"] for p in sweep)
    assert all(r.holds for r in claim.check(sweep)), claim.check(sweep)


def test_theorem56_fails_on_linear_depth_errors_and_growing_compiled_depth():
    sweep = [SweepPoint(64, {"part": "by_k", "k": k, "depth": k + 2, "errors": 1}) for k in (1, 2, 4, 8, 16)]
    sweep += [SweepPoint(2**e, {"part": "by_n", "k": 16, "depth": e, "errors": 1}) for e in (6, 8)]
    sweep += [SweepPoint(512, {"part": "anna", "k": 16, "errors": 2} | _near_values(
        near_failed_runs=4, near_bad_runs=1, near_misses=2, near_collided_tables=60_000))]
    sweep += [SweepPoint(64, {"part": "compiled_depth", "k": k, "depth": 10 * k}) for k in (1, 2, 4, 8)]
    sweep += [SweepPoint(16, {"part": "compiled", "k": 3, "depth": 20, "errors": 1})]
    verdicts = _verdicts(Theorem56().check(sweep))
    assert not any(verdicts.values()), verdicts


def test_threesum_fails_on_flat_width_growing_depth_and_wrong_answers():
    sweep = [SweepPoint(2**e, {"part": "width", "width": 100, "depth": e, "heads": 3, "m": 3, "s": 1,
                               "machines": 1}) for e in (8, 10, 12)]
    sweep += [SweepPoint(16, {"part": "run", "seed": 0, "answer": 1, "truth": 0, "tokens": 4})]
    assert not any(r.holds for r in ThreeSumWidth().check(sweep))


# --- registry and command line --------------------------------------------------------------------
def test_every_theorem_is_registered_once():
    names = [c.name for c in all_claims()]
    assert names[:2] == ["Theorem 3.4", "Theorem 4.1"] and len(names) == len(set(names)) == 8


def test_result_figures_draw_each_fit(tmp_path):
    pytest.importorskip("matplotlib", reason="figures need the optional 'plot' extra (matplotlib)")
    from reductions.plots import result_figures, write_figures
    ns = [2**e for e in range(4, 9)]
    rows = [Theorem41().exponent("width", ns, [n**0.5 for n in ns], 0.5),
            Theorem41().exact("out", ns, [True] * 5)]
    specs = result_figures(rows)
    assert len(specs) == 1
    assert [s.label for s in specs[0].series] == ["measured", "least-squares fit", "predicted, +-0.1"]
    paths = write_figures(specs, tmp_path)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_say_how_to_install_matplotlib_when_it_is_missing(monkeypatch, tmp_path):
    import sys

    from reductions.cli import main
    from reductions.plots import PlotError, require_matplotlib
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotError, match="anna-mpc\\[plot\\]"):
        require_matplotlib()
    assert main(["verify", "--quick", "--plots", str(tmp_path)]) == 2
