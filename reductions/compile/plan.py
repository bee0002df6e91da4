"""Pass 2 of the compiler: the plan (heads per layer, layers per round, depth, stream layout)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from mpc_sim import MPCConfig, Protocol

from .layouts import LAYOUTS, Layout, make_layout
from .stream import StreamLayout

__all__ = ["CompilePlan", "make_plan", "ATTENTIONS"]

ATTENTIONS = ("ema", "anna", "softmax")


@dataclass(frozen=True)
class CompilePlan:
    """Every size the compiled model is built from.

    ``fanout`` messages per machine and round are carried by ``alpha`` routing heads per layer, so
    a round takes ``layers_per_round = ceil(fanout / alpha)`` layers (the fan-out preprocessing: a
    machine's messages are sent over consecutive layers, the receivers collecting them before they
    compute). ``depth = rounds * layers_per_round``: exactly ``rounds`` when ``alpha >= fanout``.
    The first local computation runs in the embedding, local computation ``r + 1`` in the MLP of
    the last layer of round ``r``; a global head per layer tells every token whether anybody sent,
    so a protocol that halts before the budget leaves the remaining layers idle.
    """

    protocol: str
    config: MPCConfig
    seed: int
    rounds: int
    fanout: int
    alpha: int
    layout: str
    attention: str
    layout_options: tuple = field(default=())

    def __post_init__(self) -> None:
        if self.rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {self.rounds}")
        if self.fanout < 1 or self.alpha < 1:
            raise ValueError(f"fanout and alpha must be >= 1, got {self.fanout} and {self.alpha}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; known: {', '.join(LAYOUTS)}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")

    @property
    def tokens(self) -> int:
        """Machines, plus the null token of softmax models (see :mod:`reductions.compile.layers`)."""
        return self.config.machines + (1 if self.attention == "softmax" else 0)

    @property
    def layers_per_round(self) -> int:
        return math.ceil(self.fanout / self.alpha)

    @property
    def depth(self) -> int:
        return self.rounds * self.layers_per_round

    def round_of_layer(self, layer: int) -> tuple[int, int]:
        """``(round, sub-layer)`` that 0-based ``layer`` carries."""
        return layer // self.layers_per_round + 1, layer % self.layers_per_round

    def make_layout(self) -> Layout:
        s = self.config.s
        return make_layout(self.layout, capacity=s, max_senders=min(s, self.config.machines),
                           machines=self.config.machines, **dict(self.layout_options))

    def stream(self, layout: Layout) -> StreamLayout:
        return StreamLayout(s=self.config.s, fanout=self.fanout, heads=self.alpha, head_width=layout.width)


def make_plan(protocol: Protocol, config: MPCConfig, *, seed: int, rounds: int | None, alpha: int | None,
              layout: str, attention: str, layout_options: dict | None = None) -> CompilePlan:
    """The plan for ``protocol`` under ``config``: round budget from ``rounds_bound`` and fan-out
    from ``fanout_bound`` unless given; ``alpha`` defaults to the fan-out (one layer per round)."""
    fanout = int(protocol.fanout_bound(config))
    return CompilePlan(
        protocol=protocol.name, config=config, seed=seed,
        rounds=int(protocol.rounds_bound(config) if rounds is None else rounds),
        fanout=fanout, alpha=int(fanout if alpha is None else min(alpha, fanout)),
        layout=layout, attention=attention, layout_options=tuple(sorted((layout_options or {}).items())),
    )
