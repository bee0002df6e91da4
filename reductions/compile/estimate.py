"""Memory and time of a compiled model, estimated from its plan alone, and the limit it must fit.

Nothing here builds or runs anything: the numbers come from the plan's sizes (tokens ``T``,
memory ``s``, routing heads ``alpha``, fan-out, depth, the layout's cells) under the worst traffic
the MPC limits allow: in every layer every machine sends ``s`` words in as many messages as the
layer's heads carry. They are therefore upper bounds on the model's own arrays; the tests check
that the measured peak (tracemalloc) stays below the estimate and within
:data:`ESTIMATE_FACTOR` of it on small cases, where traffic is close to the worst case.

- ``lean`` engine (:mod:`.execute`, the default): the state and one layer's items, cell entries
  and decode buffers; independent of the depth, plus ``record_bytes_per_round`` for every
  recorded local computation (``CompiledModel.run(record=True)``, used by ``align``).
- ``dense`` engine (``Transformer.run``): ``depth + 1`` residual streams of ``T x d`` float64 kept
  by the forward trace, plus a few working copies and the heads' value matrices.
- time: a per-layer constant plus a per-item cost (lean), or a per-stream-number cost (dense),
  with constants measured on this project's 2-core machine; an order of magnitude, not a promise.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

from .layouts import Layout
from .sparse import items_upper_bound, layout_cells

__all__ = ["ModelEstimate", "estimate_model", "default_memory_limit", "format_bytes", "ESTIMATE_FACTOR", "ENGINES"]

ENGINES = ("lean", "dense")
ESTIMATE_FACTOR = 64.0
"""Stated bound of the estimate's pessimism: on the test cases, ``measured <= estimate <=
ESTIMATE_FACTOR * measured`` (worst-case traffic against the traffic of a real run)."""

_BASE_BYTES = 1 << 20             # small Python objects of one run (lists, dicts, the plan)
_HEAD_BYTES = 4096                # one Head with its callables and closures
_LAYER_BYTES = 1024               # one Layer object and its MLP closure
_ENTRY_BYTES = 96                 # one (group, cell) entry: keys, orders, item ids, weights, decode outputs
_WORD_BYTES = 8 * 10              # one message word: batch, gathers, limbs, decoded words, inbox, sorting
_MESSAGE_BYTES = 8 * 24           # one message: src, dst, offsets, ranks, pairs, groups
_STATE_COPIES = 3                 # memory words: the state, the next state, the input copy
_LEAN_SECONDS_PER_LAYER = 1.5e-3
_LEAN_SECONDS_PER_ITEM = 2.0e-6
_LEAN_SECONDS_PER_MACHINE_STEP = 2.0e-5
_DENSE_SECONDS_PER_NUMBER = 6.0e-9
_DENSE_SECONDS_PER_TOKEN_LAYER = 2.0e-4


@dataclass(frozen=True)
class ModelEstimate:
    """Estimated peak memory (bytes) and time (seconds) of building and running a compiled model.

    ``lean_bytes`` / ``dense_bytes``: the run on each engine (``lean`` without recording);
    ``record_bytes_per_round``: what ``record=True`` adds per local computation; ``build_bytes``:
    the model object (heads, layers, id hash tables), included in both run figures.
    """

    build_bytes: int
    lean_bytes: int
    record_bytes_per_round: int
    dense_bytes: int
    lean_seconds: float
    dense_seconds: float
    items_per_layer: int
    stream_numbers: int

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")

    def bytes(self, engine: str = "lean", *, record_rounds: int = 0) -> int:
        """Peak bytes of a run on ``engine`` (``lean`` recording ``record_rounds`` local computations)."""
        if engine == "lean":
            return self.lean_bytes + record_rounds * self.record_bytes_per_round
        if engine == "dense":
            return self.dense_bytes
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")

    def seconds(self, engine: str = "lean") -> float:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        return self.lean_seconds if engine == "lean" else self.dense_seconds


def estimate_model(plan, layout: Layout, stream_dim: int, id_dim: int, lsh_ell: int = 1,
                   batch_step: bool = True) -> ModelEstimate:
    """The estimate of a plan whose routing heads use ``layout`` on a stream of ``stream_dim``
    numbers per token, ids embedded in ``id_dim`` numbers and hashed into ``lsh_ell`` tables;
    ``batch_step``: local computation runs as the protocol's batch step (else machine by machine)."""
    config = plan.config
    tokens, machines, s = plan.tokens, config.machines, config.s
    messages = machines * min(plan.alpha, s)
    words = machines * s
    items = items_upper_bound(layout, words, messages)
    n_cells, item_width = layout_cells(layout)
    per_item = layout.cells_per_packet
    entries = items * per_item * max(1, lsh_ell if plan.attention == "anna" else 1)
    heads = (plan.alpha + 1) * plan.layers_per_round
    build = _BASE_BYTES + heads * _HEAD_BYTES + plan.depth * _LAYER_BYTES
    if plan.attention == "anna":
        build += 2 * machines * (id_dim * 8 + lsh_ell * 8 * 8)
    layer = (entries * (_ENTRY_BYTES + 2 * 8 * item_width) + items * (8 * item_width + 8 + 8 * per_item)
             + messages * _MESSAGE_BYTES + words * _WORD_BYTES)
    state = _STATE_COPIES * (words * 8 + (machines + 1) * 8) + config.n * 8
    lean = build + state + layer
    record = words * 8 + (machines + 1) * 8
    width = layout.width
    stream = tokens * stream_dim * 8
    dense = build + (plan.depth + 1) * stream + 5 * stream + 3 * tokens * width * 8 + tokens * id_dim * 8 * 2
    machine_steps = 0 if batch_step else machines
    lean_seconds = plan.depth * (_LEAN_SECONDS_PER_LAYER + items * _LEAN_SECONDS_PER_ITEM
                                 + machine_steps * _LEAN_SECONDS_PER_MACHINE_STEP)
    dense_seconds = plan.depth * (tokens * stream_dim * (plan.alpha + 3) * _DENSE_SECONDS_PER_NUMBER
                                  + tokens * (plan.alpha + 1) * _DENSE_SECONDS_PER_TOKEN_LAYER)
    return ModelEstimate(build_bytes=int(build), lean_bytes=int(lean), record_bytes_per_round=int(record),
                         dense_bytes=int(dense), lean_seconds=float(lean_seconds), dense_seconds=float(dense_seconds),
                         items_per_layer=int(items), stream_numbers=int(tokens * stream_dim))


def default_memory_limit() -> int:
    """Half of this machine's physical memory (``/proc/meminfo``'s MemTotal, else ``os.sysconf``)."""
    total = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024
                    break
    except OSError:
        total = None
    if total is None:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 8 << 30
    return int(total // 2)


def format_bytes(value: float) -> str:
    """``1.5 GB`` style (powers of 1000)."""
    if not math.isfinite(value):
        return str(value)
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.2f} {unit}"
    return f"{int(value)} B"
