"""Pass 4 of the compiler: the compiled model, how to run it, and its resource report."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.table import Table

from anna.transformer import ForwardTrace, Transformer
from mpc_sim import ClusterState, Protocol, Simulator

from .errors import ModelTooLarge
from .estimate import ENGINES, ModelEstimate, default_memory_limit, format_bytes
from .execute import IdCollisions, RunStats, run_lean
from .layers import IdLSH
from .layouts import LIMBS, Layout, limbs_to_words, words_to_limbs
from .plan import CompilePlan
from .stream import StreamLayout

__all__ = ["CompiledModel", "CompileReport", "CompiledRun", "LayerAlignment"]


@dataclass(frozen=True)
class CompileReport:
    """Resources of a compiled model against the protocol it came from.

    ``depth = rounds * layers_per_round`` with ``layers_per_round = ceil(fanout / alpha)``: the
    depth constant beyond the round budget is 0 when ``alpha >= fanout``. Widths are read off the
    built heads, not declared: ``m`` is the widest value vector of any head (a routing head's, the
    packet layout's width), ``key_dim`` the query/key width, ``width = m * heads`` (the theory's
    ``m H``) and ``width_sum`` the sum of every head's value width (routing heads plus the 1-wide
    global head).

    ``estimated_*``: memory (bytes) and time (seconds) of a run, from the plan alone
    (:mod:`.estimate`): on ``engine`` (the default engine of ``CompiledModel.run``), on the dense
    engine, and what recording memories adds per round. ``lsh*``: the hash tables of ``anna``
    heads (family, z, ell), how they were chosen, the stated probability of a far collision and
    the pairs of distinct ids that do collide in them (counted at compile time; 0 means the heads
    route exactly as exact-match heads); empty for ``ema`` and ``softmax`` heads.
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
    key_dim: int = 1
    width_sum: int = 0
    engine: str = "lean"
    estimated_bytes: int = 0
    estimated_dense_bytes: int = 0
    estimated_record_bytes_per_round: int = 0
    estimated_seconds: float = 0.0
    estimated_dense_seconds: float = 0.0
    lsh: str = ""
    lsh_mode: str = ""
    lsh_far_bound: float = 0.0
    lsh_far_pairs: int = 0

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
                ("machines", self.machines), ("tokens", self.tokens), ("query/key width", self.key_dim),
                ("sum of head widths", self.width_sum),
                (f"estimated memory ({self.engine})", format_bytes(self.estimated_bytes)),
                ("estimated memory (dense)", format_bytes(self.estimated_dense_bytes)),
                (f"estimated time ({self.engine})", f"{self.estimated_seconds:.3g} s")]
        if self.lsh:
            rows += [("LSH tables", f"{self.lsh} ({self.lsh_mode})"),
                     ("far-collision bound", f"{self.lsh_far_bound:.3g}"), ("far pairs colliding", self.lsh_far_pairs)]
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
    """One run of a compiled model: the protocol's output, memories after every layer (``memories[l]``
    after layer ``l``, ``[0]`` after the embedding; empty unless recorded), the dense engine's forward
    trace (None on the lean engine) and the engine that ran."""

    output: np.ndarray
    memories: object
    forward: ForwardTrace | None
    engine: str = "dense"
    stats: RunStats | None = None
    """Lean runs: layers executed, messages and items routed, widest value used (:class:`RunStats`)."""


@dataclass(frozen=True, eq=False)
class CompiledModel:
    """An ANNA-transformer computing an MPC protocol (Theorem 4.1), with its plan and report.

    ``run`` executes it on the lean engine (:mod:`.execute`, vectorised over tokens, compact
    stream) by default, or on the dense one (``Transformer.run``, every layer's ``tokens x d``
    stream kept); both compute the same model and return the same output and memories.
    """

    protocol: Protocol
    plan: CompilePlan
    layout: Layout
    stream: StreamLayout
    transformer: Transformer
    estimate: ModelEstimate | None = None
    id_lsh: IdLSH | None = None
    collisions: IdCollisions | None = None
    max_memory: int | None = None

    @property
    def default_engine(self) -> str:
        return "dense" if self.plan.attention == "softmax" else "lean"

    @property
    def report(self) -> CompileReport:
        layout = self.layout
        heads = self.transformer.layers[0].heads if self.transformer.layers else ()
        value_widths = [h.value_dim for h in heads]
        m = max(value_widths, default=layout.width)
        key_dim = max((h.dim for h in heads), default=1)
        n_heads = self.plan.alpha + 1
        estimate, choice = self.estimate, self.id_lsh
        lsh = choice.lsh if choice is not None else None
        return CompileReport(
            protocol=self.plan.protocol, rounds=self.plan.rounds, depth=self.plan.depth,
            layers_per_round=self.plan.layers_per_round, heads_per_layer=n_heads, alpha=self.plan.alpha,
            fanout=self.plan.fanout, m=int(m), width=int(m) * n_heads, model_dim=self.stream.dim,
            layout=layout.name, packet_words=int(layout.packet_words), slots=int(layout.slots),
            attention=self.plan.attention,
            s=self.plan.config.s, machines=self.plan.config.machines, tokens=self.plan.tokens,
            key_dim=int(key_dim), width_sum=int(sum(value_widths)), engine=self.default_engine,
            estimated_bytes=estimate.bytes(self.default_engine) if estimate else 0,
            estimated_dense_bytes=estimate.dense_bytes if estimate else 0,
            estimated_record_bytes_per_round=estimate.record_bytes_per_round if estimate else 0,
            estimated_seconds=estimate.seconds(self.default_engine) if estimate else 0.0,
            estimated_dense_seconds=estimate.dense_seconds if estimate else 0.0,
            lsh=f"{lsh.family.name} z={lsh.z} ell={lsh.ell}" if lsh is not None else "",
            lsh_mode=choice.mode if choice is not None else "",
            lsh_far_bound=float(choice.far_bound) if choice is not None else 0.0,
            lsh_far_pairs=int(self.collisions.far) if self.collisions is not None and lsh is not None else 0)

    def check_memory(self, engine: str, *, record: bool = False, max_memory: int | None = None) -> int:
        """The estimated bytes of a run on ``engine``; ModelTooLarge above the limit
        (``max_memory``, else the model's, else half of physical memory)."""
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if engine == "lean" and self.plan.attention == "softmax":
            raise ValueError("the lean engine runs ema and anna heads; dense softmax heads need engine='dense'")
        if self.estimate is None:
            return 0
        need = self.estimate.bytes(engine, record_rounds=self.plan.rounds + 1 if record and engine == "lean" else 0)
        limit = max_memory if max_memory is not None else (self.max_memory or default_memory_limit())
        if need > limit:
            raise ModelTooLarge(f"running compiled {self.plan.protocol} on the {engine} engine"
                                f"{' with recorded memories' if record else ''}", need, limit,
                                "the lean engine needs far less" if engine == "dense" else "lower n or raise --max-memory")
        return need

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

    def run(self, data: object, *, engine: str | None = None, record: bool | None = None, local: str = "auto",
            max_memory: int | None = None) -> CompiledRun:
        """Run the model on ``data`` and read the protocol's output off the last layer.

        ``engine``: ``"lean"`` (default for ema/anna heads) or ``"dense"`` (the transformer's own
        forward pass; default for softmax heads). ``record``: keep the memories after every layer
        (default: always on the dense engine, off on the lean one). ``local``: the lean engine's
        local computation, ``"batch"`` (the protocol's batch step), ``"machine"`` (per-machine
        step) or ``"auto"`` (batch when the protocol has one). Refuses (ModelTooLarge) before
        starting when the estimate exceeds the memory limit.
        """
        engine = self.default_engine if engine is None else engine
        record = (engine == "dense") if record is None else bool(record)
        self.check_memory(engine, record=record, max_memory=max_memory)
        if engine == "lean":
            output, memories, stats = run_lean(self, data, record=record, local=local, collisions=self.collisions)
            return CompiledRun(output, memories if memories is not None else (), None, "lean", stats)
        forward = self.transformer.run(self.tokens(data))
        memories = tuple(self._memories(x) for x in forward.states) if record else ()
        final = ClusterState.from_list(list(memories[-1] if record else self._memories(forward.states[-1])),
                                       self.protocol.word_dtype)
        return CompiledRun(self.protocol.output(self.plan.config, final), memories if record else (), forward, "dense")

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
        if run is None or len(run.memories) == 0:
            run = self.run(data, record=True)
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
