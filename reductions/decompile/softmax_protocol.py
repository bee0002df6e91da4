"""Standard (softmax) attention as an MPC protocol: the predecessor's baseline, one machine per
query-key pair (Sanford, Hsu, Telgarsky 2024; docs/theory.md §4).

Machines: token machine ``i`` (``i < n``) holds token ``i``'s row; inner-product machine
``(i, j)`` is machine ``n + i n + j``. Row ``i`` of inner-product machines forms an in-place radix
tree of degree ``b`` (node ``g`` of level ``t`` on ``(i, g b**t)``), and so does column ``j``;
``D = ceil(log_b n)`` is their depth and ``b = floor(s / (4 mH))`` with
``mH = sum_h (max(m_h, m_v,h) + 2)``, the words a head needs in its largest payload (query, key
and value, or a softmax partial: maximum, normaliser, weighted sum).

A layer takes ``2 D + 2`` rounds (``rho`` counts them):

* ``rho = 1``: token machine ``i`` embeds (layer 0) or finishes the previous layer, computes
  ``q_i, k_i, v_i`` for every head and sends ``q_i`` to ``(i, 0)`` and ``(k_i, v_i)`` to ``(0, i)``;
* ``rho = 2 .. D + 1``: the row trees broadcast ``q_i`` and the column trees ``(k_j, v_j)``
  (every informed node tells ``b - 1`` more), so ``(i, j)`` ends up holding ``q_i, k_j, v_j``;
* ``rho = D + 2 .. 2 D + 1``: ``(i, j)`` computes the score ``beta <q_i, k_j>`` and its partial
  ``(score, 1, v_j)`` (masked when causal and ``j > i``), and the row tree adds partials up,
  numerically stably (``(M, Z, Y)`` merge to ``M = max``, ``Z = sum Z_c e^(M_c - M)``, ``Y`` alike);
* ``rho = 2 D + 2``: ``(i, 0)`` sends row ``i``'s partial to token machine ``i``, whose output is
  ``Y / Z`` (computed in the next round, with the rest of the layer).

Rounds ``R = 2 + L (2 D + 2)`` (input and output rounds as in :mod:`.anna_protocol`); machines
``n + n**2`` exactly. The predecessor states ``2 D + 3`` rounds per layer; here a round is
"compute, then send", so the inner-product machines' computation shares a round with their first
aggregation step and the token machines' finishing computation shares one with the next layer's
first send, which saves the extra round.

Memory: an inner-product machine holds ``q, k, v`` and a partial (``<= 4 mH <= s / b``) plus
``b - 1`` children's partials (``<= s / 4``); it sends at most ``(b - 1) 3 mH <= 3 s / 4``. Every
limit holds deterministically.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anna.transformer import Transformer
from anna.transformer.forward import finish_layer, head_qkv
from mpc_sim import ClusterState, ConfigError, Delivery, MessageBatch, MPCConfig
from mpc_sim.protocols.toolkit import tree_depth

from ._batch import RoundOutput, inbox_words, read_memories, received_rows
from .base import ModelProtocol, smallest_memory_config
from .errors import PlanError
from .tokens import embed_rows, readout_rows

__all__ = ["SoftmaxProtocol", "SoftmaxPlan"]

_MASKED = -1.0e300     # the maximum of a partial with no visible key: e^(_MASKED - M) == 0


@dataclass(frozen=True)
class SoftmaxPlan:
    """Sizes of the baseline: ``b``, ``D``, rounds and machines (functions of ``n``, ``s``)."""

    n: int
    s: int
    degree: int
    depth: int
    layers: int

    @property
    def rounds_per_layer(self) -> int:
        return 2 * self.depth + 2

    @property
    def rounds(self) -> int:
        """``2 + L (2 D + 2)``."""
        return 2 + self.layers * self.rounds_per_layer

    @property
    def machines(self) -> int:
        """``n + n**2``: token machines and one inner-product machine per (query, key) pair."""
        return self.n + self.n * self.n


def softmax_plan(n: int, s: int, *, layers: int, head_words: int, dim: int, output_dim: int) -> SoftmaxPlan:
    """``b = floor(s / (4 mH))`` with ``mH = head_words``; PlanError if ``b < 2`` (for ``n > 1``)
    or a token's row and partials, its tagged (q, k, v) (``<= 3 mH``), or its outputs do not fit."""
    degree = s // (4 * head_words)
    if n > 1 and degree < 2:
        raise PlanError(f"softmax baseline needs b = floor(s / (4 mH)) >= 2, got s = {s}, mH = {head_words}")
    if dim + head_words > s or 3 * head_words > s or output_dim > s:
        raise PlanError(f"a token's row ({dim}) and partials ({head_words}), its (q, k, v) (<= {3 * head_words}) or "
                        f"its outputs ({output_dim}) exceed s = {s}")
    return SoftmaxPlan(n, s, max(2, degree), tree_depth(n, max(2, degree)), layers)


def _level(index: np.ndarray, degree: int, depth: int) -> np.ndarray:
    """The highest level at which leaf ``index`` is a node of the in-place tree (``depth`` for 0)."""
    level = np.zeros(index.shape, dtype=np.int64)
    for t in range(1, depth + 1):
        level[index % degree ** t == 0] = t
    return level


class SoftmaxProtocol(ModelProtocol):
    """The predecessor's protocol for a transformer with softmax heads (see the module docstring)."""

    name = "softmax-transformer"
    kinds = ("softmax",)

    def __init__(self, model: Transformer, *, output_dim: int | None = None):
        super().__init__(model, output_dim)
        self.head_words = max((sum(max(h.dim, h.value_dim) + 2 for h in layer.heads)
                               for layer in self.spec.layers), default=2)
        self._qw = [sum(h.dim for h in layer.heads) for layer in self.spec.layers]
        self._kvw = [sum(h.dim + h.value_dim for h in layer.heads) for layer in self.spec.layers]
        self._pw = [sum(h.value_dim + 2 for h in layer.heads) for layer in self.spec.layers]

    # --- declared facts ----------------------------------------------------------------------
    def plan(self, config: MPCConfig) -> SoftmaxPlan:
        return softmax_plan(config.n, config.s, layers=self.spec.depth, head_words=self.head_words,
                            dim=self.spec.dim, output_dim=self.spec.output_dim)

    def check_config(self, config: MPCConfig) -> None:
        plan = self.plan(config)
        if config.machines < plan.machines:
            raise ConfigError(f"{self.name} needs n + n**2 = {plan.machines} machines, the config has {config.machines}")

    def rounds_bound(self, config: MPCConfig) -> int:
        """``2 + L (2 D + 2)`` (exact)."""
        return self.plan(config).rounds

    def default_config(self, n: int, eps: float) -> MPCConfig:
        layers, words, dim, out = self.spec.depth, self.head_words, self.spec.dim, self.spec.output_dim
        return smallest_memory_config(
            lambda n_, s_: softmax_plan(n_, s_, layers=layers, head_words=words, dim=dim, output_dim=out), n, eps)

    # --- the computation ---------------------------------------------------------------------
    def batch_step(self, ctx, state: ClusterState, delivery: Delivery) -> tuple[ClusterState, MessageBatch]:
        plan = self.plan(ctx.config)
        out = RoundOutput(state.machines)
        n, r = plan.n, ctx.round
        if r == 1:
            holders = np.flatnonzero(state.sizes() > 0)
            words, sizes = read_memories(state, holders)
            out.send_records(np.repeat(holders, sizes), np.arange(words.shape[0]), words[:, None])
        elif r == plan.rounds + 1:
            machines = -(-n * self.spec.output_dim // plan.s)
            receiver, _, _, rows = received_rows(delivery, 0, machines, 1)
            out.keep(np.arange(machines), np.bincount(receiver, minlength=machines), rows[:, 0])
        elif r == plan.rounds:
            x = self._token_input(plan, state, delivery, plan.layers - 1)
            words = readout_rows(self.model, x, np.arange(n), self.spec.output_dim).reshape(-1)
            index = np.arange(words.shape[0])
            out.send_records(index // self.spec.output_dim, index // plan.s, words[:, None])
        else:
            layer, rho = divmod(r - 2, plan.rounds_per_layer)
            self._layer_round(plan, layer, rho + 1, state, delivery, out)
        return out.build()

    def _ip(self, n: int, i, j):
        return n + np.asarray(i) * n + np.asarray(j)

    def _token_input(self, plan: SoftmaxPlan, state: ClusterState, delivery: Delivery, previous: int) -> np.ndarray:
        """Token machines: embedding (before layer 0) or the finished layer ``previous``."""
        n, positions = plan.n, np.arange(plan.n)
        if previous < 0:
            _, _, _, rows = received_rows(delivery, 0, n, 1)
            return embed_rows(self.model.embedding, rows[:, 0], positions)
        x = read_memories(state, np.arange(n))[0].reshape(n, self.spec.dim).astype(self.spec.dtype)
        partial = inbox_words(delivery, np.arange(n))[0].reshape(n, self._pw[previous])
        attended, at = [], 0
        for head in self.spec.layers[previous].heads:
            z, y = partial[:, at + 1], partial[:, at + 2:at + 2 + head.value_dim]
            attended.append((y / z[:, None]).astype(self.spec.dtype))
            at += head.value_dim + 2
        return finish_layer(self.model, previous, x, attended, positions)

    def _layer_round(self, plan: SoftmaxPlan, l: int, rho: int, state: ClusterState, delivery: Delivery,
                     out: RoundOutput) -> None:
        n, d = plan.n, plan.depth
        tokens = np.arange(n)
        if rho == 1:
            x = self._token_input(plan, state, delivery, l - 1)
            out.keep(tokens, np.full(n, self.spec.dim), x)
            q, kv = self._qkv(l, x)
            out.send(tokens, self._ip(n, tokens, 0), np.full(n, q.shape[1] + 1), np.column_stack([np.zeros(n), q]))
            out.send(tokens, self._ip(n, 0, tokens), np.full(n, kv.shape[1] + 1), np.column_stack([np.ones(n), kv]))
            return
        out.keep(tokens, state.sizes()[tokens], read_memories(state, tokens)[0])     # token machines wait
        if rho <= d + 1:
            self._broadcast(plan, l, rho - 1, state, delivery, out)
        else:
            self._aggregate(plan, l, rho - d - 1, state, delivery, out)

    def _qkv(self, l: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        positions = np.arange(x.shape[0])
        queries, keys_values = [], []
        for head in self.model.layers[l].heads:
            q, k, v = head_qkv(head, x, positions)
            queries.append(q.astype(np.float64))
            keys_values.extend([k.astype(np.float64), v.astype(np.float64)])
        return np.concatenate(queries, axis=1), np.concatenate(keys_values, axis=1)

    def _held(self, plan: SoftmaxPlan, l: int, step: int, state: ClusterState, delivery: Delivery):
        """Inner-product machines after broadcast step ``step - 1``'s delivery: their ``q`` and
        ``(k, v)`` rows (zeros where not yet informed) and the informed masks."""
        n, b, d = plan.n, plan.degree, plan.depth
        qw, kvw = self._qw[l], self._kvw[l]
        informed = d - _level(np.arange(n), b, d)             # step at which leaf j is informed
        has_q = np.repeat((informed < step - 1)[None, :], n, axis=0).reshape(-1)     # kept from before
        has_kv = np.repeat((informed < step - 1)[:, None], n, axis=1).reshape(-1)
        machines = self._ip(n, np.repeat(np.arange(n), n), np.tile(np.arange(n), n))
        words, sizes = read_memories(state, machines)
        start = np.r_[0, np.cumsum(sizes)[:-1]]
        q = np.zeros((n * n, qw))
        kv = np.zeros((n * n, kvw))
        q[has_q] = words[start[has_q, None] + np.arange(qw)]
        kv[has_kv] = words[start[has_kv, None] + has_q[has_kv, None] * qw + np.arange(kvw)]
        # what arrived in the last round: a tag word (0: a query, 1: a key and value), then the rows
        msgs = delivery.messages
        lo, hi = delivery.machine_offsets[n], delivery.machine_offsets[n + n * n]
        first_word = msgs.offsets[lo:hi]
        tags = msgs.words[first_word]
        dst = msgs.dst[lo:hi] - n
        for tag, width, target, held in ((0.0, qw, q, has_q), (1.0, kvw, kv, has_kv)):
            chosen = tags == tag
            target[dst[chosen]] = msgs.words[first_word[chosen, None] + 1 + np.arange(width)]
            held[dst[chosen]] = True
        return q, kv, has_q, has_kv

    def _broadcast(self, plan: SoftmaxPlan, l: int, step: int, state: ClusterState, delivery: Delivery,
                   out: RoundOutput) -> None:
        """Step ``step`` (1..D): level ``D - step + 1`` nodes of every row (column) tree send the
        query (key and value) to their other children; everyone keeps what it holds."""
        n, b, d = plan.n, plan.degree, plan.depth
        q, kv, has_q, has_kv = self._held(plan, l, step, state, delivery)
        machines = n + np.arange(n * n)
        sizes = has_q * q.shape[1] + has_kv * kv.shape[1]
        keep = np.zeros((n * n, q.shape[1] + kv.shape[1]))
        keep[:, :q.shape[1]] = q
        keep[:, q.shape[1]:] = kv
        mask = np.column_stack([np.repeat(has_q[:, None], q.shape[1], axis=1),
                                np.repeat(has_kv[:, None], kv.shape[1], axis=1)])
        out.keep(machines, sizes, keep[mask])
        level = d - step + 1
        parents = np.arange(0, n, b ** level)
        children = (parents[:, None] + np.arange(1, b)[None, :] * b ** (level - 1)).reshape(-1)
        owner = np.repeat(parents, b - 1)
        valid = children < n
        children, owner = children[valid], owner[valid]
        i = np.repeat(np.arange(n), children.shape[0])
        src = self._ip(n, i, np.tile(owner, n))
        dst = self._ip(n, i, np.tile(children, n))
        payload = q[src - n]
        out.send(src, dst, np.full(src.shape[0], q.shape[1] + 1), np.column_stack([np.zeros(src.shape[0]), payload]))
        j = np.repeat(np.arange(n), children.shape[0])
        src = self._ip(n, np.tile(owner, n), j)
        dst = self._ip(n, np.tile(children, n), j)
        payload = kv[src - n]
        out.send(src, dst, np.full(src.shape[0], kv.shape[1] + 1), np.column_stack([np.ones(src.shape[0]), payload]))

    def _aggregate(self, plan: SoftmaxPlan, l: int, step: int, state: ClusterState, delivery: Delivery,
                   out: RoundOutput) -> None:
        """Step ``step`` (1..D+1): at step 1 every inner-product machine computes its partial; at
        step ``t <= D`` level ``t - 1`` nodes other than their parent's first child send their
        (accumulated) partial to the parent; at step ``D + 1`` ``(i, 0)`` sends row ``i``'s to
        token machine ``i``."""
        n, b, d = plan.n, plan.degree, plan.depth
        heads = self.spec.layers[l].heads
        pw = self._pw[l]
        index = np.arange(n)
        if step == 1:
            q, kv, _, _ = self._held(plan, l, d + 1, state, delivery)
            acc = self._partials(l, q, kv, n)
            alive = np.ones(n * n, dtype=bool)
        else:
            alive = np.broadcast_to((index % b ** (step - 1) == 0)[None, :], (n, n)).reshape(-1)
            acc = np.zeros((n * n, pw))
            machines = n + np.flatnonzero(alive)
            acc[alive] = read_memories(state, machines)[0].reshape(-1, pw)
            receiver, _, _, rows = received_rows(delivery, n, n + n * n, pw)
            acc = self._merge(heads, acc, receiver - n, rows)
        j = np.tile(index, n)
        i = np.repeat(index, n)
        if step <= d:
            sends = alive & (j % b ** step != 0)
            keeps = alive & ~sends
            out.send(n + np.flatnonzero(sends), self._ip(n, i[sends], j[sends] - j[sends] % b ** step),
                     np.full(int(sends.sum()), pw), acc[sends])
            out.keep(n + np.flatnonzero(keeps), np.full(int(keeps.sum()), pw), acc[keeps])
        else:
            roots = j == 0
            out.send(n + np.flatnonzero(roots), i[roots], np.full(n, pw), acc[roots])

    def _partials(self, l: int, q: np.ndarray, kv: np.ndarray, n: int) -> np.ndarray:
        """Machine ``(i, j)``'s ``(score, 1, v_j)`` per head from the ``q_i`` and ``(k_j, v_j)`` it
        holds (rows of ``q`` and ``kv``), ``(_MASKED, 0, 0)`` for a hidden key."""
        layer = self.model.layers[l]
        hidden = np.zeros(n * n, dtype=bool)
        if layer.causal:
            hidden = (np.tile(np.arange(n), n) > np.repeat(np.arange(n), n))
        parts, qa, ka = [], 0, 0
        for head in layer.heads:
            qh = q[:, qa:qa + head.dim]
            kh, vh = kv[:, ka:ka + head.dim], kv[:, ka + head.dim:ka + head.dim + head.value_dim]
            qa += head.dim
            ka += head.dim + head.value_dim
            part = np.empty((n * n, head.value_dim + 2))
            part[:, 0] = np.where(hidden, _MASKED, head.temperature * np.einsum("pm,pm->p", qh, kh))
            part[:, 1] = np.where(hidden, 0.0, 1.0)
            part[:, 2:] = np.where(hidden[:, None], 0.0, vh)
            parts.append(part)
        return np.concatenate(parts, axis=1)

    @staticmethod
    def _merge(heads, acc: np.ndarray, receiver: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Every receiver's accumulated partial merged with the rows it received (per head)."""
        out = acc.copy()
        at = 0
        for head in heads:
            width = head.value_dim + 2
            top = out[:, at].copy()
            np.maximum.at(top, receiver, rows[:, at])
            scale_own = np.exp(out[:, at] - top)
            scale_in = np.exp(rows[:, at] - top[receiver])
            block = out[:, at + 1:at + width] * scale_own[:, None]
            np.add.at(block, receiver, rows[:, at + 1:at + width] * scale_in[:, None])
            out[:, at] = top
            out[:, at + 1:at + width] = block
            at += width
        return out
