"""Pass 4 of the compiler: the compiled model, how to run it, and its resource report."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.table import Table

from anna.transformer import ForwardTrace, Transformer
from mpc_sim import ClusterState, Protocol, Simulator

from .layouts import LIMBS, Layout, limbs_to_words, words_to_limbs
from .plan import CompilePlan
from .stream import StreamLayout

__all__ = ["CompiledModel", "CompileReport", "CompiledRun", "LayerAlignment"]


@dataclass(frozen=True)
class CompileReport:
    """Resources of a compiled model against the protocol it came from.

    ``depth = rounds * layers_per_round`` with ``layers_per_round = ceil(fanout / alpha)``: the
    depth constant beyond the round budget is 0 when ``alpha >= fanout``. ``m`` is the widest head
    (a routing head's value vector, the packet layout's width), ``width = m * heads``.
    """

    protocol: str
    rounds: int
    depth: int
    layers_per_round: int
    heads_per_layer: int
    alpha: int
    fanout: int
    m: int
    width: int
    model_dim: int
    layout: str
    packet_words: int
    slots: int
    attention: str
    s: int
    machines: int
    tokens: int

    def __post_init__(self) -> None:
        if self.depth != self.rounds * self.layers_per_round:
            raise ValueError(f"depth {self.depth} != rounds {self.rounds} x layers per round {self.layers_per_round}")
        if self.width != self.m * self.heads_per_layer:
            raise ValueError(f"width {self.width} != m {self.m} x heads {self.heads_per_layer}")

    @property
    def depth_constant(self) -> int:
        """Layers beyond one per round."""
        return self.depth - self.rounds

    def table(self) -> Table:
        table = Table(title=f"compiled {self.protocol}: MPC rounds -> ANNA layers ({self.attention} heads, "
                            f"{self.layout} layout)")
        table.add_column("quantity")
        table.add_column("value", justify="right")
        rows = [("rounds R (budget)", self.rounds), ("depth L", self.depth), ("L - R", self.depth_constant),
                ("layers per round", self.layers_per_round), ("fan-out bound", self.fanout),
                ("routing heads alpha", self.alpha), ("heads per layer H", self.heads_per_layer),
                ("head width m", self.m), ("width m*H", self.width), ("stream dim d", self.model_dim),
                ("packet words", self.packet_words), ("slots per head", self.slots), ("s", self.s),
                ("machines", self.machines), ("tokens", self.tokens)]
        for name, value in rows:
            table.add_row(name, str(value))
        return table

    def to_dict(self) -> dict:
        from dataclasses import asdict
        return asdict(self)


@dataclass(frozen=True, eq=False)
class LayerAlignment:
    """Layer-by-layer comparison of the compiled model with the simulator on one input.

    ``rows[l]`` is ``(layer, round, machines whose memory matches, first diverging machine or None)``
    for the embedding (layer 0, after the first local computation) and the last layer of each round.
    """

    rows: tuple[tuple[int, int, int, int | None], ...]
    machines: int

    @property
    def all_match(self) -> bool:
        return all(first is None for _, _, _, first in self.rows)

    def table(self) -> Table:
        table = Table(title="simulator rounds vs compiled layers (memory of every machine after its local computation)")
        for col in ("layer", "after step", "machines matching", "first divergence"):
            table.add_column(col, justify="right")
        for layer, round_, matching, first in self.rows:
            table.add_row(str(layer), str(round_), f"{matching}/{self.machines}",
                          "-" if first is None else f"[red]machine {first}[/]")
        return table


@dataclass(frozen=True, eq=False)
class CompiledRun:
    """One run of a compiled model: the protocol's output, memories after every layer, the forward trace."""

    output: np.ndarray
    memories: tuple[tuple[np.ndarray, ...], ...]
    forward: ForwardTrace


@dataclass(frozen=True, eq=False)
class CompiledModel:
    """An ANNA-transformer computing an MPC protocol (Theorem 4.1), with its plan and report."""

    protocol: Protocol
    plan: CompilePlan
    layout: Layout
    stream: StreamLayout
    transformer: Transformer

    @property
    def report(self) -> CompileReport:
        layout = self.layout
        slots = getattr(layout, "cells", None) or getattr(layout, "q", 1) ** 2
        packet = getattr(layout, "item", None) or getattr(layout, "packet", 0)
        heads = self.plan.alpha + 1
        return CompileReport(
            protocol=self.plan.protocol, rounds=self.plan.rounds, depth=self.plan.depth,
            layers_per_round=self.plan.layers_per_round, heads_per_layer=heads, alpha=self.plan.alpha,
            fanout=self.plan.fanout, m=layout.width, width=layout.width * heads, model_dim=self.stream.dim,
            layout=layout.name, packet_words=int(packet), slots=int(slots), attention=self.plan.attention,
            s=self.plan.config.s, machines=self.plan.config.machines, tokens=self.plan.tokens)

    def tokens(self, data: object) -> np.ndarray:
        """The model's input: machine ``i``'s initial memory as token ``i`` (length, then limbs)."""
        config, protocol = self.plan.config, self.protocol
        words = protocol.validate_input(config, data)
        state = protocol.initial_state(config, words)
        tokens = np.zeros((self.plan.tokens, 1 + LIMBS * config.s), dtype=np.float64)
        for machine, memory in enumerate(state.to_list()):
            bits = np.ascontiguousarray(memory).view(np.int64)
            tokens[machine, 0] = bits.shape[0]
            tokens[machine, 1:1 + LIMBS * bits.shape[0]] = words_to_limbs(bits).ravel()
        return tokens

    def _memories(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        at = self.stream.memory_at
        out = []
        for row in x[:self.plan.config.machines]:
            length = int(row[at])
            bits = limbs_to_words(row[at + 1:at + 1 + LIMBS * length].reshape(length, LIMBS))
            out.append(bits if self.protocol.word_dtype == np.int64 else bits.view(np.float64))
        return tuple(out)

    def run(self, data: object) -> CompiledRun:
        """Run the transformer on ``data`` and read the protocol's output off the last layer."""
        forward = self.transformer.run(self.tokens(data))
        memories = tuple(self._memories(x) for x in forward.states)
        final = ClusterState.from_list(list(memories[-1]), self.protocol.word_dtype)
        return CompiledRun(self.protocol.output(self.plan.config, final), memories, forward)

    def __call__(self, data: object) -> np.ndarray:
        return self.run(data).output

    def stream_names(self) -> list[str]:
        """What each residual-stream dimension holds (:func:`reductions.views.stream_names`)."""
        from ..views import stream_names
        return stream_names(self)

    def show(self, console=None, max_rows: int | None = None) -> None:
        """Print the report and every layer with its named maps and the stream columns it writes."""
        from ..views import show
        show(self, console, max_rows=max_rows)

    def _repr_html_(self) -> str:
        from ..views import model_html
        return model_html(self)

    def align(self, data: object, run: CompiledRun | None = None) -> LayerAlignment:
        """Run the simulator (per-machine style) and the model on ``data`` and compare every
        machine's memory after each local computation with the token's after the matching layer."""
        sim = Simulator(self.plan.config, mode="machine").run(self.protocol, data, seed=self.plan.seed,
                                                             record_states=True)
        run = run if run is not None else self.run(data)
        rows = []
        per_round = self.plan.layers_per_round
        for step in range(1, self.plan.rounds + 2):
            layer = (step - 1) * per_round
            if layer >= len(run.memories):
                break
            expected = sim.states[min(step, len(sim.states)) - 1].to_list()
            got = run.memories[layer]
            same = [np.array_equal(np.asarray(a).view(np.int64), np.asarray(b).view(np.int64))
                    for a, b in zip(expected, got)]
            first = next((i for i, ok in enumerate(same) if not ok), None)
            rows.append((layer, step, int(sum(same)), first))
        return LayerAlignment(tuple(rows), self.plan.config.machines)
