"""Section 5's constructions as claims: Match2 (Thm 5.2), induction heads (Thm 5.4), k-hop
(Thm 5.6) and 3-SUM, each with a sweep that runs the models and a check with the numbers.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from anna.tasks import generate_khop, match2_labels
from mpc_sim import Simulator
from mpc_sim.protocols.threesum import ThreeSum, three_sum_reference

from ..compile import compile_mpc
from ..constructions import INT_NEAR, integer_lsh_parameters
from ..constructions.khop import compiled_khop, khop_transformer, predecessor_depth
from ..constructions.match2 import match2_transformer
from ..constructions.threesum import predicted_width_exponent
from ..plots import FigureSpec
from ..plots_tasks import khop_depth_figure
from .base import Claim, ClaimResult, SweepPoint
from .jitter import failure_bounds, jittered, lsh_failures

__all__ = ["Theorem52", "Theorem54", "Theorem56", "ThreeSumWidth", "jittered"]

Progress = Callable[[str], None] | None


def _say(progress: Progress, text: str) -> None:
    if progress:
        progress(text)


def _span(points: Sequence[SweepPoint], symbol: str = "N") -> str:
    return f"{symbol} = 2^{int(math.log2(points[0].n))}..2^{int(math.log2(points[-1].n))}"


# --- Theorem 5.2 ----------------------------------------------------------------------------------
class Theorem52(Claim):
    """Match2 with 1 layer, 1 head, m = 1: exact with exact-match attention at every N, and with
    ANNA (E2LSH at Theorem 3.4's z and ell for N tokens) on random inputs, M = N + 1, both on the
    integer keys and on keys jittered within r (:func:`jittered`: the ell-table recall half)."""

    name = "Theorem 5.2"
    statement = "Match2: 1 layer, 1 head, m = 1 (Q = -x mod M, K = x, V = 1, r = 0)"

    def __init__(self, exponents: tuple[int, ...] = (8, 10, 12, 14, 16), quick_exponents: tuple[int, ...] = (6, 8, 10),
                 seed: int = 0):
        self.exponents, self.quick_exponents, self.seed = exponents, quick_exponents, seed

    def sweep(self, quick: bool = False, progress: Progress = None) -> list[SweepPoint]:
        points = []
        for e in (self.quick_exponents if quick else self.exponents):
            n = 2 ** e
            _say(progress, f"Theorem 5.2: Match2, N = 2^{e}")
            modulus = n + 1
            rng = np.random.default_rng([self.seed, e])
            x = rng.integers(0, modulus, size=n)
            labels = match2_labels(x, modulus)
            ema = match2_transformer(modulus)
            anna = match2_transformer(modulus, attention="anna", n=n, seed=self.seed)
            theory = integer_lsh_parameters(n)
            report = anna.report()
            points.append(SweepPoint(n, {
                "ema_errors": int((ema(x) != labels).sum()), "anna_errors": int((anna(x) != labels).sum()),
                "jitter_errors": int((jittered(anna, INT_NEAR, self.seed + e)(x) != labels).sum()),
                "positive": float(labels.mean()), "z": theory.z, "ell": theory.ell, "eta_bound": theory.eta_bound,
                "depth": report.depth, "heads": report.max_heads, "m": report.m}))
        return points

    def check(self, sweep: list[SweepPoint]) -> list[ClaimResult]:
        ns = [p.n for p in sweep]
        v = [p.values for p in sweep]
        eta = sum(x["eta_bound"] for x in v)
        lsh = f"E2LSH(w=1), r = 0.01, c = 100: z {v[0]['z']}..{v[-1]['z']}, ell {v[0]['ell']}..{v[-1]['ell']}"
        return [
            self.exact("output = labels (EMA)", ns, [x["ema_errors"] == 0 for x in v],
                       detail=f"M = N + 1, {min(x['positive'] for x in v):.2f}..{max(x['positive'] for x in v):.2f} "
                              f"positive"),
            self.exact("output = labels (ANNA, equal keys)", ns, [x["anna_errors"] == 0 for x in v],
                       detail=f"{lsh}; sum of eta bounds {eta:.2g}"),
            self.exact("output = labels (ANNA, keys within r)", ns, [x["jitter_errors"] == 0 for x in v],
                       detail=f"queries and keys moved by <= r/2: near pairs collide w.p. p1^z per table; "
                              f"errors {[x['jitter_errors'] for x in v]}"),
            self.exact("depth, heads, m = 1, 1, 1", ns, [(x["depth"], x["heads"], x["m"]) == (1, 1, 1) for x in v],
                       detail="measured on the built ANNA transformer"),
        ]


# --- Theorem 5.4 ----------------------------------------------------------------------------------
def _khop_errors(model, n: int, k: int, seed: int) -> int:
    inputs, targets = generate_khop(n, 4, k, seed=seed)
    return int((model(inputs[1:]) != targets).sum())


def _near_key_runs(anna, n: int, k: int, seeds: Sequence[int]) -> dict:
    """The direct k-hop model ``anna`` (theory z, ell for ``n``) run with queries and keys moved
    within ``r`` (:func:`~reductions.claims.jitter.jittered`, equal keys kept equal), once per seed
    (data and shifts): token errors, LSH recall misses and far hits summed, and the bounds."""
    totals = {"runs": 0, "failed_runs": 0, "bad_runs": 0, "errors": 0, "queries": 0, "misses": 0,
              "far_hits": 0, "collided_tables": 0, "tried_tables": 0}
    heads = 0
    for s in seeds:
        inputs, targets = generate_khop(n, 4, k, seed=s)
        near = jittered(anna, INT_NEAR, s, keys="value")
        counts = lsh_failures(near, anna, inputs[1:])
        errors = int((near(inputs[1:]) != targets).sum())
        heads = counts.heads
        totals["runs"] += 1
        totals["failed_runs"] += counts.failed
        totals["bad_runs"] += errors > 0 and not counts.failed     # wrong although the LSH held
        totals["errors"] += errors
        for name, field in (("queries", "near_queries"), ("misses", "misses"), ("far_hits", "far_hits"),
                            ("collided_tables", "near_tables"), ("tried_tables", "tables")):
            totals[name] += getattr(counts, field)
    lsh = anna.layers[0].heads[0].lsh
    miss, run, p1z = failure_bounds(n, lsh, INT_NEAR, heads)
    return {f"near_{name}": value for name, value in totals.items()} | {
        "near_miss_bound": miss, "near_run_bound": run, "near_p1z": p1z, "near_z": lsh.z, "near_ell": lsh.ell}


def _stderr_bound(bound: float, trials: int) -> float:
    """``bound`` plus 3 binomial standard errors of a rate sampled over ``trials``."""
    return min(1.0, bound + 3.0 * math.sqrt(bound * (1.0 - bound) / max(trials, 1)))


def _near_key_results(claim: Claim, points: Sequence[SweepPoint], task: str) -> list[ClaimResult]:
    """The checks of :func:`_near_key_runs`' counts: exact outputs on every run whose LSH held, the
    per-table near collision rate against ``p1^z``, recall misses against ``(1 - p1^z)^ell`` and the
    rate of runs with any LSH failure against the union bound (both + 3 standard errors)."""
    ns = [p.n for p in points]
    v = [p.values for p in points]
    lsh = f"z {v[0]['near_z']}..{v[-1]['near_z']}, ell {v[0]['near_ell']}..{v[-1]['near_ell']}"
    table_miss = [1.0 - x["near_collided_tables"] / x["near_tried_tables"] for x in v]
    miss_bounds = ", ".join(f"{x['near_miss_bound']:.2g}" for x in v)
    run_bounds = ", ".join(f"{x['near_run_bound']:.2g}" for x in v)
    return [
        claim.exact(f"output = {task} (ANNA, keys within r)", ns, [x["near_bad_runs"] == 0 for x in v],
                    detail=f"queries moved <= r/2 each, equal keys together; {sum(x['near_runs'] for x in v)} runs, "
                           f"token errors {[x['near_errors'] for x in v]}, runs with an LSH failure "
                           f"{[x['near_failed_runs'] for x in v]} (checked below); {lsh}"),
        claim.bound("per-table near miss <= 1 - p1^z", ns, table_miss, [1.0 - x["near_p1z"] for x in v],
                    y_label="near pairs missed per table",
                    detail=f"{sum(x['near_tried_tables'] for x in v)} (near group, table) trials; p1 at distance r"),
        claim.bound("recall miss <= (1 - p1^z)^ell", ns,
                    [x["near_misses"] / max(x["near_queries"], 1) for x in v],
                    [_stderr_bound(x["near_miss_bound"], x["near_queries"]) for x in v],
                    y_label="queries missing their near keys",
                    detail=f"{sum(x['near_misses'] for x in v)} misses in {sum(x['near_queries'] for x in v)} "
                           f"(head, query) pairs; bounds {miss_bounds} "
                           f"(+3 stderr)"),
        claim.bound("eta: runs with an LSH failure <= union bound", ns,
                    [x["near_failed_runs"] / x["near_runs"] for x in v],
                    [_stderr_bound(x["near_run_bound"], x["near_runs"]) for x in v], y_label="failure rate",
                    detail=f"far hits {[x['near_far_hits'] for x in v]}; bounds "
                           f"{run_bounds} per run (+3 stderr; far pairs "
                           f"at >= 1 - r)"),
    ]


class Theorem54(Claim):
    """Induction heads (1-hop) in constant depth: the direct construction (3 causal layers, at
    most 2 heads, m <= 3) on THEORY §6 data (|Σ| = 4, no immediate repeats) at every N.

    Its ANNA heads (E2LSH at Theorem 3.4's z and ell for N tokens) run twice: on the integer keys
    (distance 0: every table collides) and with queries and keys moved within ``r``
    (:func:`~reductions.claims.jitter.jittered` with ``keys="value"``), so every match must be found
    through the ell tables. The construction averages over equal keys (mean positions, ``1/c_p``),
    which Algorithm 1 gives exactly when the equal keys collide in the same tables; keys moved one
    by one would break that (87 of 256 tokens wrong at N = 256), so equal keys move together. The
    recall misses, far hits and failed runs are measured (:func:`~reductions.claims.jitter.lsh_failures`)
    and checked against Theorem 3.4's bounds."""

    name = "Theorem 5.4"
    statement = "induction heads (k = 1): constant depth (3 layers, width 6) at every N"

    def __init__(self, exponents: tuple[int, ...] = (6, 8, 10, 12, 14), quick_exponents: tuple[int, ...] = (6, 8, 10),
                 anna_max_exponent: int = 14, near_seeds: int = 8, quick_near_seeds: int = 3, seed: int = 0):
        self.exponents, self.quick_exponents = exponents, quick_exponents
        self.anna_max_exponent, self.seed = anna_max_exponent, seed
        self.near_seeds, self.quick_near_seeds = near_seeds, quick_near_seeds

    def sweep(self, quick: bool = False, progress: Progress = None) -> list[SweepPoint]:
        points = []
        for e in (self.quick_exponents if quick else self.exponents):
            n = 2 ** e
            _say(progress, f"Theorem 5.4: induction heads, N = 2^{e}")
            ema = khop_transformer(1)
            report = ema.report()
            values = {"ema_errors": _khop_errors(ema, n, 1, self.seed + e), "depth": report.depth,
                      "width": report.width}
            if e <= self.anna_max_exponent:
                anna = khop_transformer(1, attention="anna", n=n, seed=self.seed)
                values["anna_errors"] = _khop_errors(anna, n, 1, self.seed + e)
                seeds = range(self.seed + e, self.seed + e + (self.quick_near_seeds if quick else self.near_seeds))
                values |= _near_key_runs(anna, n, 1, [1000 * s for s in seeds])
            points.append(SweepPoint(n, values))
        return points

    def check(self, sweep: list[SweepPoint]) -> list[ClaimResult]:
        ns = [p.n for p in sweep]
        anna = [p for p in sweep if "anna_errors" in p.values]
        results = [
            self.exact("output = hop_1 (EMA)", ns, [p.values["ema_errors"] == 0 for p in sweep],
                       detail="|Σ| = 4, no immediate repeats"),
            self.slope_at_most("depth vs N, O(1)", ns, [p.values["depth"] for p in sweep], 0.0, y_label="depth",
                               detail=f"depths {sorted({p.values['depth'] for p in sweep})}, width m*H "
                                      f"{sorted({p.values['width'] for p in sweep})} (built model)"),
        ]
        if anna:
            results.append(self.exact("output = hop_1 (ANNA, theory z, ell)", [p.n for p in anna],
                                      [p.values["anna_errors"] == 0 for p in anna],
                                      detail=f"errors {[p.values['anna_errors'] for p in anna]}"))
        near = [p for p in anna if "near_runs" in p.values]
        if near:
            results += _near_key_results(self, near, "hop_1")
        return results


# --- Theorem 5.6 ----------------------------------------------------------------------------------
class Theorem56(Claim):
    """k-hop in depth O(log k): the direct causal construction, exact for k = 1..64, its depth
    fitted against log2 k and flat in N; and Theorem 4.1 on the pointer-doubling protocol, its
    compiled depth fitted against log2 k on compiled models."""

    name = "Theorem 5.6"
    statement = "k-hop: depth O(log k) (direct: floor(log2 k) + 3 + [k not 2^j]); RNN/low-rank need depth k"

    def __init__(self, ks: Sequence[int] = tuple(range(1, 65)),
                 quick_ks: Sequence[int] = (1, 2, 3, 4, 5, 7, 8, 15, 16, 31, 32, 63, 64), n: int = 2**10,
                 quick_n: int = 2**8, flat_exponents: tuple[int, ...] = (6, 8, 10, 12, 14),
                 quick_flat_exponents: tuple[int, ...] = (6, 8, 10), flat_k: int = 16,
                 anna_cases: tuple[tuple[int, int], ...] = ((2**10, 16), (2**12, 64)),
                 quick_anna_cases: tuple[tuple[int, int], ...] = ((2**9, 16),),
                 compiled_n: int = 64, compiled_ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64),
                 quick_compiled_ks: tuple[int, ...] = (1, 2, 4, 8, 16),
                 compiled_runs: tuple[tuple[int, int], ...] = ((16, 3), (32, 5), (32, 64)),
                 quick_compiled_runs: tuple[tuple[int, int], ...] = ((16, 3),), near_seeds: int = 8,
                 quick_near_seeds: int = 3, seed: int = 0):
        self.ks, self.quick_ks, self.n, self.quick_n = tuple(ks), tuple(quick_ks), n, quick_n
        self.flat_exponents, self.quick_flat_exponents, self.flat_k = flat_exponents, quick_flat_exponents, flat_k
        self.anna_cases, self.quick_anna_cases = anna_cases, quick_anna_cases
        self.compiled_n, self.compiled_ks, self.quick_compiled_ks = compiled_n, compiled_ks, quick_compiled_ks
        self.compiled_runs, self.quick_compiled_runs = compiled_runs, quick_compiled_runs
        self.near_seeds, self.quick_near_seeds, self.seed = near_seeds, quick_near_seeds, seed

    def sweep(self, quick: bool = False, progress: Progress = None) -> list[SweepPoint]:
        points = []
        n = self.quick_n if quick else self.n
        for k in (self.quick_ks if quick else self.ks):
            _say(progress, f"Theorem 5.6: direct k-hop, k = {k}, N = {n}")
            model = khop_transformer(k)
            points.append(SweepPoint(n, {"part": "by_k", "k": k, "depth": model.report().depth,
                                         "width": model.report().width,
                                         "errors": _khop_errors(model, n, k, self.seed + k)}))
        for e in (self.quick_flat_exponents if quick else self.flat_exponents):
            _say(progress, f"Theorem 5.6: direct k-hop, k = {self.flat_k}, N = 2^{e}")
            model = khop_transformer(self.flat_k)
            points.append(SweepPoint(2 ** e, {"part": "by_n", "k": self.flat_k, "depth": model.report().depth,
                                              "errors": _khop_errors(model, 2 ** e, self.flat_k, self.seed + e)}))
        for size, k in (self.quick_anna_cases if quick else self.anna_cases):
            _say(progress, f"Theorem 5.6: direct k-hop with ANNA heads, k = {k}, N = {size}")
            model = khop_transformer(k, attention="anna", n=size, seed=self.seed)
            seeds = range(self.seed + 1, self.seed + 1 + (self.quick_near_seeds if quick else self.near_seeds))
            points.append(SweepPoint(size, {"part": "anna", "k": k,
                                            "errors": _khop_errors(model, size, k, self.seed + 1)}
                                     | _near_key_runs(model, size, k, [1000 * s + k for s in seeds])))
        for k in (self.quick_compiled_ks if quick else self.compiled_ks):
            _say(progress, f"Theorem 5.6: compiling pointer doubling, k = {k}, N = {self.compiled_n}")
            model = compiled_khop(k, self.compiled_n, seed=self.seed)
            points.append(SweepPoint(self.compiled_n, {"part": "compiled_depth", "k": k,
                                                       "depth": model.transformer.report().depth}))
        for size, k in (self.quick_compiled_runs if quick else self.compiled_runs):
            _say(progress, f"Theorem 5.6: pointer doubling compiled (Theorem 4.1), k = {k}, N = {size}")
            model = compiled_khop(k, size, seed=self.seed)
            inputs, targets = generate_khop(size, 4, k, seed=self.seed + k)
            points.append(SweepPoint(size, {"part": "compiled", "k": k, "depth": model.transformer.report().depth,
                                            "errors": int((model(inputs[1:]) != targets).sum())}))
        return points

    def figures(self, sweep: list[SweepPoint]) -> list[FigureSpec]:
        """Depth vs k over the swept k (``anna-mpc verify --plots``), with the depth-k reference line."""
        ks = [p.values["k"] for p in sweep if p.values["part"] == "by_k"]
        return [khop_depth_figure(ks, self.compiled_n)]

    def check(self, sweep: list[SweepPoint]) -> list[ClaimResult]:
        by_k = [p.values for p in sweep if p.values["part"] == "by_k"]
        by_n = [p for p in sweep if p.values["part"] == "by_n"]
        anna = [p for p in sweep if p.values["part"] == "anna"]
        depth_c = [p.values for p in sweep if p.values["part"] == "compiled_depth"]
        compiled = [p for p in sweep if p.values["part"] == "compiled"]
        ks = [v["k"] for v in by_k]
        depth = [v["depth"] for v in by_k]
        below = [k for k, d in zip(ks, depth) if d >= k]
        results = [
            self.exact("output = hop_k (EMA, direct)", ks, [v["errors"] == 0 for v in by_k], x_label="k",
                       detail=f"N = {sweep[0].n}, |Σ| = 4"),
            self.bound("depth <= floor(log2 k) + 4 (direct)", ks, depth,
                       [int(np.floor(np.log2(k))) + 4 for k in ks], x_label="k", y_label="depth",
                       detail=f"predecessor floor(log2 k) + 2 = {predecessor_depth(max(ks))} at k = {max(ks)}; "
                              f"depth >= k only at k = {below}"),
            self.slope_at_most("depth per log2 k (direct)", np.log2(ks), depth, 1.0, x_label="log2 k",
                               y_label="depth", logx=False,
                               detail="linear fit of depth on log2 k: O(log k) layers, slope <= 1 (doubling)"),
        ]
        results.append(self.slope_at_most(f"depth vs N (direct, k = {self.flat_k})", [p.n for p in by_n],
                                          [p.values["depth"] for p in by_n], 0.0, y_label="depth",
                                          detail=f"{sum(p.values['errors'] for p in by_n)} token errors"))
        results.append(self.exact(f"output over N (direct, k = {self.flat_k})", [p.n for p in by_n],
                                  [p.values["errors"] == 0 for p in by_n]))
        if anna:
            results.append(self.exact("output = hop_k (ANNA, direct)", [p.n for p in anna],
                                      [p.values["errors"] == 0 for p in anna],
                                      detail=", ".join(f"N = {p.n}, k = {p.values['k']}" for p in anna)))
            near = [p for p in anna if "near_runs" in p.values]
            if near:
                results += _near_key_results(self, near, "hop_k")
        if len(depth_c) >= 2:
            results.append(self.exponent(
                f"compiled depth per log2 k (N = {self.compiled_n})", np.log2([v["k"] for v in depth_c]),
                [v["depth"] for v in depth_c], 2.0, x_label="log2 k", y_label="compiled depth", logx=False,
                detail=f"built models' depths {[v['depth'] for v in depth_c]}: O(log k) doubling steps of 2 "
                       f"rounds (request, reply), one layer per round"))
        if compiled:
            results.append(self.exact("compiled pointer doubling output", [p.n for p in compiled],
                                      [p.values["errors"] == 0 for p in compiled],
                                      detail=", ".join(f"N = {p.n}, k = {p.values['k']}: {p.values['depth']} layers"
                                                       for p in compiled)))
        return results


# --- 3-SUM ----------------------------------------------------------------------------------------
class ThreeSumWidth(Claim):
    """3-SUM through Theorem 4.1: the block-triple protocol (s = 4 n^eps words, fan-out about
    4 n^(eps - 1/2), O(1) rounds) compiled with EMA heads. The compiled width is (fan-out + 1) heads
    of O(s) each, so its predicted exponent is eps + (eps - 1/2) = 1/2 + delta with
    delta = 2 eps - 1: delta/2 of memory above sqrt(n) and delta/2 of fan-out."""

    name = "3-SUM"
    statement = "3-SUM: O(1) layers, width m*H = O(N^(1/2 + delta)) via a constant-round MPC protocol"

    def __init__(self, eps: float = 0.6, exponents: tuple[int, ...] = tuple(range(8, 21, 2)),
                 quick_exponents: tuple[int, ...] = tuple(range(8, 15, 2)),
                 run_sizes: tuple[int, ...] = (16, 32), quick_run_sizes: tuple[int, ...] = (16,),
                 simulate_sizes: tuple[int, ...] = (256, 1024), quick_simulate_sizes: tuple[int, ...] = (256,)):
        self.eps, self.exponents, self.quick_exponents = eps, exponents, quick_exponents
        self.run_sizes, self.quick_run_sizes = run_sizes, quick_run_sizes
        self.simulate_sizes, self.quick_simulate_sizes = simulate_sizes, quick_simulate_sizes

    def sweep(self, quick: bool = False, progress: Progress = None) -> list[SweepPoint]:
        protocol, points = ThreeSum(), []
        for e in (self.quick_exponents if quick else self.exponents):
            n = 2 ** e
            _say(progress, f"3-SUM: compiling the protocol, n = 2^{e}")
            config = protocol.default_config(n, self.eps)
            built = compile_mpc(protocol, config).transformer.report()
            points.append(SweepPoint(n, {"part": "width", "width": built.width, "depth": built.depth,
                                         "heads": built.max_heads, "m": built.m, "s": config.s,
                                         "machines": config.machines}))
        for n in (self.quick_run_sizes if quick else self.run_sizes):
            for seed in (0, 1):  # an even seed leaves the input random, an odd one plants a triple
                _say(progress, f"3-SUM: running the compiled model, n = {n}, seed {seed}")
                config = protocol.default_config(n, self.eps)
                data = protocol.generate_input(config, seed=seed)
                model = compile_mpc(protocol, config, seed=seed)
                points.append(SweepPoint(n, {"part": "run", "seed": seed, "answer": int(model(data)[0]),
                                             "truth": three_sum_reference(data), "tokens": config.machines}))
        for n in (self.quick_simulate_sizes if quick else self.simulate_sizes):
            for seed in (0, 1):
                _say(progress, f"3-SUM: simulating the protocol, n = {n}, seed {seed}")
                config = protocol.default_config(n, self.eps)
                data = protocol.generate_input(config, seed=seed)
                run = Simulator(config).run(protocol, data, seed=seed)
                points.append(SweepPoint(n, {"part": "simulate", "answer": int(run.output[0]),
                                             "truth": three_sum_reference(data), "rounds": run.trace.num_rounds}))
        return points

    def check(self, sweep: list[SweepPoint]) -> list[ClaimResult]:
        width = [p for p in sweep if p.values["part"] == "width"]
        runs = [p for p in sweep if p.values["part"] in ("run", "simulate")]
        ns = [p.n for p in width]
        yes = sum(p.values["truth"] for p in runs)
        return [
            self.exponent("width m*H exponent", ns, [p.values["width"] for p in width],
                          predicted_width_exponent(self.eps), y_label="width m*H",
                          detail=f"1/2 + delta, delta = 2 eps - 1, eps = {self.eps}; s = {width[0].values['s']}.."
                                 f"{width[-1].values['s']} (built transformers)"),
            self.slope_at_most("depth vs n, O(1)", ns, [p.values["depth"] for p in width], 0.0, y_label="depth",
                               detail=f"depth {min(p.values['depth'] for p in width)}.."
                                      f"{max(p.values['depth'] for p in width)} (built transformers); tokens "
                                      f"{width[0].values['machines']}..{width[-1].values['machines']}"),
            self.exact("answer = 3-SUM (compiled, simulator)", [p.n for p in runs],
                       [p.values["answer"] == p.values["truth"] for p in runs],
                       detail=f"{yes} yes / {len(runs) - yes} no instances"),
        ]
