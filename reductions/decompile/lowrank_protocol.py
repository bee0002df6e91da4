"""Low-rank (kernel) attention as an MPC protocol with a per-machine step: the first half of
Theorem 4.4's route, low-rank transformer -> MPC -> ANNA (:func:`reductions.compile.compile_mpc`).

Token machines ``0 .. P - 1`` hold ``T`` consecutive tokens' rows each and form an in-place radix
tree of degree ``g`` (node ``c`` of level ``t`` on machine ``c g**t``; depth ``D = ceil(log_g P)``).
A lowrank head's attention is ``phi(q_i)^T S / phi(q_i)^T z`` with ``S = sum_j phi(k_j) v_j^T`` and
``z = sum_j phi(k_j)`` (``r (m_v + 1)`` words per head; sums over ``j <= i`` when causal), so a
layer is one sum up the tree and one answer down it, ``2 D`` rounds (``rho`` counts them):

* ``rho = 1``: token machines embed (layer 0) or finish the previous layer, then compute their
  block's ``(S, z)`` for every head; ``rho = 1 .. D``: a node of level ``rho - 1`` adds what its
  children sent and, unless it is its parent's first child, sends the sum to the parent;
* ``rho = D + k`` (``k = 1 .. D``): level ``D - k + 1`` nodes send every other child its base: the
  total (non-causal), or the sum over the blocks before the child (causal: their own base plus
  their earlier children's sums, which they kept); a node's first child is itself and keeps the
  node's base;
* the next layer's ``rho = 1`` (or the output round) turns every token's base, plus the earlier
  tokens of its own block when causal, into the head's output.

Rounds ``R = R_in + 2 D L + 1``: ``R_in`` input rounds (1, or ``ceil(f_in / fanout)`` when the
fan-out is capped: an input machine's ``s`` words go to ``f_in`` token machines, ``fanout`` per
round), the layers, one output round; with ``P = 1`` the single token machine computes every
layer locally. Memory: a token machine holds its rows
(``T d``), its running sum, what ``g - 1`` children send, and, when causal, the sums it kept for the
way down (``g`` per level). ``fanout`` caps the messages a machine sends per round (the compiled
model's routing heads); ``fanout_bound`` is exact.

Examples
--------
>>> from anna.transformer import init_transformer
>>> from reductions.decompile import run_model_protocol
>>> model = init_transformer(vocab_size=5, dim=4, n_outputs=2, depth=2, max_len=64, kind="lowrank", seed=1)
>>> protocol = LowRankProtocol(model)
>>> run = run_model_protocol(protocol, np.arange(64) % 5, eps=0.5)
>>> run.agrees, run.trace.num_rounds == protocol.plan(run.trace.config).rounds
(True, True)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anna.transformer import Transformer
from anna.transformer.forward import finish_layer, head_qkv
from mpc_sim import ConfigError, MPCConfig
from mpc_sim.protocols.toolkit import tree_depth

from .base import ModelProtocol, smallest_memory_config
from .errors import PlanError
from .tokens import ModelSpec, embed_rows, feature_map, readout_rows

__all__ = ["LowRankProtocol", "LowRankPlan", "lowrank_plan"]


@dataclass(frozen=True)
class LowRankPlan:
    """``T`` tokens per machine, ``P`` token machines, tree degree ``g`` and depth ``D``; with a
    ``fanout`` cap the input is scattered over ``input_rounds`` rounds, ``fanout`` messages each."""

    n: int
    s: int
    tokens_per_machine: int
    token_machines: int
    degree: int
    depth: int
    layers: int
    output_dim: int
    fanout_cap: int | None = None

    @property
    def input_machines(self) -> int:
        return -(-self.n // self.s)

    @property
    def input_rounds(self) -> int:
        """Rounds the input needs to reach the token machines: ``ceil(f_in / fanout)`` (1 uncapped)."""
        if self.fanout_cap is None:
            return 1
        return max(1, -(-self.input_fanout() // self.fanout_cap))

    @property
    def rounds(self) -> int:
        """``R_in + 2 D L + 1``: input rounds, the layers, the output round."""
        return self.input_rounds + 2 * self.depth * self.layers + 1

    @property
    def machines(self) -> int:
        """Token machines, at least the input and output machines."""
        return max(self.token_machines, self.input_machines, -(-self.n * self.output_dim // self.s))

    def block(self, machine: int) -> range:
        t = self.tokens_per_machine
        return range(machine * t, min(self.n, (machine + 1) * t))

    # the input's scatter ------------------------------------------------------------------------
    def destinations(self, source: int) -> np.ndarray:
        """Token machines input machine ``source`` sends to, in increasing order."""
        first, stop = source * self.s, min(self.n, (source + 1) * self.s)
        return np.arange(first // self.tokens_per_machine, (stop - 1) // self.tokens_per_machine + 1)

    def sources(self, machine: int) -> np.ndarray:
        """Input machines holding the tokens of token machine ``machine``, in increasing order."""
        block = self.block(machine)
        return np.arange(block.start // self.s, (block.stop - 1) // self.s + 1)

    def send_round(self, source: int, machine: int) -> int:
        """The round in which ``source`` sends ``machine`` its tokens."""
        if self.fanout_cap is None:
            return 1
        return int(machine - self.destinations(source)[0]) // self.fanout_cap + 1

    def piece(self, source: int, machine: int) -> range:
        """The tokens ``source`` sends ``machine``."""
        block = self.block(machine)
        return range(max(block.start, source * self.s), min(block.stop, (source + 1) * self.s))

    def input_fanout(self) -> int:
        """Most token machines one input machine's ``s`` words reach."""
        return max(len(self.destinations(i)) for i in range(self.input_machines))

    def output_fanout(self) -> int:
        width, t = self.output_dim, self.tokens_per_machine
        return int(max(((min(self.n, (b + 1) * t) * width - 1) // self.s) - (b * t * width) // self.s + 1
                       for b in range(self.token_machines)))

    def fanout(self) -> int:
        """Messages one machine sends in one round, at most (exact over the protocol's rounds)."""
        tree = min(self.degree, self.token_machines) - 1 if self.depth else 0
        scatter = self.input_fanout() if self.fanout_cap is None else min(self.fanout_cap, self.input_fanout())
        return max(1, tree, scatter, self.output_fanout())


def _sum_words(spec: ModelSpec) -> list[int]:
    return [sum(h.rank * (h.value_dim + 1) for h in layer.heads) for layer in spec.layers]


def lowrank_plan(spec: ModelSpec, n: int, s: int, fanout: int | None = None) -> LowRankPlan:
    """The largest ``T`` with ``T d <= s / 2`` (and its outputs and input fit), then the largest
    degree ``g <= fanout + 1`` whose memory need ``T d + W (g + 1 + [causal] D g)`` fits, ``W`` the
    largest per-layer ``sum_h r_h (m_v,h + 1)``. PlanError if none fits."""
    if fanout is not None and fanout < 2:
        raise PlanError(f"fanout must be at least 2 (a token machine's outputs may span two machines), got {fanout}")
    words = max(_sum_words(spec), default=0)
    causal = any(layer.causal for layer in spec.layers)
    t = min(n, s // max(1, 2 * spec.dim), s // max(1, spec.output_dim))
    if t < 1 or t * spec.dim + 2 * words > s:
        raise PlanError(f"a token's row ({spec.dim} words) and its heads' sums ({words}) do not fit in s = {s}")
    p = -(-n // t)
    if p == 1 or spec.depth == 0:
        return LowRankPlan(n, s, t, p, 2, 0, spec.depth, spec.output_dim, fanout)
    cap = p if fanout is None else int(fanout)
    for g in range(min(p, cap + 1), 1, -1):
        d = tree_depth(p, g)
        if t * spec.dim + words * (g + 1 + (d * g if causal else 0)) <= s:
            return LowRankPlan(n, s, t, p, g, d, spec.depth, spec.output_dim, fanout)
    raise PlanError(f"no tree degree g >= 2 fits {p} token machines of {t} tokens in s = {s} "
                    f"(sums of {words} words{', kept per level when causal' if causal else ''})")


class LowRankProtocol(ModelProtocol):
    """The protocol computing a low-rank attention transformer (see the module docstring).

    Parameters
    ----------
    model : Transformer
        lowrank heads (any feature map φ); embedding a TokenEmbedding or a TokenwiseEmbedding.
    fanout : int, optional
        Most messages a machine may send per round (caps the tree degree at ``fanout + 1``).
    """

    name = "lowrank-transformer"
    kinds = ("lowrank",)

    def __init__(self, model: Transformer, *, fanout: int | None = None, output_dim: int | None = None):
        super().__init__(model, output_dim)
        if fanout is not None and (isinstance(fanout, bool) or not isinstance(fanout, int) or fanout < 2):
            raise ValueError(f"fanout must be an int >= 2 or None, got {fanout!r}")
        self.fanout = fanout
        self._words = _sum_words(self.spec)

    # --- declared facts ----------------------------------------------------------------------
    def plan(self, config: MPCConfig) -> LowRankPlan:
        return lowrank_plan(self.spec, config.n, config.s, self.fanout)

    def check_config(self, config: MPCConfig) -> None:
        plan = self.plan(config)
        if config.machines < plan.machines:
            raise ConfigError(f"{self.name} needs {plan.machines} machines, the config has {config.machines}")

    def rounds_bound(self, config: MPCConfig) -> int:
        """``R_in + 2 D L + 1`` (exact)."""
        return self.plan(config).rounds

    def fanout_bound(self, config: MPCConfig) -> int:
        return self.plan(config).fanout()

    def default_config(self, n: int, eps: float) -> MPCConfig:
        spec, fanout = self.spec, self.fanout
        return smallest_memory_config(lambda n_, s_: lowrank_plan(spec, n_, s_, fanout), n, eps)

    def params(self) -> dict:
        return {**super().params(), "fanout": self.fanout}

    # --- the computation: one machine --------------------------------------------------------
    def step(self, ctx, machine, memory, inbox):
        plan = self.plan(ctx.config)
        r, first_layer_round = ctx.round, plan.input_rounds + 1
        if r < first_layer_round:
            return self._scatter(plan, r, machine, memory, inbox)
        if r == plan.rounds + 1:
            return inbox.words.copy(), []
        if machine >= plan.token_machines:
            return memory, []
        block = plan.block(machine)
        rows = len(block)
        if r == first_layer_round:
            values = self._input_words(plan, r, machine, memory, inbox)
        if r == plan.rounds:
            x = self._finish(plan, plan.layers - 1, machine, memory, inbox) if plan.depth and plan.layers else \
                self._all_layers(plan, machine, values)
            out = readout_rows(self.model, x, np.asarray(block), self.spec.output_dim).reshape(-1)
            return memory[:0], self._gather(plan, block.start, out)
        layer, rho = divmod(r - first_layer_round, 2 * plan.depth)
        rho += 1
        d = self.spec.dim
        if rho == 1:
            x = self._finish(plan, layer - 1, machine, memory, inbox) if layer else \
                embed_rows(self.model.embedding, values, np.asarray(block))
            acc = self._block_sums(layer, x, np.asarray(block))
            return self._up(plan, layer, 1, machine, x.astype(np.float64).reshape(-1), acc, np.zeros(0), [])
        x, rest = memory[:rows * d], memory[rows * d:]
        words = self._words[layer]
        causal = self.spec.layers[layer].causal
        if rho <= plan.depth:            # climbing: nodes of level rho - 1 hold [rows | sum | kept]
            if machine % plan.degree ** (rho - 1):
                return memory, []       # climbed as far as it goes: waits for the way down
            return self._up(plan, layer, rho, machine, x, rest[:words], rest[words:],
                            [payload for _, payload in inbox])
        level = 2 * plan.depth - rho + 1            # nodes of this level send their children's bases
        top = self._top_level(plan, machine)
        if level > top:
            return memory, []                       # its base has not come down yet
        if machine == 0 and level == plan.depth:    # the root: its last children's sums are in the inbox
            received = [payload for _, payload in inbox]
            acc, kept = rest[:words], rest[words:]
            if causal:
                kept = np.concatenate([kept, acc] + received)
            acc = acc + sum(received, np.zeros(words))
            base = np.zeros(words) if causal else acc
        elif level == top:                          # the base its parent just sent
            base, kept = inbox.words.copy(), rest
        else:                                       # its own base as the node one level up
            base, kept = rest[-words:], rest[:-words]
        return self._down(plan, layer, level, machine, x, kept, base)

    @staticmethod
    def _top_level(plan: LowRankPlan, machine: int) -> int:
        """The highest level at which ``machine`` is a node of the tree (``D`` for machine 0)."""
        if machine == 0:
            return plan.depth
        level = 0
        while machine % plan.degree ** (level + 1) == 0:
            level += 1
        return level

    # input / output ---------------------------------------------------------------------------------
    def _scatter(self, plan: LowRankPlan, r: int, machine: int, memory: np.ndarray, inbox) -> tuple:
        """Input round ``r``: an input machine sends the token machines due this round their
        tokens; memory is ``[input words still to send | token pieces received so far]``."""
        remaining = self._remaining(plan, machine, r)
        own, pieces = memory[:remaining], memory[remaining:]
        messages = []
        if machine < plan.input_machines:
            # the words still held are the last `remaining` of this machine's input
            first = min(plan.n, (machine + 1) * plan.s) - remaining
            for dst in plan.destinations(machine):
                if plan.send_round(machine, int(dst)) == r:
                    piece = plan.piece(machine, int(dst))
                    messages.append((int(dst), own[piece.start - first:piece.stop - first]))
            own = own[own.shape[0] - self._remaining(plan, machine, r + 1):]
        if machine < plan.token_machines:
            pieces = self._input_words(plan, r, machine, pieces, inbox, complete=False)
        return np.concatenate([own, pieces]), messages

    @staticmethod
    def _remaining(plan: LowRankPlan, machine: int, r: int) -> int:
        """Input words ``machine`` still holds when round ``r`` starts."""
        if machine >= plan.input_machines:
            return 0
        return sum(len(plan.piece(machine, int(b))) for b in plan.destinations(machine)
                   if plan.send_round(machine, int(b)) >= r)

    def _input_words(self, plan: LowRankPlan, r: int, machine: int, memory: np.ndarray, inbox,
                     complete: bool = True) -> np.ndarray:
        """A token machine's received token words in token order: the pieces in memory (sent
        before round ``r - 1``) and in the inbox (sent in round ``r - 1``), by source."""
        if complete:
            memory = memory[self._remaining(plan, machine, r):]
        arrived = {int(src): payload for src, payload in inbox}
        parts, at = [], 0
        for source in plan.sources(machine):
            sent = plan.send_round(int(source), machine)
            size = len(plan.piece(int(source), machine))
            if sent <= r - 2:
                parts.append(memory[at:at + size])
                at += size
            elif sent == r - 1:
                parts.append(arrived[int(source)])
        return np.concatenate(parts) if parts else memory[:0]

    def _gather(self, plan: LowRankPlan, first_token: int, words: np.ndarray) -> list:
        index = first_token * self.spec.output_dim + np.arange(words.shape[0])
        dst = index // plan.s
        return [(int(m), words[dst == m]) for m in np.unique(dst)]

    # one layer's sums -----------------------------------------------------------------------------------
    def _block_sums(self, layer: int, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """The block's ``(S_h, z_h)`` for every head, flattened (``S`` row-major, then ``z``)."""
        parts = []
        for head in self.model.layers[layer].heads:
            _, k, v = head_qkv(head, x, positions)
            features = np.asarray(feature_map(head)(k), dtype=np.float64)
            parts.extend([(features.T @ v.astype(np.float64)).reshape(-1), features.sum(axis=0)])
        return np.concatenate(parts) if parts else np.zeros(0)

    def _up(self, plan: LowRankPlan, layer: int, rho: int, machine: int, x: np.ndarray, acc: np.ndarray,
            kept: np.ndarray, received: list) -> tuple:
        """A level ``rho - 1`` node adds its children's sums (keeping them, in order, when causal)
        and sends the total to its parent unless it is the parent's first child."""
        if rho > 1:
            if self.spec.layers[layer].causal:
                kept = np.concatenate([kept, acc] + received)
            acc = acc + sum(received, np.zeros(acc.shape[0]))
        if machine % plan.degree ** rho:
            return np.concatenate([x, kept]), [(machine - machine % plan.degree ** rho, acc)]
        return np.concatenate([x, acc, kept]), []

    def _down(self, plan: LowRankPlan, layer: int, level: int, machine: int, x: np.ndarray, kept: np.ndarray,
              base: np.ndarray) -> tuple:
        """A level-``level`` node sends each other child its base; its first child (itself) keeps its own."""
        causal = self.spec.layers[layer].causal
        words = self._words[layer]
        span = plan.degree ** (level - 1)
        children = [machine + c * span for c in range(1, plan.degree) if machine + c * span < plan.token_machines]
        messages = []
        if causal:
            count = len(children) + 1
            sums = kept[-count * words:].reshape(count, words)    # this level's: first child, then the others
            kept = kept[:-count * words]
            running = base + sums[0]
            for c, child in enumerate(children, start=1):
                messages.append((child, running.copy()))
                running = running + sums[c]
        else:
            messages = [(child, base) for child in children]
        return np.concatenate([x, kept, base]), messages

    # finishing a layer -----------------------------------------------------------------------------------
    def _finish(self, plan: LowRankPlan, layer: int, machine: int, memory: np.ndarray, inbox) -> np.ndarray:
        """The rows after layer ``layer`` from its input rows and this block's base sums."""
        block = plan.block(machine)
        d, words = self.spec.dim, self._words[layer]
        x = memory[:len(block) * d].reshape(len(block), d).astype(self.spec.dtype)
        base = inbox.words if len(inbox) else memory[-words:]
        return self._apply(layer, x, np.asarray(block), base)

    def _apply(self, layer: int, x: np.ndarray, positions: np.ndarray, base: np.ndarray) -> np.ndarray:
        causal = self.spec.layers[layer].causal
        attended, at = [], 0
        for head, spec in zip(self.model.layers[layer].heads, self.spec.layers[layer].heads):
            r, mv = spec.rank, spec.value_dim
            s_base = base[at:at + r * mv].reshape(r, mv)
            z_base = base[at + r * mv:at + r * mv + r]
            at += r * (mv + 1)
            q, k, v = head_qkv(head, x, positions)
            phi = feature_map(head)
            fq, fk = np.asarray(phi(q), dtype=np.float64), np.asarray(phi(k), dtype=np.float64)
            numerator, denominator = fq @ s_base, fq @ z_base
            if causal:
                scores = np.tril(fq @ fk.T)
                numerator = numerator + scores @ v.astype(np.float64)
                denominator = denominator + scores.sum(axis=1)
            attended.append((numerator / denominator[:, None]).astype(v.dtype))
        return finish_layer(self.model, layer, x, attended, positions)

    def _all_layers(self, plan: LowRankPlan, machine: int, values: np.ndarray) -> np.ndarray:
        """Every layer locally, from the input words: ``D = 0`` (one token machine holds every
        token) or no layers."""
        positions = np.asarray(plan.block(machine))
        x = embed_rows(self.model.embedding, values, positions)
        for layer in range(plan.layers):
            causal = self.spec.layers[layer].causal
            base = np.zeros(self._words[layer]) if causal else self._block_sums(layer, x, positions)
            x = self._apply(layer, x, positions, base)
        return x
