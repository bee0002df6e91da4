"""Section 5's constructions as claims: Match2 (Thm 5.2), induction heads (Thm 5.4), k-hop
(Thm 5.6) and 3-SUM, each with a sweep that runs the models and a check with the numbers.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from anna.tasks import generate_khop, match2_labels
from mpc_sim import Simulator
from mpc_sim.protocols.threesum import ThreeSum, rounds_limit, three_sum_reference

from ..compile import compile_mpc
from ..constructions._common import integer_lsh_parameters
from ..constructions.khop import compiled_khop, compiled_khop_depth, khop_transformer, predecessor_depth
from ..constructions.match2 import match2_transformer
from ..constructions.threesum import predicted_width_exponent
from ..plots import FigureSpec
from ..plots_tasks import khop_depth_figure
from .base import Claim, ClaimResult, SweepPoint, fit_loglog, fmt

__all__ = ["Theorem52", "Theorem54", "Theorem56", "ThreeSumWidth", "LinearFit", "fit_linear"]

Progress = Callable[[str], None] | None


@dataclass(frozen=True)
class LinearFit:
    """``y = slope * x + intercept`` by least squares, with the coefficient of determination."""

    slope: float
    intercept: float
    r2: float
    points: int


def fit_linear(xs: Sequence[float], ys: Sequence[float]) -> LinearFit:
    """Least-squares line through ``(x, y)`` (for depth against ``log2 k``).

    Examples
    --------
    >>> f = fit_linear([0, 1, 2, 3], [3, 4, 5, 6])
    >>> round(f.slope, 6), round(f.intercept, 6), round(f.r2, 6)
    (1.0, 3.0, 1.0)
    """
    x, y = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    if x.shape != y.shape or x.size < 2 or np.ptp(x) == 0:
        raise ValueError(f"need at least two distinct x values with one y each, got {x.size} and {y.size}")
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((residual ** 2).sum()) / total if total > 0 else 1.0
    return LinearFit(float(slope), float(intercept), r2, int(x.size))


def _say(progress: Progress, text: str) -> None:
    if progress:
        progress(text)


def _span(points: Sequence[SweepPoint], symbol: str = "N") -> str:
    return f"{symbol} = 2^{int(math.log2(points[0].n))}..2^{int(math.log2(points[-1].n))}"


# --- Theorem 5.2 ----------------------------------------------------------------------------------
class Theorem52(Claim):
    """Match2 with 1 layer, 1 head, m = 1: exact with exact-match attention at every N, and with
    ANNA (E2LSH at Theorem 3.4's z and ell for N tokens) on random inputs, M = N + 1."""

    name = "Theorem 5.2"
    statement = "Match2: 1 layer, 1 head, m = 1 (Q = -x mod M, K = x, V = 1, r = 0)"

    def __init__(self, exponents: tuple[int, ...] = (8, 10, 12, 14, 16), quick_exponents: tuple[int, ...] = (8, 10, 12),
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
            report = ema.report()
            points.append(SweepPoint(n, {
                "ema_errors": int((ema(x) != labels).sum()), "anna_errors": int((anna(x) != labels).sum()),
                "positive": float(labels.mean()), "z": theory.z, "ell": theory.ell, "eta_bound": theory.eta_bound,
                "depth": report.depth, "heads": report.max_heads, "m": report.m}))
        return points

    def check(self, sweep: list[SweepPoint]) -> list[ClaimResult]:
        values = [p.values for p in sweep]
        ema = sum(v["ema_errors"] for v in values)
        anna = [v["anna_errors"] for v in values]
        sizes = {(v["depth"], v["heads"], v["m"]) for v in values}
        eta = sum(v["eta_bound"] for v in values)
        return [
            self.result("output = labels (EMA)", "exact at every N", f"{ema} token errors", ema == 0,
                        f"{_span(sweep)}, M = N + 1, {min(v['positive'] for v in values):.2f}.."
                        f"{max(v['positive'] for v in values):.2f} positive"),
            self.result("output = labels (ANNA, theory z, ell)", "exact w.p. >= 1 - eta", f"errors {anna}",
                        sum(anna) == 0, f"E2LSH(w=1), r = 0.01, c = 100: z = {values[0]['z']}..{values[-1]['z']}, "
                                        f"ell = {values[0]['ell']}..{values[-1]['ell']}, sum of eta bounds {eta:.2g}"),
            self.result("depth, heads, m", "1, 1, 1", ", ".join(str(s) for s in sorted(sizes)), sizes == {(1, 1, 1)}),
        ]


# --- Theorem 5.4 ----------------------------------------------------------------------------------
def _khop_errors(model, n: int, k: int, seed: int) -> int:
    inputs, targets = generate_khop(n, 4, k, seed=seed)
    return int((model(inputs[1:]) != targets).sum())


class Theorem54(Claim):
    """Induction heads (1-hop) in constant depth: the direct construction (3 causal layers, at
    most 2 heads, m <= 3) on THEORY §6 data (|Σ| = 4, no immediate repeats) at every N."""

    name = "Theorem 5.4"
    statement = "induction heads (k = 1): constant depth (3 layers, width 6) at every N"

    def __init__(self, exponents: tuple[int, ...] = (6, 8, 10, 12, 14), quick_exponents: tuple[int, ...] = (6, 8, 10),
                 anna_max_exponent: int = 12, seed: int = 0):
        self.exponents, self.quick_exponents = exponents, quick_exponents
        self.anna_max_exponent, self.seed = anna_max_exponent, seed

    def sweep(self, quick: bool = False, progress: Progress = None) -> list[SweepPoint]:
        points = []
        for e in (self.quick_exponents if quick else self.exponents):
            n = 2 ** e
            _say(progress, f"Theorem 5.4: induction heads, N = 2^{e}")
            ema = khop_transformer(1)
            values = {"ema_errors": _khop_errors(ema, n, 1, self.seed + e), "depth": ema.report().depth,
                      "width": ema.report().width}
            if e <= self.anna_max_exponent:
                anna = khop_transformer(1, attention="anna", n=n, seed=self.seed)
                values["anna_errors"] = _khop_errors(anna, n, 1, self.seed + e)
            points.append(SweepPoint(n, values))
        return points

    def check(self, sweep: list[SweepPoint]) -> list[ClaimResult]:
        values = [p.values for p in sweep]
        depths = sorted({v["depth"] for v in values})
        widths = sorted({v["width"] for v in values})
        ema = sum(v["ema_errors"] for v in values)
        anna = [v["anna_errors"] for v in values if "anna_errors" in v]
        return [
            self.result("output = hop_1 (EMA)", "exact at every N", f"{ema} token errors", ema == 0,
                        f"{_span(sweep)}, |Σ| = 4, no repeats"),
            self.result("output = hop_1 (ANNA, theory z, ell)", "exact w.p. >= 1 - eta", f"errors {anna}",
                        sum(anna) == 0, f"N <= 2^{self.anna_max_exponent}"),
            self.result("depth over N", "constant", f"{depths}", len(depths) == 1,
                        f"width m*H {widths} (predecessor: softmax, 2 layers)"),
        ]


# --- Theorem 5.6 ----------------------------------------------------------------------------------
class Theorem56(Claim):
    """k-hop in depth O(log k): the direct causal construction, exact for k = 1..64, its depth
    fitted against log2 k and flat in N; and Theorem 4.1 on the pointer-doubling protocol."""

    name = "Theorem 5.6"
    statement = "k-hop: depth O(log k) (direct: floor(log2 k) + 3 + [k not 2^j]); RNN/low-rank need depth k"

    def __init__(self, ks: Sequence[int] = tuple(range(1, 65)),
                 quick_ks: Sequence[int] = (1, 2, 3, 4, 5, 7, 8, 15, 16, 31, 32, 63, 64), n: int = 2**10,
                 quick_n: int = 2**8, flat_exponents: tuple[int, ...] = (6, 8, 10, 12, 14),
                 quick_flat_exponents: tuple[int, ...] = (6, 8, 10), flat_k: int = 16,
                 anna_cases: tuple[tuple[int, int], ...] = ((2**10, 16), (2**12, 64)),
                 quick_anna_cases: tuple[tuple[int, int], ...] = ((2**9, 16),),
                 compiled_n: int = 64, compiled_runs: tuple[tuple[int, int], ...] = ((16, 3), (32, 5), (32, 64)),
                 quick_compiled_runs: tuple[tuple[int, int], ...] = ((16, 3),), seed: int = 0):
        self.ks, self.quick_ks, self.n, self.quick_n = tuple(ks), tuple(quick_ks), n, quick_n
        self.flat_exponents, self.quick_flat_exponents, self.flat_k = flat_exponents, quick_flat_exponents, flat_k
        self.anna_cases, self.quick_anna_cases = anna_cases, quick_anna_cases
        self.compiled_n, self.compiled_runs, self.quick_compiled_runs = compiled_n, compiled_runs, quick_compiled_runs
        self.seed = seed

    def sweep(self, quick: bool = False, progress: Progress = None) -> list[SweepPoint]:
        points = []
        n = self.quick_n if quick else self.n
        for k in (self.quick_ks if quick else self.ks):
            _say(progress, f"Theorem 5.6: direct k-hop, k = {k}, N = {n}")
            model = khop_transformer(k)
            points.append(SweepPoint(n, {"part": "by_k", "k": k, "depth": model.report().depth,
                                         "width": model.report().width,
                                         "errors": _khop_errors(model, n, k, self.seed + k),
                                         "compiled_depth": compiled_khop_depth(k, self.compiled_n)}))
        for e in (self.quick_flat_exponents if quick else self.flat_exponents):
            _say(progress, f"Theorem 5.6: direct k-hop, k = {self.flat_k}, N = 2^{e}")
            model = khop_transformer(self.flat_k)
            points.append(SweepPoint(2 ** e, {"part": "by_n", "k": self.flat_k, "depth": model.report().depth,
                                              "errors": _khop_errors(model, 2 ** e, self.flat_k, self.seed + e),
                                              "compiled_depth": compiled_khop_depth(self.flat_k, 2 ** e)}))
        for size, k in (self.quick_anna_cases if quick else self.anna_cases):
            _say(progress, f"Theorem 5.6: direct k-hop with ANNA heads, k = {k}, N = {size}")
            model = khop_transformer(k, attention="anna", n=size, seed=self.seed)
            points.append(SweepPoint(size, {"part": "anna", "k": k,
                                            "errors": _khop_errors(model, size, k, self.seed + 1)}))
        for size, k in (self.quick_compiled_runs if quick else self.compiled_runs):
            _say(progress, f"Theorem 5.6: pointer doubling compiled (Theorem 4.1), k = {k}, N = {size}")
            model = compiled_khop(k, size, seed=self.seed)
            inputs, targets = generate_khop(size, 4, k, seed=self.seed + k)
            points.append(SweepPoint(size, {"part": "compiled", "k": k, "depth": model.report.depth,
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
        compiled = [p for p in sweep if p.values["part"] == "compiled"]
        ks = np.array([v["k"] for v in by_k])
        depth = np.array([v["depth"] for v in by_k])
        fit = fit_linear(np.log2(ks), depth)
        bound_ok = bool((depth <= np.floor(np.log2(ks)) + 4).all())
        errors = sum(v["errors"] for v in by_k)
        below = [int(k) for k, d in zip(ks, depth) if d >= k]
        results = [
            self.result("output = hop_k (EMA, direct)", "exact for every k", f"{errors} token errors", errors == 0,
                        f"k = {ks.min()}..{ks.max()} ({ks.size} values), N = {sweep[0].n}, |Σ| = 4"),
            self.result("depth vs log2 k (direct)", "O(log k): <= floor(log2 k) + 4",
                        f"slope {fmt(fit.slope)}, intercept {fmt(fit.intercept)}", bound_ok and fit.slope <= 1.5,
                        f"r2 {fit.r2:.3f}; depth {depth.min()}..{depth.max()} vs k = {ks.max()} for RNN/low-rank; "
                        f"predecessor floor(log2 k) + 2 = {predecessor_depth(int(ks.max()))}; depth >= k only at k = {below}"),
        ]
        n_depths = sorted({p.values["depth"] for p in by_n})
        n_errors = sum(p.values["errors"] for p in by_n)
        results.append(self.result(f"depth over N (direct, k = {self.flat_k})", "flat in N", f"{n_depths}",
                                   len(n_depths) == 1 and n_errors == 0,
                                   f"{_span(by_n)}, {n_errors} token errors; compiled route's depth at these N: "
                                   f"{[p.values['compiled_depth'] for p in by_n]} (its block sort grows with N)"))
        if anna:
            anna_errors = [p.values["errors"] for p in anna]
            results.append(self.result("output = hop_k (ANNA, direct)", "exact w.p. >= 1 - eta",
                                       f"errors {anna_errors}", sum(anna_errors) == 0,
                                       ", ".join(f"N = {p.n}, k = {p.values['k']}" for p in anna)))
        c_fit = fit_linear(np.log2(ks[ks <= self.compiled_n]),
                           [v["compiled_depth"] for v in by_k if v["k"] <= self.compiled_n])
        c_errors = sum(p.values["errors"] for p in compiled)
        results.append(self.result("compiled pointer doubling (Thm 4.1)", "exact; depth 2 log2 k + O(log^2 N)",
                                   f"slope {fmt(c_fit.slope)}, intercept {fmt(c_fit.intercept)}; {c_errors} errors",
                                   c_errors == 0 and c_fit.slope <= 2.5,
                                   f"depth fit at N = {self.compiled_n}; ran "
                                   + ", ".join(f"N = {p.n}, k = {p.values['k']}: {p.values['depth']} layers"
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
                 run_sizes: tuple[int, ...] = (16, 32), quick_run_sizes: tuple[int, ...] = (16,),
                 simulate_sizes: tuple[int, ...] = (256, 1024), quick_simulate_sizes: tuple[int, ...] = (256,),
                 slack: float = 0.06):
        self.eps, self.exponents, self.slack = eps, exponents, slack
        self.run_sizes, self.quick_run_sizes = run_sizes, quick_run_sizes
        self.simulate_sizes, self.quick_simulate_sizes = simulate_sizes, quick_simulate_sizes

    def sweep(self, quick: bool = False, progress: Progress = None) -> list[SweepPoint]:
        protocol, points = ThreeSum(), []
        for e in self.exponents:
            n = 2 ** e
            _say(progress, f"3-SUM: compiling the protocol, n = 2^{e}")
            config = protocol.default_config(n, self.eps)
            report = compile_mpc(protocol, config).report
            points.append(SweepPoint(n, {"part": "width", "width": report.width, "depth": report.depth,
                                         "heads": report.heads_per_layer, "m": report.m, "s": config.s,
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
        predicted = predicted_width_exponent(self.eps)
        fit = fit_loglog([p.n for p in width], [p.values["width"] for p in width])
        depths = [p.values["depth"] for p in width]
        limit = rounds_limit(self.eps)
        wrong = [(p.n, p.values["part"]) for p in runs if p.values["answer"] != p.values["truth"]]
        yes = sum(p.values["truth"] for p in runs)
        return [
            self.result("width m*H slope", f"1/2 + delta = {predicted:.2f} (delta = 2 eps - 1, eps = {self.eps})", fmt(fit.slope),
                        abs(fit.slope - predicted) <= self.slack,
                        f"{_span(width, 'n')}, width {width[0].values['width']}..{width[-1].values['width']}, "
                        f"r2 {fit.r2:.3f}, s = {width[0].values['s']}..{width[-1].values['s']}"),
            self.result("depth (= rounds)", f"O(1): <= {limit} for every n", f"{min(depths)}..{max(depths)}",
                        max(depths) <= limit, f"{_span(width, 'n')}; tokens = machines "
                                              f"{width[0].values['machines']}..{width[-1].values['machines']}"),
            self.result("answer = 3-SUM", "exact (compiled model and simulator)",
                        f"{len(runs) - len(wrong)}/{len(runs)} exact", not wrong,
                        f"{yes} yes / {len(runs) - yes} no instances; compiled at n = "
                        f"{sorted({p.n for p in runs if p.values['part'] == 'run'})}"),
        ]
