"""The protocol toolkit: the public building blocks the library's protocols are written with.

Import from here (never from the private modules behind it) to write a protocol or a compiler
that speaks the library's conventions:

* **words** -- :func:`as_words` (how the simulator reads a memory or a payload a step returns;
  floats are never silently truncated to int64), :func:`concat_batches` (message batches one
  after the other);
* **trees** -- :func:`tree_depth`, :class:`RadixTree`: the fan-in / fan-out radix trees of
  aggregation, broadcast, prefix sums and splitter distribution (in place or on helper machines);
* **messages and relayouts** (per-machine ``*_local`` and batch ``*_batch`` twins with the same
  result) -- :func:`pack_local`, :func:`pack_batch`, :func:`with_heartbeat`, :data:`HEARTBEAT`,
  :func:`inbox_records`, :func:`delivery_records`, :func:`relayout_local`, :func:`relayout_batch`,
  :func:`build_state`, :func:`join_headers`, :func:`split_headers`, :func:`first_of_runs`,
  :func:`spanned`, :data:`INT_MAX`;
* **block sort** (bitonic network of merge-splits, ``O(log^2 P)`` rounds) --
  :func:`bitonic_stages`, :func:`stage_partner`, :func:`local_sort`, :func:`batch_local_sort`,
  :func:`merge_split`, :func:`batch_merge_split`, :func:`sort_round_local`,
  :func:`sort_round_batch`, :data:`Keys`;
* **ragged arrays** (numba, the whole cluster at once) -- :func:`concat_memories`,
  :func:`sort_segments`;
* **sample-sort splitters** (constant rounds, failure bounded) -- :class:`SortPlan`,
  :func:`sort_plan`, :func:`splitter_roots`, :func:`splitter_sends`;
* **config search** -- :func:`smallest_config` and the mixin :class:`SearchedDefaultConfig`
  (a ``default_config`` that is the smallest config ``check_config`` accepts).

Examples
--------
A per-machine step that sends every word to the machine it names, messages grouped the way the
library's protocols group them (one per destination, increasing):

>>> from mpc_sim.protocols.toolkit import pack_local, tree_depth
>>> [(dst, words.tolist()) for dst, words in pack_local(np.array([2, 0, 2]), np.array([7, 8, 9]))]
[(0, [8]), (2, [7, 9])]
>>> tree_depth(1000, 10)    # rounds to aggregate 1000 values with fan-in 10
3
"""
from __future__ import annotations

from ..state import as_words, concat_batches
from ._blocks import (HEARTBEAT, INT_MAX, Keys, batch_local_sort, batch_merge_split, bitonic_stages, build_state,
                      delivery_records, first_of_runs, inbox_records, join_headers, local_sort, merge_split,
                      pack_batch, pack_local, relayout_batch, relayout_local, sort_round_batch, sort_round_local,
                      spanned, split_headers, stage_partner, with_heartbeat)
from ._configs import SearchedDefaultConfig, smallest_config
from ._ragged import concat_memories, sort_segments
from ._splitters import SortPlan, sort_plan, splitter_roots, splitter_sends
from ._trees import RadixTree, tree_depth

__all__ = [
    # words
    "as_words", "concat_batches",
    # trees
    "tree_depth", "RadixTree",
    # messages and relayouts
    "HEARTBEAT", "INT_MAX", "pack_local", "pack_batch", "with_heartbeat", "inbox_records", "delivery_records",
    "relayout_local", "relayout_batch", "build_state", "join_headers", "split_headers", "first_of_runs", "spanned",
    # block sort
    "Keys", "bitonic_stages", "stage_partner", "local_sort", "batch_local_sort", "merge_split", "batch_merge_split",
    "sort_round_local", "sort_round_batch",
    # ragged arrays
    "concat_memories", "sort_segments",
    # sample-sort splitters
    "SortPlan", "sort_plan", "splitter_roots", "splitter_sends",
    # config search
    "smallest_config", "SearchedDefaultConfig",
]
