"""An ANNA-transformer as an MPC protocol (Theorem 4.2): the batch protocol ``compile_anna`` builds.

Machines and the plan are described in :mod:`reductions.decompile.plan`. Rounds, with ``R`` the
total (``plan.rounds``), ``S_l = plan.layer_start(l)`` and ``D_r``, ``D`` the layer's relay and
tree depths (``rho = r - S_l + 1`` counts the rounds of layer ``l``):

* round 1: the input machines send every token's input word to its token machine;
* ``rho = 1``: token machines embed (layer 0) or finish the previous layer from the partial sums
  in their inbox (heads' outputs, residual, MLP), compute every head's ``(q, k, v)`` and send them
  down the relay tree; ``rho = 2 .. D_r``: record machines pass them on, each keeping its head's;
* ``rho = D_r + 1``: record machines hash their tokens in their tables and send one record
  ``(table, code, asked, key count, value sum)`` per distinct bucket to the tree's level 1;
  ``rho = D_r + t`` (``t = 2 .. D``): level ``t - 1`` shards add the records of equal buckets and
  pass them to level ``t``, keeping what they received;
* ``rho = D_r + D + k`` (``k = 1 .. D``): level ``D - k + 1`` shards answer every record that was
  asked for with the bucket's sum: the total (non-causal layers), or the sum over the tokens before
  the sender's subtree (causal layers: the parent's answer plus earlier siblings' records);
* ``rho = D_r + 2D + 1``: record machines add, per token, its buckets' sums over their tables (plus
  the earlier tokens of their own block when causal; the whole sum when ``D = 0``);
  ``rho = D_r + 2D + 1 .. 2(D_r + D)``: these partial sums climb the relay tree, added up;
* round ``R``: token machines finish the last layer, apply ψ and send the outputs, in token order,
  ``s`` words per machine to the first machines; then the final local computation.

A query's output is the sum over its head's tables of its buckets' value sums divided by the sum of
their key counts: Algorithm 1, as :func:`anna.attention.anna_attention` computes it (zero row for
an empty neighbourhood). ema heads use one table whose code is a fingerprint of the exact vector.

Batch style only (thousands of machines): the step works on arrays holding every machine's rows,
but each machine's new memory and messages come from its own memory and inbox alone (token-wise
maps act row by row; every grouping key starts with the machine id, see :mod:`._batch`), so it
is every machine's local computation run at once. :func:`~reductions.decompile.compile_anna` has
a runnable example.
"""
from __future__ import annotations

import numpy as np

from anna.transformer import Transformer
from anna.transformer.forward import finish_layer, head_qkv
from mpc_sim import ClusterState, ConfigError, Delivery, MessageBatch, MPCConfig, ProtocolError, hash64

from ._batch import (RoundOutput, group_keys, inbox_words, lookup, read_memories, received_rows,
                     segmented_exclusive_sum)
from .base import ModelProtocol, smallest_memory_config
from .plan import OVERSAMPLING, AnnaPlan, LayerPlan, TreePlan, heap_depths, make_anna_plan
from .tokens import embed_rows, join_codes, readout_rows, split_codes, table_codes

__all__ = ["AnnaProtocol"]


class AnnaProtocol(ModelProtocol):
    """The protocol computing ``model`` on ``n`` tokens (one input word each); output: ψ's rows,
    token after token, ``output_dim`` words each.

    Parameters
    ----------
    model : Transformer
        anna and ema heads; embedding a TokenEmbedding or a TokenwiseEmbedding.
    output_dim : int, optional
        ψ's width when the readout is a callable that cannot be probed.
    max_failure : float
        Bound on the probability that some shard machine receives more than it may (see the plan).
    tokens_per_machine : int, optional
        Fix ``T`` instead of letting the plan choose.
    oversampling : tuple of float
        The oversampling factors the plan may use (see :mod:`.plan`).
    """

    name = "anna-transformer"
    kinds = ("anna", "ema")

    def __init__(self, model: Transformer, *, output_dim: int | None = None, max_failure: float = 1e-9,
                 tokens_per_machine: int | None = None, oversampling: tuple[float, ...] = OVERSAMPLING):
        super().__init__(model, output_dim)
        self.max_failure = float(max_failure)
        self.tokens_per_machine = tokens_per_machine
        self.oversampling = tuple(oversampling)
        self._plans: dict[tuple[int, int], AnnaPlan] = {}

    # --- declared facts ----------------------------------------------------------------------
    def plan(self, config_or_n, s: int | None = None) -> AnnaPlan:
        """The plan for a config (or for ``n`` tokens and memory ``s``); cached."""
        n, s = (config_or_n.n, config_or_n.s) if isinstance(config_or_n, MPCConfig) else (int(config_or_n), int(s))
        if (n, s) not in self._plans:
            self._plans[(n, s)] = make_anna_plan(self.spec, n, s, max_failure=self.max_failure,
                                                 tokens_per_machine=self.tokens_per_machine,
                                                 oversampling=self.oversampling)
        return self._plans[(n, s)]

    def check_config(self, config: MPCConfig) -> None:
        plan = self.plan(config)
        if config.machines < plan.machines:
            raise ConfigError(f"{self.name}: the plan needs {plan.machines} machines, the config has "
                              f"{config.machines} (raise machines_factor)")

    def rounds_bound(self, config: MPCConfig) -> int:
        """``2 + sum_l 2 (D_r,l + D_l)`` (exact)."""
        return self.plan(config).rounds

    def default_config(self, n: int, eps: float) -> MPCConfig:
        """The smallest memory factor with a plan, and exactly the plan's machines."""
        return smallest_memory_config(self.plan, n, eps)

    def params(self) -> dict:
        return {**super().params(), "tables": [[h.tables for h in l.heads] for l in self.spec.layers],
                "max_failure": self.max_failure, "oversampling": list(self.oversampling)}

    # --- the computation ---------------------------------------------------------------------
    def batch_step(self, ctx, state: ClusterState, delivery: Delivery) -> tuple[ClusterState, MessageBatch]:
        plan = self.plan(ctx.config)
        out = RoundOutput(state.machines)
        r = ctx.round
        if r == 1:
            self._scatter_input(plan, state, out)
        elif r == plan.rounds + 1:
            self._keep_output(plan, delivery, out)
        elif r == plan.rounds:
            x = self._layer_input(plan, state, delivery, plan.layers[-1] if plan.layers else None)
            self._send_output(plan, x, out)
        else:
            layer = max(l for l in range(len(plan.layers)) if plan.layer_start(l) <= r)
            self._layer_round(ctx, plan, layer, r - plan.layer_start(layer) + 1, state, delivery, out)
        return out.build()

    # input / output ------------------------------------------------------------------------------
    def _scatter_input(self, plan: AnnaPlan, state: ClusterState, out: RoundOutput) -> None:
        """Input machines send every token's word to its token machine."""
        holders = np.flatnonzero(state.sizes() > 0)
        words, sizes = read_memories(state, holders)
        token = np.arange(words.shape[0])
        out.send_records(np.repeat(holders, sizes), token // plan.tokens_per_machine, words[:, None])

    def _positions(self, plan: AnnaPlan) -> np.ndarray:
        return np.arange(plan.n, dtype=np.int64)

    def _token_rows(self, plan: AnnaPlan, state: ClusterState) -> np.ndarray:
        words, _ = read_memories(state, np.arange(plan.token_machines))
        return words.reshape(plan.n, self.spec.dim).astype(self.spec.dtype)

    def _layer_input(self, plan: AnnaPlan, state: ClusterState, delivery: Delivery,
                     previous: LayerPlan | None) -> np.ndarray:
        """Token machines: the residual rows entering the next step (embedding or finished layer)."""
        positions = self._positions(plan)
        if previous is None:
            _, _, _, rows = received_rows(delivery, 0, plan.token_machines, 1)
            return embed_rows(self.model.embedding, rows[:, 0], positions)
        x = self._token_rows(plan, state)
        partial = np.zeros((plan.n, previous.partial_words))
        receiver, _, row, rows = received_rows(delivery, 0, plan.token_machines, previous.partial_words)
        np.add.at(partial, receiver * plan.tokens_per_machine + row, rows)
        attended, at = [], 0
        for head in self.spec.layers[previous.layer].heads:
            sums, count = partial[:, at:at + head.value_dim], partial[:, at + head.value_dim]
            at += head.value_dim + 1
            values = np.zeros_like(sums)
            hit = count > 0
            values[hit] = sums[hit] / count[hit, None]
            attended.append(values.astype(self.spec.dtype))
        return finish_layer(self.model, previous.layer, x, attended, positions)

    def _send_output(self, plan: AnnaPlan, x: np.ndarray, out: RoundOutput) -> None:
        rows = readout_rows(self.model, x, self._positions(plan), self.spec.output_dim)
        words = rows.reshape(-1)
        index = np.arange(words.shape[0])
        out.send_records((index // self.spec.output_dim) // plan.tokens_per_machine, index // plan.s, words[:, None])

    def _keep_output(self, plan: AnnaPlan, delivery: Delivery, out: RoundOutput) -> None:
        machines = -(-plan.n * self.spec.output_dim // plan.s)
        receiver, _, _, rows = received_rows(delivery, 0, machines, 1)
        out.keep(np.arange(machines), np.bincount(receiver, minlength=machines), rows[:, 0])

    # one round of a layer ------------------------------------------------------------------------
    def _layer_round(self, ctx, plan: AnnaPlan, l: int, rho: int, state: ClusterState, delivery: Delivery,
                     out: RoundOutput) -> None:
        layer = plan.layers[l]
        dr, d = layer.relay_depth, layer.tree_depth
        tm = np.arange(plan.token_machines)
        if rho == 1:
            x = self._layer_input(plan, state, delivery, plan.layers[l - 1] if l else None)
            out.keep(tm, self._block_sizes(plan) * self.spec.dim, x)
            self._relay_down(plan, layer, 0, None, self._qkv_words(l, x), out)
            return
        out.keep(tm, state.sizes()[tm], read_memories(state, tm)[0])       # token machines wait
        if rho <= dr:
            self._relay_down(plan, layer, rho - 1, delivery, None, out)
            self._keep_record_memories(plan, layer, state, delivery, rho, out)
        elif rho == dr + 1 and d > 0:
            self._records_up(ctx, plan, layer, state, delivery, out)
        elif dr + 1 < rho <= dr + d:
            self._shards_up(ctx, plan, layer, rho - dr - 1, state, delivery, out)
            self._keep_record_memories(plan, layer, state, delivery, rho, out)
            self._keep_shards(layer, state, levels=range(1, rho - dr - 1), out=out)
        elif dr + d < rho <= dr + 2 * d:
            level = d - (rho - dr - d) + 1
            self._shards_down(plan, layer, level, state, delivery, out)
            self._keep_record_memories(plan, layer, state, delivery, rho, out)
            self._keep_shards(layer, state, levels=range(1, level), out=out)
        else:
            self._relay_up(plan, layer, rho - dr - 2 * d, state, delivery, out)

    # helpers: layout ---------------------------------------------------------------------------------
    def _block_sizes(self, plan: AnnaPlan) -> np.ndarray:
        t = plan.tokens_per_machine
        return np.minimum(t, plan.n - t * np.arange(plan.token_machines))

    def _record_machine(self, plan: AnnaPlan, layer: LayerPlan, block, j):
        return plan.record_base + np.asarray(block) * layer.record_machines + j

    def _head_columns(self, l: int, h: int) -> slice:
        heads = self.spec.layers[l].heads
        start = sum(2 * g.dim + g.value_dim for g in heads[:h])
        return slice(start, start + 2 * heads[h].dim + heads[h].value_dim)

    def _qkv_words(self, l: int, x: np.ndarray) -> np.ndarray:
        """Every token's ``(q_h, k_h, v_h)`` for all heads of layer ``l``, one row per token."""
        positions = np.arange(x.shape[0], dtype=np.int64)
        parts = []
        for head in self.model.layers[l].heads:
            q, k, v = head_qkv(head, x, positions)
            parts.extend([q, k, v])
        return np.concatenate([p.astype(np.float64) for p in parts], axis=1)

    # relay tree ------------------------------------------------------------------------------------
    def _record_column(self, plan: AnnaPlan, layer: LayerPlan, j: int) -> np.ndarray:
        """Record machines ``(b, j)`` for every token block ``b``."""
        return self._record_machine(plan, layer, np.arange(plan.token_machines), j)

    def _relay_down(self, plan: AnnaPlan, layer: LayerPlan, depth: int, delivery: Delivery | None,
                    rows: np.ndarray | None, out: RoundOutput) -> None:
        """Relay nodes at ``depth`` send the block's (q, k, v) rows to their children: the token
        machines (depth 0) the ``rows`` they computed, record machines what they just received."""
        f, k = layer.relay_degree, layer.record_machines
        depths = heap_depths(k + 1, f)
        sizes = self._block_sizes(plan)
        for node in np.flatnonzero(depths == depth):
            children = range(node * f + 1, min(node * f + f, k) + 1)
            if not children:
                continue
            if node == 0:
                src, words = np.arange(plan.token_machines), rows
            else:
                src = self._record_column(plan, layer, node - 1)
                words, _ = inbox_words(delivery, src)
            for child in children:
                out.send(src, self._record_column(plan, layer, child - 1), sizes * layer.qkv_words, words)

    def _keep_record_memories(self, plan: AnnaPlan, layer: LayerPlan, state: ClusterState, delivery: Delivery,
                              rho: int, out: RoundOutput) -> None:
        """Record machines keep their head's (q, k, v): taken from the inbox the round after it
        arrived, from memory afterwards."""
        depths = heap_depths(layer.record_machines + 1, layer.relay_degree)
        for j in range(layer.record_machines):
            if depths[j + 1] <= rho - 1:
                machines = self._record_column(plan, layer, j)
                rows = self._head_words(plan, layer, j, state, delivery, rho)
                out.keep(machines, self._block_sizes(plan) * rows.shape[1], rows)

    def _head_words(self, plan: AnnaPlan, layer: LayerPlan, j: int, state: ClusterState, delivery: Delivery,
                    rho: int) -> np.ndarray:
        """The head's (q, k, v) words of record machines ``(., j)``, one row per token: from the
        whole block's rows in their inbox if they arrived in the last round, else from memory."""
        machines = self._record_column(plan, layer, j)
        columns = self._head_columns(layer.layer, layer.record_heads[j])
        if heap_depths(layer.record_machines + 1, layer.relay_degree)[j + 1] == rho - 1:
            words, _ = inbox_words(delivery, machines)
            return words.reshape(plan.n, layer.qkv_words)[:, columns]
        words, _ = read_memories(state, machines)
        return words.reshape(plan.n, columns.stop - columns.start)

    def _head_rows(self, plan: AnnaPlan, layer: LayerPlan, j: int, state: ClusterState, delivery: Delivery,
                   rho: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(q, k, v)`` of record machines ``(., j)`` in the model's dtype."""
        rows = self._head_words(plan, layer, j, state, delivery, rho).astype(self.spec.dtype)
        m = self.spec.layers[layer.layer].heads[layer.record_heads[j]].dim
        return (np.ascontiguousarray(rows[:, :m]), np.ascontiguousarray(rows[:, m:2 * m]),
                np.ascontiguousarray(rows[:, 2 * m:]))

    def _codes(self, plan: AnnaPlan, layer: LayerPlan, j: int, rows: np.ndarray) -> np.ndarray:
        head = self.model.layers[layer.layer].heads[layer.record_heads[j]]
        first, stop = layer.record_tables[j]
        seed = self.model.head_seed(layer.layer, layer.record_heads[j])
        return table_codes(head, seed, rows, first, stop)

    # aggregation trees ----------------------------------------------------------------------------
    def _shard_of(self, ctx, layer: LayerPlan, j: int, level: int, tables: np.ndarray, codes: np.ndarray,
                  width: int) -> np.ndarray:
        return (hash64(ctx.seed, layer.layer, level, j, tables, codes) % np.uint64(width)).astype(np.int64)

    def _records_up(self, ctx, plan: AnnaPlan, layer: LayerPlan, state: ClusterState, delivery: Delivery,
                    out: RoundOutput) -> None:
        """Record machines: one record per distinct bucket of their tokens' keys and queries."""
        rho = layer.relay_depth + 1
        self._keep_record_memories(plan, layer, state, delivery, rho, out)
        t = plan.tokens_per_machine
        block = np.arange(plan.n) // t
        for j, tree in enumerate(layer.trees):
            q, k, v = self._head_rows(plan, layer, j, state, delivery, rho)
            query_codes, key_codes = self._codes(plan, layer, j, q), self._codes(plan, layer, j, k)
            tables = tree.stop_table - tree.first_table
            table = np.tile(np.arange(tree.first_table, tree.stop_table), plan.n)
            entries_block = np.r_[np.repeat(block, tables), np.repeat(block, tables)]
            entries_table = np.r_[table, table]
            entries_code = np.r_[key_codes.reshape(-1), query_codes.reshape(-1)]
            is_query = np.r_[np.zeros(plan.n * tables), np.ones(plan.n * tables)]
            values = np.zeros((2 * plan.n * tables, tree.value_dim + 1))
            values[:plan.n * tables, 0] = 1.0
            values[:plan.n * tables, 1:] = np.repeat(v.astype(np.float64), tables, axis=0)
            order, starts, _ = group_keys(entries_block, entries_table, entries_code)
            sums = np.add.reduceat(values[order], starts, axis=0) if starts.size else values[:0]
            asked = np.maximum.reduceat(is_query[order], starts) if starts.size else is_query[:0]
            first = order[starts]
            hi, lo = split_codes(entries_code[first])
            rows = np.column_stack([entries_table[first], hi, lo, asked, sums])
            src = self._record_machine(plan, layer, entries_block[first], j)
            node = entries_block[first] // layer.tree_degree
            shard = self._shard_of(ctx, layer, j, 1, entries_table[first], entries_code[first], tree.widths[0])
            out.send_records(src, tree.machine(1, node, shard), rows)

    def _shard_range(self, tree: TreePlan, level: int) -> tuple[int, int]:
        first = tree.machine(level, 0, 0)
        return first, first + tree.level_nodes[level - 1] * tree.widths[level - 1]

    def _keep_shards(self, layer: LayerPlan, state: ClusterState, levels: range, out: RoundOutput) -> None:
        for tree in layer.trees:
            for level in levels:
                first, stop = self._shard_range(tree, level)
                machines = np.arange(first, stop)
                words, sizes = read_memories(state, machines)
                out.keep(machines, sizes, words)

    def _shards_up(self, ctx, plan: AnnaPlan, layer: LayerPlan, level: int, state: ClusterState,
                   delivery: Delivery, out: RoundOutput) -> None:
        """Level-``level`` shards keep what they received (with its sender) and pass the sum of
        every bucket to their parent node's shard."""
        for j, tree in enumerate(layer.trees):
            first, stop = self._shard_range(tree, level)
            w = tree.record_width
            receiver, sender, _, rows = received_rows(delivery, first, stop, w)
            kept = np.column_stack([sender, rows])
            out.keep(*self._by_machine(receiver, kept, first, stop))
            combined_receiver, combined = self._combine(receiver, rows)
            node = (combined_receiver - first) // tree.widths[level - 1]
            codes = join_codes(combined[:, 1], combined[:, 2])
            shard = self._shard_of(ctx, layer, j, level + 1, combined[:, 0].astype(np.int64), codes,
                                   tree.widths[level])
            out.send_records(combined_receiver, tree.machine(level + 1, node // layer.tree_degree, shard), combined)

    @staticmethod
    def _by_machine(receiver: np.ndarray, rows: np.ndarray, first: int, stop: int):
        machines = np.arange(first, stop)
        order = np.argsort(receiver, kind="stable")
        return machines, np.bincount(receiver - first, minlength=stop - first) * rows.shape[1], rows[order]

    @staticmethod
    def _combine(receiver: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per machine, one row per distinct (table, code): counts and sums added, asked or-ed."""
        order, starts, _ = group_keys(receiver, rows[:, 0], rows[:, 1], rows[:, 2])
        if starts.size == 0:
            return receiver[:0], rows[:0]
        sums = np.add.reduceat(rows[order, 4:], starts, axis=0)
        asked = np.maximum.reduceat(rows[order, 3], starts)
        head = rows[order[starts]]
        return receiver[order[starts]], np.column_stack([head[:, :3], asked, sums])

    def _shards_down(self, plan: AnnaPlan, layer: LayerPlan, level: int, state: ClusterState,
                     delivery: Delivery, out: RoundOutput) -> None:
        """Level-``level`` shards answer every asked record they received with the bucket's sum
        (total, or before the sender's subtree when causal); then they forget the tree."""
        for tree in layer.trees:
            first, stop = self._shard_range(tree, level)
            w = tree.record_width
            if level == layer.tree_depth:      # the root received in the last round: still in its inbox
                receiver, sender, _, rows = received_rows(delivery, first, stop, w)
            else:
                words, sizes = read_memories(state, np.arange(first, stop))
                kept = words.reshape(-1, w + 1)
                receiver = np.repeat(np.arange(first, stop), sizes // (w + 1))
                sender, rows = kept[:, 0].astype(np.int64), kept[:, 1:]
            # rows in sender (= child) order within a bucket: sort by (machine, bucket, sender)
            order, _, _ = group_keys(receiver, rows[:, 0], rows[:, 1], rows[:, 2], sender)
            receiver, sender, rows = receiver[order], sender[order], rows[order]
            _, bucket_starts, bucket = group_keys(receiver, rows[:, 0], rows[:, 1], rows[:, 2])
            sums = rows[:, 4:]
            if level < layer.tree_depth:          # the parent's answer for the bucket
                a_receiver, _, _, answers = received_rows(delivery, first, stop, w - 1)
                found = lookup((a_receiver, answers[:, 0], answers[:, 1], answers[:, 2]),
                               (receiver, rows[:, 0], rows[:, 1], rows[:, 2]))
                if np.any(found[rows[:, 3] > 0] < 0):
                    raise ProtocolError("a shard was not answered for a bucket it asked for")
                base = np.where((found >= 0)[:, None], answers[np.maximum(found, 0), 3:], 0.0)
            elif layer.causal:                    # the root: nothing comes before the first leaf
                base = np.zeros_like(sums)
            else:                                 # the root: the bucket's total
                base = np.add.reduceat(sums, bucket_starts, axis=0)[bucket] if rows.shape[0] else sums
            if layer.causal:
                base = base + segmented_exclusive_sum(sums, bucket_starts)
            asked = rows[:, 3] > 0
            answer = np.column_stack([rows[asked, :3], base[asked]])
            out.send_records(receiver[asked], sender[asked], answer)

    # record machines finish --------------------------------------------------------------------------
    def _relay_up(self, plan: AnnaPlan, layer: LayerPlan, step: int, state: ClusterState, delivery: Delivery,
                  out: RoundOutput) -> None:
        """Step ``step`` of the relay's climb. At step 1 every record machine computes its partial
        sums; a node at depth ``t`` sends its own plus its children's (which arrive in the round
        before) to its parent at step ``D_r - t + 1``, and keeps them until then."""
        k = layer.record_machines
        depths = heap_depths(k + 1, layer.relay_degree)
        sending = layer.relay_depth - step + 1
        sizes = self._block_sizes(plan)
        width = layer.partial_words
        blocks = np.arange(plan.token_machines)
        rho = layer.relay_depth + 2 * layer.tree_depth + step
        children = np.zeros((k, plan.n, width))
        if step > 1:
            receiver, _, row, rows = received_rows(delivery, plan.record_base, plan.record_base + plan.token_machines * k,
                                                   width)
            offset = receiver - plan.record_base
            np.add.at(children, (offset % k, offset // k * plan.tokens_per_machine + row), rows)
        for j in range(k):
            if depths[j + 1] > sending:
                continue                      # sent in an earlier step
            machines = self._record_column(plan, layer, j)
            if step == 1:
                acc = self._partials(plan, layer, j, state, delivery, rho)
            else:
                acc = read_memories(state, machines)[0].reshape(plan.n, width) + children[j]
            if depths[j + 1] == sending:
                parent = j // layer.relay_degree           # heap node j + 1 has parent node j // f
                dst = blocks if parent == 0 else self._record_column(plan, layer, parent - 1)
                out.send(machines, dst, sizes * width, acc)
            else:
                out.keep(machines, sizes * width, acc)

    def _partials(self, plan: AnnaPlan, layer: LayerPlan, j: int, state: ClusterState, delivery: Delivery,
                  rho: int) -> np.ndarray:
        """Record machines ``(., j)``: per token, the sum over their tables of the value sums and
        key counts of the query's buckets, in the head's slot of the partial-sum row."""
        q, k, v = self._head_rows(plan, layer, j, state, delivery, rho)
        first, stop = layer.record_tables[j]
        tables = stop - first
        query_codes = self._codes(plan, layer, j, q)
        t = plan.tokens_per_machine
        block = np.arange(plan.n) // t
        head = self.spec.layers[layer.layer].heads[layer.record_heads[j]]
        if layer.tree_depth > 0:
            machines = self._record_column(plan, layer, j)
            words, sizes = inbox_words(delivery, machines)
            answers = words.reshape(-1, head.value_dim + 4)
            receiver = np.repeat(machines, sizes // (head.value_dim + 4))
            table = np.tile(np.arange(first, stop), plan.n)
            hi, lo = split_codes(query_codes.reshape(-1))
            found = lookup((receiver, answers[:, 0], answers[:, 1], answers[:, 2]),
                           (self._record_machine(plan, layer, np.repeat(block, tables), j), table, hi, lo))
            if np.any(found < 0):
                raise ProtocolError("a record machine was not answered for one of its queries' buckets")
            base = answers[found, 3:].reshape(plan.n, tables, head.value_dim + 1)
        else:
            base = np.zeros((plan.n, tables, head.value_dim + 1))
        if layer.causal or layer.tree_depth == 0:
            base = base + self._in_block(plan, query_codes, self._codes(plan, layer, j, k), v,
                                         layer.causal)
        summed = base.sum(axis=1)                       # over this machine's tables
        acc = np.zeros((plan.n, layer.partial_words))
        at = sum(g.value_dim + 1 for g in self.spec.layers[layer.layer].heads[:layer.record_heads[j]])
        acc[:, at:at + head.value_dim] = summed[:, 1:]
        acc[:, at + head.value_dim] = summed[:, 0]
        return acc

    def _in_block(self, plan: AnnaPlan, query_codes: np.ndarray, key_codes: np.ndarray, v: np.ndarray,
                  causal: bool) -> np.ndarray:
        """Per token and table, (count, value sum) over the keys of its own block sharing the
        query's code (keys at positions <= the query's only, when causal)."""
        t, p = plan.tokens_per_machine, plan.token_machines
        pad = p * t - plan.n
        tables = query_codes.shape[1]
        qc = np.r_[query_codes, np.zeros((pad, tables), dtype=np.uint64)].reshape(p, t, tables)
        kc = np.r_[key_codes, np.zeros((pad, tables), dtype=np.uint64)].reshape(p, t, tables)
        valid = np.r_[np.ones(plan.n, dtype=bool), np.zeros(pad, dtype=bool)].reshape(p, t)
        values = np.zeros((p * t, v.shape[1] + 1))
        values[:plan.n, 0] = 1.0
        values[:plan.n, 1:] = v
        values = values.reshape(p, t, -1)
        out = np.empty((p, t, tables, v.shape[1] + 1))
        mask = valid[:, None, :] & (np.tril(np.ones((t, t), dtype=bool))[None] if causal else True)
        for u in range(tables):
            match = (qc[:, :, None, u] == kc[:, None, :, u]) & mask
            out[:, :, u] = match.astype(np.float64) @ values
        return out.reshape(p * t, tables, -1)[:plan.n]
