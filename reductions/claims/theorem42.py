"""Theorem 4.2 (MPC simulates ANNA) as a claim, with the softmax baseline for contrast.

Sweep: for ``n = 2**e`` an ``L``-layer ANNA-transformer with one head of width
``m = ceil(n**eps)`` (so ``mH = O(n**eps)``), E2LSH with ``(z, ell)`` of Theorem 3.4 for ``(r, c)``
(``ell = Theta(n**(3 rho) log n)``, ``rho`` the family's), runs as the protocol of
:func:`reductions.decompile.compile_anna` with ``s = ceil(a n**eps')`` words per machine (``a``
fixed over the sweep) and exactly the machines its plan addresses. Checked: the output agrees with
the model's forward pass; rounds are flat in ``n`` (``O(L / delta)``); the memory used grows as
``n**eps'``; machines grow as ``n**(1 + eps - eps' + 3 rho)`` up to the ``log n`` of ``ell`` (the
theorem's ``3 / c**2`` is ``3 rho`` for an optimal family). The same models with softmax heads run
as the predecessor's protocol (simulated at the smaller ``n``): ``n + n**2`` machines, slope 2.
"""
from __future__ import annotations

import math
from collections.abc import Callable

from anna.lsh import E2LSH, theory_parameters
from anna.transformer import init_transformer
from ..plots import FigureSpec, Series, series_from
from .base import Claim, ClaimResult, SweepPoint, fit_loglog, fmt

__all__ = ["Theorem42"]


class Theorem42(Claim):
    """An L-layer ANNA-transformer with ``mH = O(N^eps)`` is an MPC protocol with ``O(L / delta)``
    rounds, ``O(N^eps')`` memory and ``O(N^(1 + eps - eps' + 3/c^2))`` machines."""

    name = "Theorem 4.2"
    statement = "MPC simulates ANNA: O(L/delta) rounds, N^eps' memory, N^(1+eps-eps'+3/c^2) machines"

    def __init__(self, eps: float = 0.25, eps_prime: float = 0.75, c: float = 16.0, layers: int = 2,
                 memory_factor: float = 64.0, exponents: tuple[int, ...] = (6, 7, 8, 9, 10, 11),
                 quick_exponents: tuple[int, ...] = (6, 7, 8, 9), baseline_exponents: tuple[int, ...] = (4, 5, 6, 7, 8),
                 quick_baseline_exponents: tuple[int, ...] = (4, 5, 6), slack: float = 0.15):
        if not (0.0 < eps < eps_prime < 1.0):
            raise ValueError(f"need 0 < eps < eps' < 1, got eps = {eps}, eps' = {eps_prime}")
        self.eps, self.eps_prime, self.c, self.layers = eps, eps_prime, c, layers
        self.memory_factor = memory_factor
        self.exponents, self.quick_exponents = exponents, quick_exponents
        self.baseline_exponents, self.quick_baseline_exponents = baseline_exponents, quick_baseline_exponents
        self.slack = slack

    def model(self, n: int, kind: str = "anna", seed: int = 0):
        """The sweep's model for ``n`` tokens (softmax heads for the baseline), with its LSH parameters."""
        m = math.ceil(n ** self.eps)
        theory = theory_parameters(max(2, n), 1.0, self.c, E2LSH())
        model = init_transformer(vocab_size=16, dim=m, n_outputs=2, depth=self.layers, max_len=n, kind=kind,
                                 lsh=theory.config(E2LSH()) if kind == "anna" else None, normalize=False,
                                 seed=seed)
        return model, theory

    def _anna_point(self, n: int) -> dict:
        from ..decompile import compile_anna, fitted_config, run_model_protocol

        model, theory = self.model(n, seed=n)
        protocol = compile_anna(model)
        config = fitted_config(protocol, n, self.eps_prime, self.memory_factor)
        plan = protocol.plan(config)
        run = run_model_protocol(protocol, protocol.generate_input(config, seed=n), config, seed=n)
        m = model.layers[0].heads[0].dim
        return {
            "kind": "anna", "agrees": run.agrees, "error": run.max_scaled_error, "tolerance": run.tolerance,
            "rounds": run.trace.num_rounds, "formula": plan.rounds,
            "rounds_per_layer": [layer.rounds for layer in plan.layers], "max_memory": run.trace.max_memory,
            "s": config.s, "machines": plan.machines, "limits_ok": not run.trace.check(),
            "ell": theory.ell, "z": theory.z, "rho": theory.rho, "m": m,
            "records_per_machine_words": n * theory.ell * m / config.s, "failure_bound": plan.failure_bound,
        }

    def _baseline_point(self, n: int, simulate: bool) -> dict:
        from ..decompile import SoftmaxProtocol, fitted_config, run_model_protocol

        model, _ = self.model(n, kind="softmax", seed=n)
        protocol = SoftmaxProtocol(model)
        config = fitted_config(protocol, n, self.eps_prime, self.memory_factor)
        plan = protocol.plan(config)
        values = {"kind": "softmax", "machines": plan.machines, "formula": plan.rounds, "simulated": simulate,
                  "degree": plan.degree, "depth": plan.depth}
        if simulate:
            run = run_model_protocol(protocol, protocol.generate_input(config, seed=n), config, seed=n)
            values.update(agrees=run.agrees, rounds=run.trace.num_rounds, limits_ok=not run.trace.check(),
                          active=max(r.active_machines for r in run.trace.rounds))
        return values

    def sweep(self, quick: bool = False, progress: Callable[[str], None] | None = None) -> list[SweepPoint]:
        points = []
        exponents = self.quick_exponents if quick else self.exponents
        simulated = set(self.quick_baseline_exponents if quick else self.baseline_exponents)
        for e in exponents:
            if progress:
                progress(f"Theorem 4.2: ANNA protocol, n = 2^{e}")
            points.append(SweepPoint(2 ** e, self._anna_point(2 ** e)))
        for e in sorted(set(exponents) | simulated):
            if progress:
                progress(f"Theorem 4.2: softmax baseline, n = 2^{e}")
            points.append(SweepPoint(2 ** e, self._baseline_point(2 ** e, e in simulated)))
        return points

    def check(self, sweep: list[SweepPoint]) -> list[ClaimResult]:
        anna = [p for p in sweep if p.values["kind"] == "anna"]
        base = [p for p in sweep if p.values["kind"] == "softmax"]
        ns = f"n = 2^{int(math.log2(anna[0].n))}..2^{int(math.log2(anna[-1].n))}"
        results: list[ClaimResult] = []
        worst = max(p.values["error"] for p in anna)
        agree = all(p.values["agrees"] for p in anna)
        results.append(self.result("output = forward pass", f"error / (1 + |y|) <= {anna[0].values['tolerance']:g}",
                                   f"max {worst:.2g}", agree, f"{ns}, {self.layers} layers, E2LSH, c = {self.c:g}"))
        exact = all(p.values["rounds"] == p.values["formula"] for p in anna)
        limits = all(p.values["limits_ok"] for p in anna)
        results.append(self.result("rounds = 2 + sum 2(D_r + D), limits", "trace = formula, no limit exceeded",
                                   f"{sum(p.values['rounds'] == p.values['formula'] for p in anna)}/{len(anna)} exact",
                                   exact and limits, f"strict mode; failure bound <= "
                                                     f"{max(p.values['failure_bound'] for p in anna):.1g}"))
        rounds = [p.values["rounds"] for p in anna]
        fit = fit_loglog([p.n for p in anna], rounds)
        per_layer = sorted({r for p in anna for r in p.values["rounds_per_layer"]})
        delta = self.eps_prime - self.eps
        results.append(self.result("rounds vs n", f"flat: O(L/delta), delta = {delta:g}", f"slope {fmt(fit.slope)}",
                                   fit.slope <= 0.1, f"rounds {rounds[0]}..{rounds[-1]}, per layer {per_layer}"))
        fit_mem = fit_loglog([p.n for p in anna], [p.values["max_memory"] for p in anna])
        results.append(self.result("memory used vs n", f"~ n^eps' = n^{self.eps_prime:g}", f"slope {fmt(fit_mem.slope)}",
                                   abs(fit_mem.slope - self.eps_prime) <= self.slack,
                                   f"max memory {anna[0].values['max_memory']}..{anna[-1].values['max_memory']} words, "
                                   f"s = {anna[0].values['s']}..{anna[-1].values['s']}"))
        rho = anna[0].values["rho"]
        predicted = 1 + self.eps - self.eps_prime + 3 * rho
        log_part = math.log(math.log(anna[-1].n) / math.log(anna[0].n)) / math.log(anna[-1].n / anna[0].n)
        fit_m = fit_loglog([p.n for p in anna], [p.values["machines"] for p in anna])
        fit_rec = fit_loglog([p.n for p in anna], [p.values["records_per_machine_words"] for p in anna])
        results.append(self.result(
            "machines vs n", f"<= 1+eps-eps'+3rho = {predicted:.2f} (+{log_part:.2f} for ell's log n)",
            f"slope {fmt(fit_m.slope)}", fit_m.slope <= predicted + log_part + self.slack,
            f"machines {anna[0].values['machines']}..{anna[-1].values['machines']}; n*ell*m/s slope {fmt(fit_rec.slope)}; "
            f"ell {anna[0].values['ell']}..{anna[-1].values['ell']}, rho = {rho:.3f}"))
        simulated = [p for p in base if p.values["simulated"]]
        exact_b = all(p.values["machines"] == p.n + p.n ** 2 and p.values["active"] == p.values["machines"]
                      and p.values["rounds"] == p.values["formula"] and p.values["agrees"] and p.values["limits_ok"]
                      for p in simulated)
        fit_b = fit_loglog([p.n for p in base], [p.values["machines"] for p in base])
        results.append(self.result(
            "softmax baseline machines", "n + n^2 (slope 2), rounds 2 + L(2D+2)", f"slope {fmt(fit_b.slope)}",
            exact_b and abs(fit_b.slope - 2.0) <= 0.1,
            f"{len(simulated)} simulated exactly (output, machines, rounds); "
            f"n = {base[0].n}..{base[-1].n}"))
        largest = anna[-1]
        baseline_at = next((p for p in base if p.n == largest.n), None)
        if baseline_at is not None:
            fewer = largest.values["machines"] < baseline_at.values["machines"]
            results.append(self.result(
                "ANNA vs softmax machines", "ANNA near-linear, baseline quadratic",
                f"{largest.values['machines']} vs {baseline_at.values['machines']} at n = {largest.n}",
                fewer and fit_m.slope < fit_b.slope - 0.5, f"slopes {fmt(fit_m.slope)} vs {fmt(fit_b.slope)}"))
        return results

    def figures(self, sweep: list[SweepPoint]) -> list[FigureSpec]:
        anna = [p for p in sweep if p.values["kind"] == "anna"]
        base = [p for p in sweep if p.values["kind"] == "softmax"]
        machines = FigureSpec(
            "theorem42_machines", "Machines: ANNA protocol (Thm 4.2) vs softmax baseline", "tokens n", "machines",
            (series_from(anna, "ANNA protocol", "machines"), series_from(base, "softmax baseline, n + n^2", "machines")))
        rounds = FigureSpec(
            "theorem42_rounds", f"Rounds of {self.layers}-layer models", "tokens n", "rounds",
            (series_from(anna, "ANNA protocol", "rounds"),
             Series("softmax baseline", tuple(p.n for p in base), tuple(p.values["formula"] for p in base))),
            ylog=False)
        return [machines, rounds]
