"""Theorem 4.1 (ANNA simulates MPC) as a claim: compiled depth and width over a sweep of n."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mpc_sim import MPCConfig, Simulator
from mpc_sim.protocols import make_protocol

from ..compile import compile_mpc
from .base import Claim, ClaimResult, SweepPoint, fit_loglog, fmt

__all__ = ["Theorem41"]


class Theorem41(Claim):
    """An R-round protocol with N^eps memory compiles to an ANNA-transformer of depth R + O(1) and
    width m*H = O(N^(eps + delta)).

    The sweep compiles a library protocol (default: tree aggregation, fan-out 1) for each n, runs
    it with exact-match heads, checks the output against the simulator, and records the depth
    against the rounds R the simulator used (compiled with budget R) and the width m*H of the
    hashed layout (the default) and, at small n, of the deterministic disjunct layout. Predicted
    width slopes: at most eps + delta for the hashed layout (about eps: O(s) per head, alpha heads),
    about 3 eps for the disjunct layout (q**2 slots of 3s words, q ~ s).
    """

    name = "Theorem 4.1"
    statement = "ANNA simulates R-round MPC: depth R + O(1), width O(N^(eps+delta))"

    def __init__(self, protocol: str = "aggregate", eps: float = 0.5, delta: float = 0.1, params: dict | None = None,
                 exponents: tuple[int, ...] = (8, 10, 12, 14, 16), quick_exponents: tuple[int, ...] = (6, 8, 10, 12),
                 disjunct_exponents: tuple[int, ...] = (4, 6, 8, 10), slack: float = 0.05):
        self.protocol, self.eps, self.delta, self.params = protocol, eps, delta, dict(params or {"op": "sum"})
        self.exponents, self.quick_exponents, self.disjunct_exponents = exponents, quick_exponents, disjunct_exponents
        self.slack = slack

    def _point(self, n: int, layout: str, run: bool) -> dict:
        protocol = make_protocol(self.protocol, **self.params)
        config = protocol.default_config(n, self.eps)
        values: dict = {}
        if run:
            data = protocol.generate_input(config, seed=0)
            sim = Simulator(config, mode="machine").run(protocol, data)
            rounds = sim.trace.num_rounds
            model = compile_mpc(protocol, config, rounds=rounds, layout=layout)
            values["exact"] = bool(np.array_equal(np.asarray(model(data)).view(np.int64),
                                                  np.asarray(sim.output).view(np.int64)))
            values["rounds"] = rounds
        else:
            model = compile_mpc(protocol, config, layout=layout)
        report = model.report
        values.update(depth=report.depth, width=report.width, m=report.m, heads=report.heads_per_layer,
                      s=config.s, machines=config.machines)
        return values

    def sweep(self, quick: bool = False, progress: Callable[[str], None] | None = None) -> list[SweepPoint]:
        points = []
        for e in (self.quick_exponents if quick else self.exponents):
            if progress:
                progress(f"Theorem 4.1: hashed layout, n = 2^{e}")
            points.append(SweepPoint(2 ** e, {"layout": "hashed", **self._point(2 ** e, "hashed", run=True)}))
        for e in self.disjunct_exponents:
            if progress:
                progress(f"Theorem 4.1: disjunct layout, n = 2^{e}")
            points.append(SweepPoint(2 ** e, {"layout": "disjunct", **self._point(2 ** e, "disjunct", run=e <= 8)}))
        return points

    def check(self, sweep: list[SweepPoint]) -> list[ClaimResult]:
        hashed = [p for p in sweep if p.values["layout"] == "hashed"]
        disjunct = [p for p in sweep if p.values["layout"] == "disjunct"]
        results: list[ClaimResult] = []
        ran = [p for p in sweep if "exact" in p.values]
        exact = all(p.values["exact"] for p in ran)
        results.append(self.result("output = simulator (EMA)", "exact at every n", f"{sum(p.values['exact'] for p in ran)}"
                                   f"/{len(ran)} exact", exact, f"{self.protocol}, eps = {self.eps}"))
        constants = [p.values["depth"] - p.values["rounds"] for p in ran]
        results.append(self.result("depth - R", "0 (= R + 0)", str(max(constants)), max(constants) == 0,
                                   f"R = {sorted({p.values['rounds'] for p in ran})}"))
        predicted = self.eps + self.delta
        fit = fit_loglog([p.n for p in hashed], [p.values["width"] for p in hashed])
        results.append(self.result("width m*H slope (hashed)", f"<= eps + delta = {predicted:.2f}", fmt(fit.slope),
                                   fit.slope <= predicted + self.slack,
                                   f"n = 2^{int(np.log2(hashed[0].n))}..2^{int(np.log2(hashed[-1].n))}, "
                                   f"width {hashed[0].values['width']}..{hashed[-1].values['width']}, r2 {fit.r2:.3f}"))
        if len(disjunct) >= 2:
            fit_d = fit_loglog([p.n for p in disjunct], [p.values["width"] for p in disjunct])
            results.append(self.result("width m*H slope (disjunct)", f"~ 3 eps = {3 * self.eps:.2f} (predecessor's layout)",
                                       fmt(fit_d.slope), abs(fit_d.slope - 3 * self.eps) <= 0.35,
                                       f"width {disjunct[0].values['width']}..{disjunct[-1].values['width']}: "
                                       f"the hashed layout is the default"))
        return results
