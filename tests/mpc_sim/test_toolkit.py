"""The public protocol toolkit: every export against a plain reference on small inputs."""
from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mpc_sim.protocols.toolkit as toolkit
from mpc_sim import ClusterState, ConfigError, Delivery, MessageBatch, MPCConfig, Protocol, ProtocolError, route
from mpc_sim.protocols.connectivity import Connectivity
from mpc_sim.protocols.khop import KHop
from mpc_sim.protocols.match2 import Match2
from mpc_sim.protocols.toolkit import (HEARTBEAT, INT_MAX, Keys, RadixTree, SearchedDefaultConfig, SortPlan, as_words,
                                       batch_local_sort, batch_merge_split, bitonic_stages, build_state,
                                       concat_batches, concat_memories, delivery_records, first_of_runs,
                                       inbox_records, join_headers, local_sort, merge_split, pack_batch, pack_local,
                                       relayout_batch, relayout_local, smallest_config, sort_plan, sort_round_batch,
                                       sort_round_local, sort_segments, spanned, split_headers, splitter_roots,
                                       splitter_sends, stage_partner, tree_depth)

SETTINGS = settings(max_examples=40, deadline=None)
records = st.integers(1, 3).flatmap(lambda width: st.lists(
    st.tuples(st.integers(0, 4), st.lists(st.integers(-5, 5), min_size=width, max_size=width)), max_size=12))
memories = st.lists(st.lists(st.integers(-100, 100), max_size=5), min_size=1, max_size=6)


def _first_column(rows: np.ndarray) -> list[np.ndarray]:
    return [rows[:, 0]]


FIRST_COLUMN: Keys = _first_column
"""Sort keys of 2-word records: the first word only (the second tells equal keys apart: stability)."""


def _state(lists):
    return ClusterState.from_list([np.array(m, dtype=np.int64) for m in lists])


def _batch(triples):
    return MessageBatch.from_list([(s, d, np.array(p, dtype=np.int64)) for s, d, p in triples])


def _triples(batch):
    return [(int(batch.src[j]), int(batch.dst[j]), batch.payload(j).tolist()) for j in range(batch.num_messages)]


triples = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4), st.lists(st.integers(-9, 9), max_size=3)),
                   max_size=6)


# --- the module itself ------------------------------------------------------------------------------
def test_every_export_exists_is_documented_and_is_tested_here():
    source = open(__file__).read()
    for name in toolkit.__all__:
        value = getattr(toolkit, name)
        if inspect.isfunction(value) or inspect.isclass(value):
            assert inspect.getdoc(value), f"{name} has no docstring"
        assert source.count(name) >= 2, f"{name} is exported but no test here uses it"


# --- words ------------------------------------------------------------------------------------------
@given(st.lists(st.integers(-2**63, 2**63 - 1), max_size=8), st.sampled_from([np.int64, np.float64]))
def test_as_words_reads_integers_as_numpy_would(values, dtype):
    words = as_words(values, np.dtype(dtype), "memory")
    assert words.dtype == dtype and words.ndim == 1
    assert np.array_equal(words, np.array(values, dtype=object).astype(dtype) if values else np.zeros(0, dtype))


@pytest.mark.parametrize("payload,match", [(np.array([0.5, 2.0]), "integer words"),
                                            (np.array([1.0]), "integer words"),
                                            (np.zeros((2, 2), dtype=np.int64), "1-D")])
def test_as_words_refuses_floats_and_matrices_as_int64_words(payload, match):
    with pytest.raises(ProtocolError, match=f"payload of machine 2 .*{match}"):
        as_words(payload, np.dtype(np.int64), "payload of machine 2")


@given(st.lists(triples, max_size=4))
def test_concat_batches_equals_one_batch_of_all_messages_in_order(parts):
    joined = concat_batches([_batch(p) for p in parts], np.int64)
    assert _triples(joined) == [(s, d, list(p)) for part in parts for s, d, p in part]


# --- trees ------------------------------------------------------------------------------------------
@given(st.integers(1, 500), st.integers(2, 9))
def test_tree_depth_is_the_smallest_exponent_reaching_the_leaves(leaves, degree):
    assert tree_depth(leaves, degree) == min(t for t in range(64) if degree ** t >= leaves)


@given(st.integers(1, 60), st.integers(2, 5), st.booleans())
def test_radix_tree_links_are_each_nodes_parent_as_the_module_defines_them(leaves, degree, helpers):
    tree = RadixTree(leaves, degree, first_helper=leaves if helpers else None)
    for level in range(1, tree.depth + 1):
        child, parent = tree.links(level)
        expected = []
        for g in range(math.ceil(leaves / degree ** (level - 1))):
            if helpers:
                host = lambda t, i: i if t == 0 else leaves + sum(  # noqa: E731
                    math.ceil(leaves / degree ** u) for u in range(1, t)) + i
            else:
                host = lambda t, i: i * degree ** t  # noqa: E731
            if not helpers and g % degree == 0:
                continue                                    # in place, child 0 is its own parent
            expected.append((host(level - 1, g), host(level, g // degree)))
        assert list(zip(child.tolist(), parent.tolist())) == expected


# --- messages and relayouts -------------------------------------------------------------------------
@given(records)
def test_pack_local_is_one_message_per_destination_in_production_order(rows):
    dst = np.array([d for d, _ in rows], dtype=np.int64)
    payload = np.array([r for _, r in rows], dtype=np.int64).reshape(len(rows), -1) if rows else np.zeros((0, 1))
    expected = {}
    for d, r in rows:
        expected.setdefault(d, []).extend(r)
    assert [(d, p.tolist()) for d, p in pack_local(dst, payload)] == sorted(expected.items())


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(-9, 9)), max_size=15))
def test_pack_batch_is_every_sources_pack_local_in_source_order(rows):
    src = np.array([r[0] for r in rows], dtype=np.int64)
    dst = np.array([r[1] for r in rows], dtype=np.int64)
    payload = np.array([[r[2]] for r in rows], dtype=np.int64).reshape(len(rows), 1)
    expected = [(int(m), d, p.tolist()) for m in range(4)
                for d, p in pack_local(dst[src == m], payload[src == m])]
    assert _triples(pack_batch(src, dst, payload)) == expected


@given(triples)
def test_with_heartbeat_adds_one_word_from_machine_0_exactly_when_it_is_silent(messages):
    messages = sorted(messages, key=lambda m: m[0])           # pack_batch order: by sender
    batch = with_hb = toolkit.with_heartbeat(_batch(messages))
    if any(s == 0 for s, _, _ in messages):
        assert _triples(with_hb) == _triples(_batch(messages))
    else:
        assert _triples(batch) == [(0, 0, [HEARTBEAT])] + _triples(_batch(messages))


@given(triples, st.booleans())
def test_inbox_and_delivery_records_read_every_delivered_record_in_order(messages, skip):
    messages = [(s, d, p * 2) for s, d, p in messages if len(p)]   # width 2: every payload a whole record
    delivery = route(_batch(messages), 5) if messages else Delivery.empty(5)
    expected = {m: [] for m in range(5)}
    for s, d, p in sorted(messages, key=lambda m: m[1]):            # routing is stable by destination
        if not (skip and len(p) == 1):
            expected[d] += [(s, p[i:i + 2]) for i in range(0, len(p), 2)]
    dst, src, rows = delivery_records(delivery, 2, skip_single=skip)
    flat = [(int(d), int(s), r.tolist()) for d, s, r in zip(dst, src, rows)]
    assert flat == [(d, s, r) for d in range(5) for s, r in expected[d]]
    for machine in range(5):
        got = inbox_records(delivery.inbox(machine), 2, skip_single=skip).tolist()
        assert got == [r for _, r in expected[machine]]


@given(st.lists(st.integers(-50, 50), max_size=20), st.integers(1, 4), st.integers(1, 5))
def test_relayouts_move_each_item_of_a_global_array_to_its_new_owner_in_index_order(words, per_source, per_owner):
    words = np.array(words, dtype=np.int64)
    owner = lambda index: index // per_owner  # noqa: E731
    batch = relayout_batch(words, per_source, owner)
    local = [(m, d, p.tolist()) for m in range(-(-len(words) // per_source))
             for d, p in relayout_local(m, words[m * per_source:(m + 1) * per_source], per_source, owner)]
    assert _triples(batch) == local
    received = {}
    for _, d, p in sorted(local, key=lambda t: (t[1], t[0])):
        received.setdefault(d, []).extend(p)
    assert received == {d: words[d * per_owner:(d + 1) * per_owner].tolist()
                        for d in range(-(-len(words) // per_owner))}


@given(st.lists(st.lists(st.integers(-9, 9), max_size=4), max_size=4), st.integers(0, 3))
def test_build_state_places_role_parts_on_their_machines(memories, first):
    machines = first + len(memories) + 2
    state = build_state(machines, [(first, [len(m) for m in memories], [w for m in memories for w in m])])
    expected = [[]] * first + memories + [[], []]
    assert [m.tolist() for m in state.to_list()] == expected


@given(st.lists(st.tuples(st.lists(st.integers(-9, 9), min_size=2, max_size=2),
                          st.lists(st.integers(-9, 9), max_size=4)), min_size=1, max_size=5))
def test_join_and_split_headers_are_inverse_concatenations(parts):
    headers = np.array([h for h, _ in parts], dtype=np.int64)
    body_sizes = np.array([len(b) for _, b in parts], dtype=np.int64)
    body = np.array([w for _, b in parts for w in b], dtype=np.int64)
    joined = join_headers(headers, body, body_sizes)
    assert joined.tolist() == [w for h, b in parts for w in h + b]
    back_headers, back_body = split_headers(joined, body_sizes, 2)
    assert back_headers.tolist() == headers.tolist() and back_body.tolist() == body.tolist()


@given(st.lists(st.tuples(st.integers(0, 2), st.booleans()), max_size=12))
def test_first_of_runs_marks_valid_entries_that_start_a_run(entries):
    values = np.array([v for v, _ in entries], dtype=np.int64)
    valid = np.array([ok for _, ok in entries], dtype=bool)
    expected = [ok and (i == 0 or v != entries[i - 1][0]) for i, (v, ok) in enumerate(entries)]
    assert first_of_runs(values, valid).tolist() == expected


@given(st.integers(1, 30), st.integers(1, 8))
def test_spanned_is_the_most_owners_a_run_can_touch(length, per_owner):
    worst = max(len({(start + i) // per_owner for i in range(length)}) for start in range(per_owner))
    assert spanned(length, per_owner) == worst


def test_int_max_is_the_largest_int64_word():
    assert INT_MAX == np.iinfo(np.int64).max and isinstance(INT_MAX, int)


# --- block sort -------------------------------------------------------------------------------------
@given(st.integers(1, 9), st.lists(st.integers(-99, 99), min_size=16, max_size=16))
def test_bitonic_stages_with_stage_partner_sort_any_numbers(machines, values):
    width = 1 << (machines - 1).bit_length()
    data = np.array(values[:width], dtype=np.int64)
    for stage in bitonic_stages(machines):
        for i in range(width):
            j = int(stage_partner(i, stage))
            if i < j < width and data[i] > data[j]:
                data[i], data[j] = data[j], data[i]
    assert data.tolist() == sorted(values[:width])


block_sets = st.tuples(st.integers(1, 5), st.integers(1, 3)).flatmap(
    lambda pb: st.lists(st.tuples(st.integers(0, 3), st.integers(0, 9)), min_size=pb[0] * pb[1],
                        max_size=pb[0] * pb[1]).map(lambda r: np.array(r, dtype=np.int64).reshape(pb[0], pb[1], 2)))


def _stable_sorted(rows):
    return sorted(rows.tolist(), key=lambda r: r[0])


@given(block_sets)
def test_local_sorts_are_stable_sorts_by_the_keys(blocks):
    assert [local_sort(b, FIRST_COLUMN).tolist() for b in blocks] == [_stable_sorted(b) for b in blocks]
    assert batch_local_sort(blocks, FIRST_COLUMN).tolist() == [_stable_sorted(b) for b in blocks]


@given(block_sets, st.integers(0, 3), st.integers(0, 3))
def test_merge_splits_keep_the_lower_or_upper_half_of_the_union(blocks, i, j):
    p, b, _ = blocks.shape
    stage = (i, j) if j <= i else (j, i)
    merged = batch_merge_split(blocks, stage, FIRST_COLUMN)
    for m in range(p):
        partner = int(stage_partner(m, stage))
        if partner >= p:
            assert merged[m].tolist() == blocks[m].tolist()
            continue
        low, high = sorted((m, partner))
        union = _stable_sorted(np.concatenate([blocks[low], blocks[high]]))
        expected = union[:b] if m < partner else union[b:]
        assert merged[m].tolist() == expected
        assert merge_split(blocks[m], blocks[partner], m, partner, FIRST_COLUMN).tolist() == expected


@given(block_sets)
def test_sort_rounds_sort_every_record_and_both_styles_agree(blocks):
    p = blocks.shape[0]
    stages = bitonic_stages(p)
    batch_blocks, local_blocks = blocks, [b for b in blocks]
    received = [None] * p
    for q in range(len(stages) + 1):
        batch_blocks, batch = sort_round_batch(batch_blocks, q, stages, FIRST_COLUMN)
        outgoing = [sort_round_local(local_blocks[m], received[m], q, m, p, stages, FIRST_COLUMN) for m in range(p)]
        local_blocks = [block for block, _ in outgoing]
        sent = [(m, d, w.tolist()) for m, (_, messages) in enumerate(outgoing) for d, w in messages]
        assert _triples(batch) == sent
        received = [None] * p
        for _, d, w in sent:
            received[d] = np.array(w, dtype=np.int64)
    assert batch_blocks.tolist() == [b.tolist() for b in local_blocks]
    flat = batch_blocks.reshape(-1, 2)
    assert flat[:, 0].tolist() == sorted(blocks.reshape(-1, 2)[:, 0].tolist())


# --- ragged arrays ----------------------------------------------------------------------------------
@given(memories, st.data())
def test_concat_memories_appends_machine_by_machine(first, data):
    second = data.draw(st.lists(st.lists(st.integers(-9, 9), max_size=3), min_size=len(first), max_size=len(first)))
    joined = concat_memories(_state(first), _state(second))
    assert [m.tolist() for m in joined.to_list()] == [a + b for a, b in zip(first, second)]


@given(memories)
def test_sort_segments_sorts_each_machines_words(lists):
    state = _state(lists)
    assert sort_segments(state.words, state.offsets).tolist() == [w for m in lists for w in sorted(m)]


# --- sample-sort splitters --------------------------------------------------------------------------
def _log_binomial_cdf_reference(trials, p, upto):
    return math.log(sum(math.comb(trials, i) * p ** i * (1 - p) ** (trials - i) for i in range(upto + 1)))


@pytest.mark.parametrize("items,cap,s", [(2000, 400, 800), (5000, 300, 600), (100, 100, 400)])
def test_sort_plan_bounds_failure_as_the_binomial_tail_says(items, cap, s):
    plan = sort_plan(items, cap, s, 1e-6, leaves=10)
    assert isinstance(plan, SortPlan) and plan.buckets * plan.cap >= items
    if plan.trivial:
        assert items <= cap and plan.failure == 0.0
        return
    bucket = items * math.exp(_log_binomial_cdf_reference(cap, plan.probability, plan.spacing - 1))
    assert bucket <= plan.failure <= 1e-6
    assert plan.degree == s // (1 + plan.buckets - 1) and plan.degree >= 2


def test_sort_plan_explains_why_no_plan_fits():
    why = sort_plan(10**6, 10, 12, 1e-9)
    assert isinstance(why, str) and "too small" in why


@pytest.mark.parametrize("items,cap,s,leaves,first", [(10**6, 4000, 16000, 250, 0), (10**6, 4000, 16000, 37, 5),
                                                      (2000, 400, 800, 9, 3)])
def test_splitters_reach_every_leaf_exactly_once_in_plan_rounds(items, cap, s, leaves, first):
    plan = sort_plan(items, cap, s, 1e-10, leaves=leaves)
    informed = [int(m) for m in splitter_roots(plan, first)]
    for step in range(1, plan.rounds):
        informed += [m for leaf in list(informed) for m in splitter_sends(plan, step, first, leaf - first)]
    assert sorted(informed) == list(range(first, first + leaves))
    fanout = max(len(splitter_sends(plan, step, first, leaf)) for step in range(1, plan.rounds + 1)
                 for leaf in range(leaves))
    assert fanout <= plan.degree - 1


# --- config search ----------------------------------------------------------------------------------
class _Needs:
    name = "needs"

    def __init__(self, s, machines):
        self.s, self.machines = s, machines

    def check_config(self, config):
        if config.s < self.s or config.machines < self.machines:
            raise ConfigError("too small")


@given(st.integers(1, 60), st.integers(1, 60))
@SETTINGS
def test_smallest_config_is_the_first_accepted_pair_on_the_grid(s, machines):
    n, eps, grid = 64, 0.5, [1.25 ** i for i in range(80)]
    protocol = _Needs(s, machines)
    expected = next(MPCConfig(n=n, eps=eps, memory_factor=a, machines_factor=b) for a in grid for b in grid
                    if MPCConfig(n=n, eps=eps, memory_factor=a).s >= s
                    and MPCConfig(n=n, eps=eps, machines_factor=b).machines >= machines)
    assert smallest_config(protocol, n, eps) == expected


def test_smallest_config_with_a_plan_takes_the_plans_machines_at_the_smallest_memory():
    def machines_for(n, s):
        if s < 30:
            raise ConfigError("memory too small for the plan")
        return n // s + 7

    config = smallest_config(None, 100, 0.5, machines_for=machines_for)
    smallest = min(1.25 ** i for i in range(60) if math.ceil(1.25 ** i * 10 - 1e-9) >= 30)
    assert config.memory_factor == smallest and config.machines == 100 // config.s + 7


def test_smallest_config_names_the_protocol_when_nothing_fits():
    with pytest.raises(ConfigError, match=r"needs: no config .*\(too small\)"):
        smallest_config(_Needs(10**9, 1), 64, 0.5, steps=5)
    with pytest.raises(ConfigError, match="a protocol"):
        smallest_config(None, 64, 0.5)


@pytest.mark.parametrize("protocol", [KHop(k=2), Match2(), Connectivity()])
def test_searched_default_config_is_the_smallest_config_the_protocol_accepts(protocol):
    assert isinstance(protocol, SearchedDefaultConfig) and isinstance(protocol, Protocol)
    assert protocol.default_config(64, 0.5) == smallest_config(protocol, 64, 0.5)
