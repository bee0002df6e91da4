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
from .base import Claim, ClaimResult, SweepPoint

__all__ = ["Theorem44"]


class Theorem44(Claim):
    """A depth-L low-rank transformer with ``r m = O(N^eps)`` is simulated by an ANNA-transformer
    of depth ``O(L)`` with ``H = O(N^(delta/4))`` heads of width ``m = O(N^eps')``."""

    name = "Theorem 4.4"
    statement = "ANNA simulates low-rank attention: depth O(L), H = N^(delta/4) heads of width N^eps'"

    def __init__(self, eps_prime: float = 0.5, layers: int = 2, memory_factor: float = 8.0,
                 exponents: tuple[int, ...] = (6, 7, 8, 9, 10, 11, 12, 13),
                 quick_exponents: tuple[int, ...] = (6, 7, 8, 9, 10)):
        if not (0.0 < eps_prime < 1.0):
            raise ValueError(f"eps' must be in (0, 1), got {eps_prime}")
        self.eps_prime, self.layers, self.memory_factor = eps_prime, layers, memory_factor
        self.exponents, self.quick_exponents = exponents, quick_exponents

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
        built = compiled.transformer.report()           # measured on the built transformer
        expected = protocol.reference(protocol.validate_input(config, data))
        return {
            "exact": bool(np.array_equal(np.asarray(output).view(np.int64),
                                         np.asarray(simulated.output).view(np.int64))),
            "error": float(np.max(np.abs(output - expected) / (1.0 + np.abs(expected)))),
            "tolerance": protocol.tolerance, "rounds": simulated.trace.num_rounds, "depth": built.depth,
            "heads": built.max_heads, "m": built.m, "width": built.width, "s": config.s, "tree_depth": plan.depth,
            "machines": config.machines, "memory": int(simulated.trace.max_memory),
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
        tol = sweep[0].values["tolerance"]
        worst = max(p.values["error"] for p in sweep)
        results = [
            self.exact("compiled output = simulator, low-rank", ns,
                       [p.values["exact"] and p.values["error"] <= tol for p in sweep],
                       detail=f"bit for bit with the simulator; max scaled error {worst:.2g} <= {tol:g} against the "
                              f"low-rank model; {self.layers} layers, EMA heads"),
            self.exact("depth = MPC rounds", ns, [p.values["depth"] == p.values["rounds"] for p in sweep],
                       detail=f"depth {[p.values['depth'] for p in sweep]} (built transformer), rounds "
                              f"{[p.values['rounds'] for p in sweep]} (simulator)"),
            self.slope_at_most("depth vs n, O(L)", ns, [p.values["depth"] for p in sweep], 0.0, y_label="depth",
                               detail=f"tree depth {sorted({p.values['tree_depth'] for p in sweep})}, at most "
                                      f"ceil(4(1-eps')/delta) = {math.ceil(4 * (1 - self.eps_prime) / self.delta)}"),
            self.exponent("head width m vs n^eps'", ns, [p.values["m"] for p in sweep], self.eps_prime,
                          y_label="head width m",
                          detail=f"m {sweep[0].values['m']}..{sweep[-1].values['m']} (built transformer), memory used "
                                 f"{sweep[0].values['memory']}..{sweep[-1].values['memory']} words"),
            self.exponent("heads H vs n^(delta/4)", ns, [p.values["heads"] for p in sweep], self.delta / 4,
                          y_label="heads per layer",
                          detail=f"H {sweep[0].values['heads']}..{sweep[-1].values['heads']} (built transformer)"),
            self.exponent("width m*H vs n^(eps'+delta/4)", ns, [p.values["width"] for p in sweep],
                          self.eps_prime + self.delta / 4, y_label="width m*H",
                          detail=f"width {sweep[0].values['width']}..{sweep[-1].values['width']}"),
        ]
        return results

    def figures(self, sweep: list[SweepPoint]) -> list[FigureSpec]:
        return [
            FigureSpec("theorem44_width", "Low-rank -> MPC -> ANNA: compiled width (Thm 4.4)", "tokens n", "words",
                       (series_from(sweep, "width m*H", "width"), series_from(sweep, "head width m", "m"))),
            FigureSpec("theorem44_depth", "Low-rank -> MPC -> ANNA: compiled depth (Thm 4.4)", "tokens n", "layers",
                       (series_from(sweep, "depth (= MPC rounds)", "depth"),), ylog=False),
        ]
