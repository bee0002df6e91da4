"""Theorem 4.4 (ANNA simulates low-rank attention) as a claim: low-rank transformer -> MPC -> ANNA.

Sweep: for ``n = 2**e`` a fixed ``L``-layer low-rank transformer (``r m`` constant, so any
``eps > 0`` bounds it; the claim uses ``eps -> 0``, ``delta = eps'``) runs as
:class:`~reductions.decompile.lowrank_protocol.LowRankProtocol` with ``s = ceil(a n**eps')`` and at
most ``alpha = max(2, ceil(n**(delta / 4)))`` messages per machine and round, then
:func:`reductions.compile.compile_mpc` compiles that protocol (``alpha`` routing heads, one layer
per round) into an ANNA-transformer run with exact-match heads. Checked: the compiled model's
output is the simulator's bit for bit and the low-rank model's within tolerance; depth = rounds,
flat in ``n`` (``O(L)``); head width ``m ~ n**eps' = n**(eps + delta)``; heads ``H = alpha + 1 =
O(n**(delta / 4))``, so width ``m H ~ n**(eps' + delta / 4)``, the theorem's sizes.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from anna.transformer import init_transformer
from mpc_sim import Simulator

from ..plots import FigureSpec, series_from
from .base import Claim, ClaimResult, SweepPoint, fit_loglog, fmt

__all__ = ["Theorem44"]


class Theorem44(Claim):
    """A depth-L low-rank transformer with ``r m = O(N^eps)`` is simulated by an ANNA-transformer
    of depth ``O(L)`` with ``H = O(N^(delta/4))`` heads of width ``m = O(N^eps')``."""

    name = "Theorem 4.4"
    statement = "ANNA simulates low-rank attention: depth O(L), H = N^(delta/4) heads of width N^eps'"

    def __init__(self, eps_prime: float = 0.5, layers: int = 2, memory_factor: float = 8.0,
                 exponents: tuple[int, ...] = (6, 7, 8, 9, 10, 11), quick_exponents: tuple[int, ...] = (6, 7, 8, 9),
                 slack: float = 0.1):
        if not (0.0 < eps_prime < 1.0):
            raise ValueError(f"eps' must be in (0, 1), got {eps_prime}")
        self.eps_prime, self.layers, self.memory_factor = eps_prime, layers, memory_factor
        self.exponents, self.quick_exponents, self.slack = exponents, quick_exponents, slack

    @property
    def delta(self) -> float:
        return self.eps_prime          # eps -> 0: the model's r m is a constant

    def fanout(self, n: int) -> int:
        """``alpha = max(2, ceil(n**(delta / 4)))`` messages per machine and round."""
        return max(2, math.ceil(n ** (self.delta / 4) - 1e-9))

    def _point(self, n: int) -> dict:
        from ..compile import compile_mpc
        from ..decompile import LowRankProtocol, fitted_config

        model = init_transformer(vocab_size=16, dim=2, n_outputs=2, depth=self.layers, max_len=n, kind="lowrank",
                                 seed=n)
        protocol = LowRankProtocol(model, fanout=self.fanout(n))
        config = fitted_config(protocol, n, self.eps_prime, self.memory_factor)
        plan = protocol.plan(config)
        data = protocol.generate_input(config, seed=n)
        simulated = Simulator(config, mode="machine").run(protocol, data, seed=n)
        compiled = compile_mpc(protocol, config, seed=n)
        output = compiled(data)
        report = compiled.report
        expected = protocol.reference(protocol.validate_input(config, data))
        return {
            "exact": bool(np.array_equal(np.asarray(output).view(np.int64), np.asarray(simulated.output).view(np.int64))),
            "error": float(np.max(np.abs(output - expected) / (1.0 + np.abs(expected)))),
            "tolerance": protocol.tolerance, "rounds": simulated.trace.num_rounds, "depth": report.depth,
            "heads": report.heads_per_layer, "m": report.m, "width": report.width, "fanout": protocol.fanout,
            "s": config.s, "tree_depth": plan.depth, "machines": config.machines,
        }

    def sweep(self, quick: bool = False, progress: Callable[[str], None] | None = None) -> list[SweepPoint]:
        points = []
        for e in (self.quick_exponents if quick else self.exponents):
            if progress:
                progress(f"Theorem 4.4: low-rank -> MPC -> ANNA, n = 2^{e}")
            points.append(SweepPoint(2 ** e, self._point(2 ** e)))
        return points

    def check(self, sweep: list[SweepPoint]) -> list[ClaimResult]:
        ns = [p.n for p in sweep]
        span = f"n = 2^{int(math.log2(ns[0]))}..2^{int(math.log2(ns[-1]))}"
        results: list[ClaimResult] = []
        exact = all(p.values["exact"] for p in sweep)
        worst = max(p.values["error"] for p in sweep)
        tol = sweep[0].values["tolerance"]
        results.append(self.result("compiled ANNA output", f"= simulator exactly; low-rank model within {tol:g}",
                                   f"{sum(p.values['exact'] for p in sweep)}/{len(sweep)} exact, max error {worst:.2g}",
                                   exact and worst <= tol, f"{span}, {self.layers} layers, EMA heads"))
        depths = [p.values["depth"] for p in sweep]
        fit_d = fit_loglog(ns, depths)
        limit = math.ceil(4 * (1 - self.eps_prime) / self.delta)
        results.append(self.result("depth vs n", f"= rounds, flat: O(L); tree depth -> ceil(4(1-eps')/delta) = {limit}",
                                   f"slope {fmt(fit_d.slope)}",
                                   all(p.values["depth"] == p.values["rounds"] for p in sweep) and fit_d.slope <= self.slack,
                                   f"depth {min(depths)}..{max(depths)}, tree depth "
                                   f"{sorted({p.values['tree_depth'] for p in sweep})}"))
        fit_m = fit_loglog(ns, [p.values["m"] for p in sweep])
        results.append(self.result("head width m vs n", f"~ n^eps' = n^(eps+delta) = n^{self.eps_prime:g}",
                                   f"slope {fmt(fit_m.slope)}", abs(fit_m.slope - self.eps_prime) <= self.slack,
                                   f"m {sweep[0].values['m']}..{sweep[-1].values['m']}, s "
                                   f"{sweep[0].values['s']}..{sweep[-1].values['s']}"))
        fit_h = fit_loglog(ns, [p.values["heads"] for p in sweep])
        predicted_width = self.eps_prime + self.delta / 4
        fit_w = fit_loglog(ns, [p.values["width"] for p in sweep])
        results.append(self.result("width m*H vs n", f"<= eps' + delta/4 = {predicted_width:.3f}",
                                   f"slope {fmt(fit_w.slope)}", fit_w.slope <= predicted_width + self.slack,
                                   f"heads H = alpha + 1: {sweep[0].values['heads']}..{sweep[-1].values['heads']} "
                                   f"(slope {fmt(fit_h.slope)} vs delta/4 = {self.delta / 4:.3f}); width "
                                   f"{sweep[0].values['width']}..{sweep[-1].values['width']}"))
        return results

    def figures(self, sweep: list[SweepPoint]) -> list[FigureSpec]:
        return [
            FigureSpec("theorem44_width", "Low-rank -> MPC -> ANNA: compiled width (Thm 4.4)", "tokens n", "words",
                       (series_from(sweep, "width m*H", "width"), series_from(sweep, "head width m", "m"))),
            FigureSpec("theorem44_depth", "Low-rank -> MPC -> ANNA: compiled depth (Thm 4.4)", "tokens n", "layers",
                       (series_from(sweep, "depth (= MPC rounds)", "depth"),), ylog=False),
        ]
