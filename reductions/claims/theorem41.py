"""Theorem 4.1 (ANNA simulates MPC) as a claim, over multi-round library protocols.

For each protocol (sort, prefix-sum, khop, connectivity), each ``eps`` and each ``n`` of its sweep,
the protocol runs on the simulator (its trace gives the rounds ``R``) and is compiled twice with
:func:`reductions.compile.compile_mpc`: with ``alpha = fan-out`` routing heads (one layer per
round) and with ``alpha = ceil(fan-out / 2)`` (two layers per round). Measured on the built
transformers (:meth:`anna.transformer.Transformer.report`, not the compiler's report): the depth,
the heads per layer ``H`` and the head width ``m``. Checked:

* outputs: the compiled model, executed on the protocol's input at the sizes that run in
  reasonable time, equals the simulator's output word for word;
* depth: ``L = R x ceil(fan-out / alpha)`` exactly at every point (both compilations);
* width: the slope of ``log(m H)`` against ``log n`` is the theorem's ``eps + delta`` within 0.1,
  where ``eps`` is the slope of the largest memory the simulator's run used (``s = O(N^eps)``;
  the protocols' constants make it differ from the ``eps`` asked) and ``delta`` the slope of the
  fan-out the protocol needs (``alpha = O(N^delta)``).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mpc_sim import Simulator
from mpc_sim.protocols import make_protocol

from ..compile import compile_mpc
from .base import Claim, ClaimResult, SweepPoint, fit_loglog

__all__ = ["Theorem41", "ProtocolSweep", "DEFAULT_PROTOCOLS"]


@dataclass(frozen=True)
class ProtocolSweep:
    """A protocol with its parameters, the exponents of ``n`` it is compiled at (full and quick)
    and the largest exponent at which the compiled model is executed. The width is fitted over
    ``n >= 2**fit_from`` (default: every point): below it a protocol's constant floors (the hashed
    layout's smallest head, a minimum fan-out) hide the exponent; the points below stay in the
    depth and output checks."""

    protocol: str
    params: dict = field(default_factory=dict)
    exponents: tuple[int, ...] = ()
    quick_exponents: tuple[int, ...] = ()
    run_max: int = 8
    quick_run_max: int = 8
    fit_from: int = 0


DEFAULT_PROTOCOLS = (
    ProtocolSweep("sort", {}, (8, 9, 10, 11, 12, 13, 14, 15, 16), (8, 10, 12, 14), 14, 10),
    ProtocolSweep("prefix-sum", {}, (8, 9, 10, 11, 12, 13, 14, 15, 16), (8, 10, 12, 14), 14, 10),
    # khop at eps = 1/2 keeps its floors (fan-out 8, head width 1536 words) up to n = 2^8
    ProtocolSweep("khop", {"k": 4}, (6, 8, 10, 11, 12, 13, 14, 15, 16, 17), (6, 10, 11, 12, 13, 14), 12, 10,
                  fit_from=10),
    ProtocolSweep("connectivity", {}, (4, 5, 6, 7, 8, 9, 10, 11), (4, 6, 8, 10), 11, 8),
)


def _measure(protocol, config, rounds: int, alpha: int | None, seed: int):
    model = compile_mpc(protocol, config, rounds=rounds, alpha=alpha, seed=seed)
    built = model.transformer.report()
    return model, built


class Theorem41(Claim):
    """An R-round protocol with N^eps memory compiles to an ANNA-transformer of depth O(R) and
    width m*H = O(N^(eps + delta)), alpha = O(N^delta) the fan-out."""

    name = "Theorem 4.1"
    statement = "ANNA simulates R-round MPC: depth R x layers per round, width O(N^(eps+delta))"

    def __init__(self, protocols: tuple[ProtocolSweep, ...] = DEFAULT_PROTOCOLS,
                 eps_values: tuple[float, ...] = (0.5, 0.6),
                 seed: int = 0):
        self.protocols, self.eps_values, self.seed = tuple(protocols), tuple(eps_values), seed
        for eps in self.eps_values:
            if not 0.0 < eps < 1.0:
                raise ValueError(f"eps must be in (0, 1), got {eps}")

    def _point(self, spec: ProtocolSweep, eps: float, n: int, run: bool) -> dict:
        protocol = make_protocol(spec.protocol, **spec.params)
        config = protocol.default_config(n, eps)
        data = protocol.generate_input(config, seed=self.seed)
        sim = Simulator(config).run(protocol, data, seed=self.seed)
        rounds = sim.trace.num_rounds
        fanout = int(protocol.fanout_bound(config))
        model, built = _measure(protocol, config, rounds, None, self.seed)
        values = {"protocol": spec.protocol, "eps": eps, "rounds": rounds, "fanout": fanout, "s": config.s,
                  "memory": int(sim.trace.max_memory),
                  "depth": built.depth, "heads": built.max_heads, "m": built.m, "width": built.width}
        half = max(1, math.ceil(fanout / 2))
        if half < fanout:
            _, built_half = _measure(protocol, config, rounds, half, self.seed)
            values.update(alpha_half=half, depth_half=built_half.depth)
        if run:
            out = model(data)
            values["exact"] = bool(np.array_equal(np.asarray(out).view(np.int64),
                                                  np.asarray(sim.output).view(np.int64)))
        return values

    def sweep(self, quick: bool = False, progress: Callable[[str], None] | None = None) -> list[SweepPoint]:
        points = []
        for spec in self.protocols:
            for eps in self.eps_values:
                for e in (spec.quick_exponents if quick else spec.exponents):
                    if progress:
                        progress(f"Theorem 4.1: {spec.protocol}, eps = {eps:g}, n = 2^{e}")
                    run = e <= (spec.quick_run_max if quick else spec.run_max)
                    points.append(SweepPoint(2 ** e, self._point(spec, eps, 2 ** e, run)))
        return points

    def check(self, sweep: list[SweepPoint]) -> list[ClaimResult]:
        results: list[ClaimResult] = []
        groups = dict.fromkeys((p.values["protocol"], p.values["eps"]) for p in sweep)
        for protocol, eps in groups:
            pts = [p for p in sweep if p.values["protocol"] == protocol and p.values["eps"] == eps]
            tag = f"{protocol}, eps {eps:g}"
            ran = [p for p in pts if "exact" in p.values]
            if ran:
                results.append(self.exact(f"output = simulator ({tag})", [p.n for p in ran],
                                          [p.values["exact"] for p in ran], detail="compiled model executed"))
            ns, oks, detail = [], [], []
            for p in pts:
                v = p.values
                ok = v["depth"] == v["rounds"]
                if "depth_half" in v:
                    ok = ok and v["depth_half"] == v["rounds"] * math.ceil(v["fanout"] / v["alpha_half"])
                ns.append(p.n)
                oks.append(ok)
            rounds = [p.values["rounds"] for p in pts]
            halves = [p.values.get("depth_half") for p in pts if "depth_half" in p.values]
            results.append(self.exact(f"depth = R x layers/round ({tag})", ns, oks, y_label="depth ok",
                                      detail=f"R {min(rounds)}..{max(rounds)} (simulator); depth at alpha = "
                                             f"fan-out {[p.values['depth'] for p in pts]}, at alpha = fan-out/2 "
                                             f"{halves}"))
            spec = next(sp for sp in self.protocols if sp.protocol == protocol)
            fitted = [p for p in pts if p.n >= 2 ** spec.fit_from]
            below = sorted({p.n for p in pts} - {p.n for p in fitted})
            if len({p.n for p in fitted}) >= 2:
                pts, ns = fitted, [p.n for p in fitted]
                fanouts = [p.values["fanout"] for p in pts]
                memory = [p.values["memory"] for p in pts]
                delta = fit_loglog(ns, fanouts).slope
                eps_run = fit_loglog(ns, memory).slope
                results.append(self.exponent(
                    f"width m*H exponent ({tag})", ns, [p.values["width"] for p in pts], eps_run + delta,
                    y_label="width m*H",
                    detail=f"eps + delta with eps = {eps_run:.3f}, the slope of the memory the run used "
                           f"({memory[0]}..{memory[-1]} words; eps = {eps:g} asked), and delta = {delta:.3f}, the "
                           f"fan-out's slope ({fanouts[0]}..{fanouts[-1]}); "
                           f"m {pts[0].values['m']}..{pts[-1].values['m']}, H {pts[0].values['heads']}.."
                           f"{pts[-1].values['heads']} measured on the built transformers"
                           + (f"; not fitted below 2^{spec.fit_from} (n = {below})" if below else "")))
        return results
