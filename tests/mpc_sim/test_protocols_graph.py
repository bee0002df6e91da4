"""k-hop, Match2 and connectivity protocols: plain references, MPC limits, both styles, round bounds.

Every run goes through :func:`run_both`: the batch and the per-machine styles must produce the
same output and the same trace counts, within every limit (strict mode) and the declared bound.
"""
from __future__ import annotations

import dataclasses

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_sim import ConfigError, InputError, MPCConfig, Simulator, make_protocol
from mpc_sim.protocols.toolkit import bitonic_stages, sort_round_batch, sort_round_local, stage_partner
from mpc_sim.protocols.connectivity import Connectivity, components_reference, graph_diameter, sort_plan
from mpc_sim.protocols.khop import KHop, hop_k_reference
from mpc_sim.protocols.match2 import Match2, match2_reference
from tests.strategies.cases import AABCBABCA, SIZES, path_edges, scaled_config, select

INT64 = np.iinfo(np.int64)


def max_fanout(protocol, config, data, seed=0):
    """The most messages one machine sent in one round (batch style, observed from outside)."""
    seen = [0]

    class Recording(type(protocol)):
        def batch_step(self, ctx, state, delivery):
            state, batch = super().batch_step(ctx, state, delivery)
            if batch.num_messages:
                seen.append(int(np.bincount(batch.src).max()))
            return state, batch

    Simulator(config, mode="batch").run(Recording(**dataclasses.asdict(protocol)), data, seed=seed)
    return max(seen)


def run_both(protocol, config, data, seed=0):
    """Batch and per-machine runs agree exactly, respect every limit and the declared fan-out;
    returns the batch run."""
    assert max_fanout(protocol, config, data, seed) <= protocol.fanout_bound(config)
    batch = Simulator(config, mode="batch").run(protocol, data, seed=seed)
    machine = Simulator(config, mode="machine").run(protocol, data, seed=seed)
    assert np.array_equal(batch.output, machine.output)
    assert batch.trace.counts() == machine.trace.counts()
    assert batch.trace.check() == []
    sizes, s = batch.state.sizes(), config.s
    out = batch.output.size
    assert sizes.tolist() == [min(s, out - i * s) for i in range(-(-out // s))] + [0] * (sizes.size - -(-out // s))
    return batch


# --- oracles written from the definitions (docs/theory.md §5) -----------------------------------------
def hop_k_bruteforce(tokens, k, bottom=-1):
    """1-indexed: find¹(i) = max({0} ∪ {j <= i : X_{j-1} = X_i}), find^k = find¹ ∘ find^{k-1}."""
    X = [None, *[int(t) for t in tokens]]

    def find1(i):
        return max([0] + [j for j in range(2, i + 1) if X[j - 1] == X[i]])

    out = []
    for i in range(1, len(tokens) + 1):
        f = i
        for _ in range(k):
            f = find1(f) if f else 0
        out.append(X[f] if f else bottom)
    return np.array(out, dtype=np.int64)


def networkx_labels(data, vertices):
    graph = nx.Graph()
    graph.add_nodes_from(range(vertices))
    graph.add_edges_from(zip(data[0::2].tolist(), data[1::2].tolist()))
    labels = np.arange(vertices)
    for component in nx.connected_components(graph):
        labels[list(component)] = min(component)
    return labels


# --- the block sort every protocol builds on -----------------------------------------------------
@pytest.mark.parametrize("machines", range(1, 14))
@pytest.mark.parametrize("block", [1, 3])
def test_block_sort_sorts_any_number_of_machines_in_both_styles(machines, block):
    rng = np.random.default_rng(machines * 10 + block)
    records = np.c_[rng.integers(0, 4, machines * block), np.arange(machines * block)]
    keys = lambda r: (r[:, 0], r[:, 1])  # noqa: E731
    stages = bitonic_stages(machines)
    assert len(stages) == (machines - 1).bit_length() * ((machines - 1).bit_length() + 1) // 2
    batch = records.reshape(machines, block, 2)
    local = list(batch.copy())
    sent: dict[tuple[int, int], np.ndarray] = {}
    for q in range(len(stages) + 1):
        batch, _ = sort_round_batch(batch, q, stages, keys)
        outgoing = {}
        for m in range(machines):
            received = sent.get((int(stage_partner(m, stages[q - 1])), m)) if q else None
            local[m], messages = sort_round_local(local[m], received, q, m, machines, stages, keys)
            outgoing.update({(m, d): p for d, p in messages})
        sent = outgoing
    expected = records[np.lexsort((records[:, 1], records[:, 0]))]
    assert np.array_equal(batch.reshape(-1, 2), expected)
    assert np.array_equal(np.concatenate(local), expected)


# --- k-hop --------------------------------------------------------------------------------------
# the cases (explicit tokens at the smallest and a roomy config, generated instances) are in the
# shared table, whose stages (tests/test_stages.py) run them in both styles against the reference
@pytest.mark.parametrize("case", select("khop"))
def test_khop_reference_equals_the_definition_on_the_case_table(case):
    protocol, config = case.build()
    for data in case.data(protocol, config):
        expected = hop_k_bruteforce(data.tolist(), protocol.k, protocol.bottom)
        assert np.array_equal(protocol.reference(data), expected)
        assert np.array_equal(hop_k_reference(data, protocol.k, protocol.bottom), expected)


def test_khop_theory_example_gives_b_then_a_at_position_9():
    data = np.array(AABCBABCA)
    config = KHop(k=1).default_config(9, 0.5)
    assert run_both(KHop(k=1), config, data).output[8] == 1  # b
    assert run_both(KHop(k=2), config, data).output[8] == 0  # a


def test_khop_every_k_from_0_to_64_matches_definition_within_the_log_k_formula():
    tokens = [int(t) for t in np.random.default_rng(0).integers(0, 3, 13)]
    data = np.array(tokens)
    config = KHop(k=1).default_config(13, 0.5)
    B = (config.s - 1) // 7
    t = (-(-13 // B) - 1).bit_length()
    for k in range(65):
        protocol = KHop(k=k)
        run = Simulator(config, mode="batch").run(protocol, data)
        assert np.array_equal(run.output, hop_k_bruteforce(tokens, k)), k
        assert run.trace.check() == []
        k_eff = min(k, 13)
        assert run.trace.num_rounds <= (0 if k_eff == 0 else 6 + t * (t + 1) // 2 + 2 * (k_eff.bit_length()))


def test_khop_rounds_grow_by_two_per_doubling_of_k_and_stop_growing_at_n():
    n = 40
    data = KHop(k=1).generate_input(MPCConfig(n=n, eps=0.5), seed=1)
    config = KHop(k=1).default_config(n, 0.5)
    rounds = {k: Simulator(config).run(KHop(k=k), data).trace.num_rounds for k in (1, 2, 4, 8, 16, 32, 40, 41, 1000)}
    assert [rounds[2 * k] - rounds[k] for k in (1, 2, 4, 8, 16)] == [2] * 5
    assert rounds[41] == rounds[1000] == rounds[40]


def test_khop_uses_the_same_convention_as_the_anna_task_module():
    from anna.tasks.khop import hop_k

    data = KHop(k=1).generate_input(MPCConfig(n=30, eps=0.5), seed=3)
    config = KHop(k=1).default_config(30, 0.5)
    for k in (1, 2, 5):
        assert np.array_equal(Simulator(config).run(KHop(k=k), data).output, hop_k(data, k))


@settings(max_examples=20)
@given(tokens=st.lists(st.integers(-3, 3), min_size=1, max_size=30), k=st.integers(0, 70),
       size=st.sampled_from(sorted(SIZES)))
def test_khop_matches_reference_on_random_sequences(tokens, k, size):
    data = np.array(tokens, dtype=np.int64)
    protocol = KHop(k=k, bottom=-100)
    run = run_both(protocol, scaled_config(protocol, data.size, memory_scale=SIZES[size]), data)
    assert np.array_equal(run.output, hop_k_reference(data, k, -100))
    assert run.trace.num_rounds == run.trace.rounds_bound


def test_khop_is_deterministic_per_seed():
    data = KHop(k=1).generate_input(MPCConfig(n=25, eps=0.5), seed=2)
    config = KHop(k=1).default_config(25, 0.5)
    first, again = (Simulator(config).run(KHop(k=5), data, seed=7) for _ in range(2))
    assert np.array_equal(first.output, again.output) and first.trace.counts() == again.trace.counts()


def test_khop_refuses_what_it_cannot_run():
    with pytest.raises(ConfigError, match="s >= 8"):
        KHop(k=1).check_config(MPCConfig(n=100, eps=0.3))
    with pytest.raises(ConfigError, match="s = 10 is too small"):
        KHop(k=1).check_config(MPCConfig(n=100, eps=0.5, memory_factor=1))
    with pytest.raises(ConfigError, match="working machines"):
        KHop(k=1).check_config(MPCConfig(n=10**4, eps=0.5, memory_factor=20, machines_factor=0.1))
    with pytest.raises(ConfigError, match="k must be"):
        KHop(k=-1)
    config = KHop(k=1).default_config(4, 0.5)
    with pytest.raises(InputError, match="equals bottom"):
        Simulator(config).run(KHop(k=1), np.array([0, -1, 2, 3]))
    run = Simulator(config).run(KHop(k=1, bottom=-99), np.array([-1, 0, -1, 0]))
    assert run.output.tolist() == [-99, -99, 0, -1]
    KHop(k=0).check_config(MPCConfig(n=100, eps=0.3))  # nothing to compute: any cluster will do


# --- Match2 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", select("match2"))
def test_match2_reference_equals_the_definition_on_the_case_table(case):
    protocol, config = case.build()
    for data in case.data(protocol, config):
        words, modulus = data.tolist(), protocol.modulus
        expected = [int(any((a + b) % modulus == 0 for b in words)) for a in words]
        assert protocol.reference(data).tolist() == expected == match2_reference(data, modulus).tolist()


@pytest.mark.parametrize("n", [1, 9, 64, 200])
@pytest.mark.parametrize("eps", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("modulus", [2, 37, 300])
def test_match2_rounds_follow_the_tree_formula(n, eps, modulus):
    protocol = Match2(modulus=modulus)
    try:
        config = MPCConfig(n=n, eps=eps, memory_factor=4, machines_factor=4)
        protocol.check_config(config)
    except ConfigError:
        config = protocol.default_config(n, eps)
    s = config.s
    B, W = s // 2, -(-modulus // 64)
    P, fan_in = -(-n // B), (s - B) // W
    depth = 0
    while fan_in ** depth < P:
        depth += 1
    run = Simulator(config).run(protocol, protocol.generate_input(config, seed=n))
    assert run.trace.num_rounds == 2 + 2 * depth == protocol.rounds_bound(config)
    assert np.array_equal(run.output, protocol.reference(protocol.generate_input(config, seed=n)))


def test_match2_rounds_do_not_grow_with_n_at_fixed_eps():
    protocol = Match2(modulus=37)
    rounds = []
    for n in (64, 256, 1024, 4096, 16384):
        config = MPCConfig(n=n, eps=0.5, memory_factor=2, machines_factor=4)
        rounds.append(Simulator(config).run(protocol, protocol.generate_input(config, seed=0)).trace.num_rounds)
    assert rounds == [4] * 5


@settings(max_examples=20)
@given(words=st.lists(st.integers(-300, 300), min_size=1, max_size=40), modulus=st.integers(1, 400),
       size=st.sampled_from(sorted(SIZES)))
def test_match2_matches_reference_on_random_words(words, modulus, size):
    data = np.array(words, dtype=np.int64)
    protocol = Match2(modulus=modulus)
    run = run_both(protocol, scaled_config(protocol, data.size, memory_scale=SIZES[size]), data)
    assert np.array_equal(run.output, match2_reference(data, modulus))


def test_match2_words_beyond_the_modulus_range_are_reduced():
    protocol = Match2(modulus=7)
    data = np.array([INT64.max, INT64.min, 10**15, -(10**15), 3])
    run = run_both(protocol, protocol.default_config(5, 0.5), data)
    assert run.output.tolist() == [int(any((int(a) + int(b)) % 7 == 0 for b in data)) for a in data]


def test_match2_refuses_a_modulus_too_large_for_its_bitmap_tree():
    with pytest.raises(ConfigError, match="M may be at most 128"):
        Match2(modulus=1000).check_config(MPCConfig(n=100, eps=0.5, machines_factor=4))
    with pytest.raises(ConfigError, match="modulus"):
        Match2(modulus=0)


# --- connectivity ------------------------------------------------------------------------------
def run_connectivity(protocol, config, data, seed=0):
    """A strict per-machine run (connectivity has no batch style) that respects every limit, the
    declared fan-out and round bound, leaves its output on the first machines and follows the
    phase schedule exactly: ``R = start + P * L`` for ``1 <= P <= t_max + 3`` phases."""
    seen = [0]

    class Recording(Connectivity):
        def step(self, ctx, machine, memory, inbox):
            memory, messages = super().step(ctx, machine, memory, inbox)
            seen.append(len(list(messages)))
            return memory, messages

    run = Simulator(config, mode="machine").run(Recording(**dataclasses.asdict(protocol)), data, seed=seed)
    assert max(seen) <= protocol.fanout_bound(config)
    assert run.trace.check() == [] and run.trace.max_received <= config.s
    assert run.trace.num_rounds <= protocol.rounds_bound(config)
    phases, rest = divmod(run.trace.num_rounds - protocol.start_round(config), protocol.phase_length(config))
    assert rest == 0 and 1 <= phases <= protocol.phase_budget(config) + 3
    sizes, s, out = run.state.sizes(), config.s, run.output.size
    assert sizes.tolist() == [min(s, out - i * s) for i in range(-(-out // s))] + [0] * (sizes.size - -(-out // s))
    return run


def connectivity_phases(protocol, config, run):
    return (run.trace.num_rounds - protocol.start_round(config)) // protocol.phase_length(config)


@pytest.mark.parametrize("case", select("connectivity"))
def test_connectivity_follows_its_phase_schedule_and_matches_networkx_on_the_case_table(case):
    protocol, config = case.build()
    for data in case.data(protocol, config):
        vertices = protocol.vertex_count(data.size)
        run = run_connectivity(protocol, config, data, seed=case.seed)
        expected = networkx_labels(data, vertices)
        assert np.array_equal(run.output, expected)
        assert np.array_equal(components_reference(data, vertices), expected)


@pytest.mark.parametrize("finish", [True, False])
@pytest.mark.parametrize("vertices", [16, 64, 256])
def test_connectivity_contracts_long_paths_in_logarithmically_many_phases(vertices, finish):
    """Random ids defeat plain label propagation (about D iterations); star contraction absorbs
    every star with a neighbour star with probability >= 1/4 per phase, so P(more than t phases)
    <= V (3/4)^t: these seeded runs stay below the t where that bound is 1e-3."""
    data = path_edges(np.random.default_rng(vertices).permutation(vertices))
    protocol = Connectivity(vertices=vertices, finish=finish)
    config = protocol.default_config(data.size, 0.5)
    run = run_connectivity(protocol, config, data)
    assert np.array_equal(run.output, np.zeros(vertices, dtype=np.int64))
    assert graph_diameter(data, vertices) == vertices - 1
    phases = connectivity_phases(protocol, config, run)
    assert phases <= np.log(vertices / 1e-3) / np.log(4 / 3) + 3
    if vertices >= 64:
        assert phases < (vertices - 1) / 3


def test_connectivity_star_hot_spot_stays_within_limits_at_the_smallest_config():
    """A centre of degree 299: its arcs fill several arc buckets, its star every record bucket."""
    vertices = 300
    data = np.c_[np.full(vertices - 1, 0), np.arange(1, vertices)].ravel()
    protocol = Connectivity(vertices=vertices)
    config = protocol.default_config(data.size, 0.5)
    run = run_connectivity(protocol, config, data)
    assert np.array_equal(run.output, np.zeros(vertices, dtype=np.int64))


def test_connectivity_hot_spot_with_large_ids_and_a_giant_star():
    """Centre V-1 of degree V-1 plus a second component: the records of one root span buckets."""
    vertices = 1200
    data = np.r_[np.c_[np.full(999, 999), np.arange(999)].ravel(), path_edges(np.arange(1000, 1200))]
    for finish in (True, False):
        protocol = Connectivity(vertices=vertices, finish=finish)
        config = protocol.default_config(data.size, 0.5)
        run = run_connectivity(protocol, config, data, seed=4)
        assert np.array_equal(run.output, networkx_labels(data, vertices))


@settings(max_examples=25, deadline=None)
@given(data=st.integers(1, 20).flatmap(lambda v: st.tuples(
    st.just(v), st.lists(st.tuples(st.integers(0, v - 1), st.integers(0, v - 1)), min_size=1, max_size=25))),
    seed=st.integers(0, 2**32 - 1), finish=st.booleans())
def test_connectivity_matches_networkx_on_random_edge_lists(data, seed, finish):
    """Small graphs FINISH at once (all joining pairs fit s / 2): finish=False runs the coin
    hooking to the end on the same inputs."""
    vertices, edges = data
    words = np.array(edges, dtype=np.int64).ravel()
    protocol = Connectivity(vertices=vertices, finish=finish)
    run = run_connectivity(protocol, protocol.default_config(words.size, 0.5), words, seed=seed)
    assert np.array_equal(run.output, networkx_labels(words, vertices))


def test_connectivity_is_deterministic_per_seed_and_its_coins_depend_on_the_seed():
    protocol = Connectivity(vertices=60)
    config = protocol.default_config(120, 0.5)
    data = protocol.generate_input(config, seed=1)
    first, again = (Simulator(config).run(protocol, data, seed=3) for _ in range(2))
    assert np.array_equal(first.output, again.output) and first.trace.counts() == again.trace.counts()
    others = [Simulator(config).run(protocol, data, seed=seed) for seed in range(4, 8)]
    assert all(np.array_equal(other.output, first.output) for other in others)
    assert len({other.trace.counts() for other in others + [first]}) > 1   # the coins do change the run


def _sweep(sizes, seeds):
    """Measured phases and rounds of generated inputs (V = n / 2) at eps = 0.5."""
    rows = []
    for n in sizes:
        protocol = Connectivity()
        config = protocol.default_config(n, 0.5)
        data = protocol.generate_input(config, seed=0)
        runs = [run_connectivity(protocol, config, data, seed=seed) for seed in seeds]
        assert all(np.array_equal(run.output, components_reference(data, n // 2)) for run in runs)
        rounds = np.mean([run.trace.num_rounds for run in runs])
        phases = np.mean([connectivity_phases(protocol, config, run) for run in runs])
        rows.append((n, rounds, phases, protocol.phase_length(config), protocol.rounds_bound(config)))
    return rows


def _check_logarithmic(rows, per_doubling):
    """Rounds fit ``a + b log2 n`` with a positive slope of at most ``per_doubling`` rounds per
    doubling of n; phase lengths stay constant (7 at eps = 0.5); every run is within its bound."""
    logs = np.log2([row[0] for row in rows])
    rounds = np.array([row[1] for row in rows])
    slope, intercept = np.polyfit(logs, rounds, 1)
    assert 0 < slope <= per_doubling, (slope, rows)
    assert {row[3] for row in rows} == {7}
    assert all(row[1] <= row[4] for row in rows)
    return slope, intercept


def test_connectivity_rounds_grow_linearly_in_log_n_small_sweep():
    rows = _sweep([2**k for k in range(6, 13, 2)], seeds=range(2))
    _check_logarithmic(rows, per_doubling=3 * 7)     # at most 3 phases of 7 rounds per doubling


@pytest.mark.slow
def test_connectivity_rounds_grow_linearly_in_log_n_up_to_2_20():
    rows = _sweep([2**k for k in range(10, 21, 2)], seeds=[0])
    _check_logarithmic(rows, per_doubling=3 * 7)
    assert rows[-1][1] <= 300, rows


def test_connectivity_refuses_what_it_cannot_run():
    with pytest.raises(ConfigError, match="odd"):
        Connectivity(vertices=3).check_config(MPCConfig(n=5, eps=0.5, memory_factor=20))
    with pytest.raises(ConfigError, match="s >= 16"):
        Connectivity(vertices=3).check_config(MPCConfig(n=100, eps=0.5))
    with pytest.raises(ConfigError, match="machines"):
        Connectivity().check_config(MPCConfig(n=4096, eps=0.5, memory_factor=20, machines_factor=0.1))
    with pytest.raises(ConfigError, match="vertices"):
        Connectivity(vertices=0)
    protocol = Connectivity(vertices=3)
    with pytest.raises(InputError, match="vertex 3, outside 0 .. 2"):
        Simulator(protocol.default_config(4, 0.5)).run(protocol, np.array([0, 1, 3, 2]))


def test_connectivity_sort_plans_keep_their_failure_bound_and_refuse_tiny_memory():
    plan = sort_plan(2**20, 4000, 16000, 1e-12, leaves=300)
    assert not isinstance(plan, str) and plan.failure <= 1e-12 and plan.buckets * plan.cap >= 2**20
    assert plan.probability * 2**20 < 16000                     # the leader's expected load fits
    assert sort_plan(500, 500, 2000, 1e-9).trivial
    assert "s = 400 is too small" in sort_plan(2**20, 100, 400, 1e-9)
    assert "leader" in sort_plan(2**20, 2000, 4000, 1e-9)


def test_connectivity_finish_cuts_the_tail_of_phases():
    """With FINISH the runs end a few phases after the joining pairs fit s / 2; without it the
    last pairs of stars merge with probability 1/2 per phase (a geometric tail)."""
    n = 2**12
    config = Connectivity().default_config(n, 0.5)
    data = Connectivity().generate_input(config, seed=2)
    phases = {}
    for finish in (True, False):
        protocol = Connectivity(finish=finish)
        runs = [run_connectivity(protocol, config, data, seed=seed) for seed in range(2)]
        assert all(np.array_equal(run.output, components_reference(data, n // 2)) for run in runs)
        phases[finish] = np.mean([connectivity_phases(protocol, config, run) for run in runs])
    assert phases[True] < phases[False]


def test_connectivity_states_its_round_formula():
    protocol = Connectivity()
    config = protocol.default_config(2**12, 0.5)
    formula = protocol.rounds_formula(config)
    assert formula.startswith("start + (t_max + 3) x L") and str(protocol.rounds_bound(config)) in formula
    assert protocol.rounds_bound(config) == (protocol.start_round(config)
                                             + (protocol.phase_budget(config) + 3) * protocol.phase_length(config))


def test_graph_diameter_is_the_largest_component_diameter():
    assert graph_diameter(np.r_[path_edges(np.arange(5)), 6, 7], 9) == 4
    assert graph_diameter(np.array([0, 0]), 3) == 0


def test_connectivity_defaults_to_as_many_vertices_as_edges():
    protocol = Connectivity()
    config = protocol.default_config(24, 0.5)
    data = protocol.generate_input(config, seed=0)
    assert protocol.vertex_count(24) == 12 and data.max() < 12
    run = run_connectivity(protocol, config, data)
    assert np.array_equal(run.output, networkx_labels(data, 12))


def test_catalog_names_build_these_protocols():
    assert make_protocol("khop", k=3) == KHop(k=3)
    assert make_protocol("match2", modulus=5) == Match2(modulus=5)
    assert make_protocol("connectivity", vertices=4) == Connectivity(vertices=4)
    assert (KHop(), Match2(), Connectivity()) == (KHop(k=1), Match2(modulus=37), Connectivity(vertices=None))
