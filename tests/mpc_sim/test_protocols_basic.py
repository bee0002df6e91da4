"""The basic protocol library: broadcast, aggregate, prefix sums, sample sort.

Outputs equal plain numpy references on the shared case table (tests/strategies/cases.py, run at
every stage by tests/test_stages.py) and here on hypothesis inputs; the per-machine and batch styles
agree exactly (counts, outputs, final memories); rounds equal the declared formulas (recomputed here
independently); every limit holds in strict mode; outputs sit on the first machines; configs a
protocol cannot run in are refused with a ConfigError (the table's refusals); the sort's
failure bound is an upper bound, and an overflow is a typed limit error, never a wrong output.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, event, given
from hypothesis import strategies as st

from mpc_sim import ConfigError, LimitExceeded, MPCConfig, Simulator
from mpc_sim.protocols import make_protocol
from mpc_sim.protocols.toolkit import RadixTree, tree_depth
from mpc_sim.protocols.aggregate import Aggregate
from mpc_sim.protocols.broadcast import Broadcast
from mpc_sim.protocols.prefix_sum import PrefixSum
from mpc_sim.protocols.sample_sort import (SampleSort, SortPlan, _to_buckets_kernel, bucket_ids, overflow_bound,
                                           sample_positions)
from tests.strategies.cases import BASIC, grid_config, make_input, select

INT64 = np.iinfo(np.int64)
# the basic protocols of the shared case table, by id
PROTOCOLS = {pid: make_protocol(name, **params) for pid, (name, params) in BASIC.items()}


def expected_layout(protocol, config: MPCConfig, n_out: int) -> np.ndarray:
    """Words per machine at the end: the output ``s`` per machine on the first machines (every
    machine holds the value for broadcast)."""
    if isinstance(protocol, Broadcast):
        return np.full(config.machines, protocol.width)
    sizes = np.zeros(config.machines, dtype=np.int64)
    full, rest = divmod(n_out, config.s)
    sizes[:full] = config.s
    if rest:
        sizes[full] = rest
    return sizes


def independent_rounds(protocol, config: MPCConfig) -> int:
    """The round formulas of the module docstrings, recomputed with plain integer arithmetic."""
    def smallest_power(base: int, target: int) -> int:
        r = 0
        while base ** r < target:
            r += 1
        return r

    inputs = -(-config.n // config.s)
    if isinstance(protocol, Broadcast):
        return smallest_power(config.s // protocol.width + 1, config.machines)
    if isinstance(protocol, Aggregate):
        return smallest_power(max(config.s, 2), inputs)
    if isinstance(protocol, PrefixSum):
        return 2 * smallest_power(max(config.s, 2), inputs)
    plan = protocol.plan(config)
    if config.n <= config.s:
        return 0
    leaves = max(-(-config.n // plan.load), inputs + 1)
    return 5 + smallest_power(config.s // (2 * (plan.buckets - 1)) + 1, leaves)


# --------------------------------------------------------------------------------------------------
# The shared case table (tests/strategies/cases.py): its stages run in tests/test_stages.py
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", [p for p in select(*sorted({name for name, _ in BASIC.values()}))
                                  if not p.values[0].refused])
def test_declared_rounds_equal_the_formulas_recomputed_independently(case):
    protocol, config = case.build()
    assert protocol.rounds_bound(config) == independent_rounds(protocol, config)


def test_the_eps_0_2_case_runs_in_the_per_machine_style_too():
    config = grid_config("eps=0.2")                         # 1821 machines, 834 input machines
    for protocol in (Aggregate("min"), PrefixSum(), Broadcast()):
        data = make_input("random", config.n, seed=2)
        by_machine = Simulator(config, mode="machine").run(protocol, data)
        by_batch = Simulator(config, mode="batch").run(protocol, data)
        assert by_machine.trace.counts() == by_batch.trace.counts()
        assert np.array_equal(by_machine.output, protocol.reference(data))


@pytest.mark.parametrize("pid", list(PROTOCOLS))
def test_same_seed_gives_identical_runs(pid):
    protocol, config = PROTOCOLS[pid], grid_config("sort-eps.75")
    data = make_input("duplicates", config.n)
    a = Simulator(config).run(protocol, data, seed=5)
    b = Simulator(config).run(protocol, data, seed=5)
    assert a.trace.counts() == b.trace.counts() and a.state.equals(b.state)
    assert np.array_equal(a.output, b.output)


def test_sort_output_is_the_same_whatever_the_seed_while_its_traffic_is_not():
    config = grid_config("sort-3000")
    data = make_input("duplicates", config.n)
    runs = [Simulator(config).run(SampleSort(), data, seed=seed) for seed in range(4)]
    for run in runs:
        assert np.array_equal(run.output, np.sort(data)) and run.trace.check() == []
    assert len({run.trace.counts() for run in runs}) > 1      # the sample does depend on the seed


# --------------------------------------------------------------------------------------------------
# Hypothesis: random configs and inputs, both styles against the reference
# --------------------------------------------------------------------------------------------------
@st.composite
def runnable(draw, protocol, max_n=1000, memory_factors=(1.0, 1.5, 2.0, 4.0), eps_values=(0.2, 0.3, 0.5, 0.75, 0.9)):
    n = draw(st.integers(1, max_n) | st.integers(max_n // 3, max_n))      # not only tiny inputs
    config = MPCConfig(n=n, eps=draw(st.sampled_from(eps_values)), gamma=draw(st.sampled_from([0.0, 0.0, 0.1])),
                       memory_factor=draw(st.sampled_from(memory_factors)),
                       machines_factor=draw(st.sampled_from([1.0, 1.5, 2.0, 4.0])))
    try:
        protocol.check_config(config)
    except ConfigError:
        assume(False)
    values = draw(st.sampled_from(["wide", "narrow", "extreme"]))
    if values == "extreme":
        elements = st.sampled_from([INT64.min, INT64.min + 1, -1, 0, 1, INT64.max - 1, INT64.max])
    else:
        elements = st.integers(INT64.min, INT64.max) if values == "wide" else st.integers(-2, 2)
    data = np.array(draw(st.lists(elements, min_size=n, max_size=n)), dtype=np.int64)
    return config, data


def check_both_styles(protocol, config, data, seed):
    by_machine = Simulator(config, mode="machine").run(protocol, data, seed=seed)
    by_batch = Simulator(config, mode="batch").run(protocol, data, seed=seed)
    event(f"{by_batch.trace.num_rounds} rounds")
    expected = protocol.reference(data)
    assert np.array_equal(by_batch.output, expected)
    assert np.array_equal(by_machine.output, expected)
    assert by_machine.trace.counts() == by_batch.trace.counts()
    assert by_machine.state.equals(by_batch.state)
    assert by_batch.trace.check() == []
    assert by_batch.trace.num_rounds == protocol.rounds_bound(config)
    assert np.array_equal(by_batch.state.sizes(), expected_layout(protocol, config, expected.shape[0]))


@given(st.data(), st.integers(1, 4), st.integers(0, 2**32))
def test_broadcast_matches_reference_on_random_inputs(data, width, seed):
    protocol = Broadcast(width=width)
    check_both_styles(protocol, *data.draw(runnable(protocol)), seed)


@given(st.data(), st.sampled_from(["sum", "min", "max"]), st.integers(0, 2**32))
def test_aggregate_matches_reference_on_random_inputs(data, op, seed):
    protocol = Aggregate(op)
    check_both_styles(protocol, *data.draw(runnable(protocol)), seed)


@given(st.data(), st.integers(0, 2**32))
def test_prefix_sum_matches_reference_on_random_inputs(data, seed):
    protocol = PrefixSum()
    check_both_styles(protocol, *data.draw(runnable(protocol)), seed)


@given(st.data(), st.integers(0, 2**32))
def test_sort_matches_reference_on_random_inputs(data, seed):
    protocol = SampleSort()
    config, values = data.draw(runnable(protocol, max_n=1500, memory_factors=(6.0, 8.0, 12.0),
                                        eps_values=(0.5, 0.6, 0.75)))
    check_both_styles(protocol, config, values, seed)


# --------------------------------------------------------------------------------------------------
# Refusals, requirements, defaults
# --------------------------------------------------------------------------------------------------
def test_refusals_name_what_is_missing():
    with pytest.raises(ConfigError, match="memory_factor >= "):
        SampleSort().check_config(MPCConfig(n=10**6, eps=0.5, memory_factor=2))
    with pytest.raises(ConfigError, match="empty helper machine"):
        PrefixSum().check_config(MPCConfig(n=2**16, eps=0.5))
    with pytest.raises(ConfigError, match="s >= 2"):
        Aggregate().check_config(grid_config("s=1"))
    with pytest.raises(ConfigError, match="width"):
        Broadcast(width=5).check_config(MPCConfig(n=16, eps=0.5))
    for bad in (lambda: Broadcast(width=0), lambda: Aggregate("mean"), lambda: SampleSort(max_failure=0.0)):
        with pytest.raises(ValueError):
            bad()


@pytest.mark.parametrize("name", ["broadcast", "aggregate", "prefix-sum", "sort"])
@pytest.mark.parametrize("eps", [0.3, 0.5, 0.75])
def test_default_configs_are_accepted_at_the_cli_sizes(name, eps):
    protocol = make_protocol(name)
    for n in (2**10, 2**16, 2**20):
        config = protocol.default_config(n, eps)
        protocol.check_config(config)
        assert protocol.rounds_bound(config) >= 0


def test_sort_default_config_at_eps_one_half_needs_memory_factor_8_up_to_ten_million():
    for n in (10**5, 10**6, 10**7):
        config = SampleSort().default_config(n, 0.5)
        assert config.memory_factor <= 8.0
        assert SampleSort().plan(config).failure_bound <= 1e-9


@pytest.mark.parametrize("name", ["broadcast", "aggregate", "prefix-sum", "sort"])
def test_generated_inputs_are_deterministic_words_of_the_right_size(name):
    protocol = make_protocol(name)
    config = grid_config("sort-eps.75")
    a, b = protocol.generate_input(config, seed=4), protocol.generate_input(config, seed=4)
    assert a.dtype == np.int64 and a.shape == (config.n,) and np.array_equal(a, b)
    assert not np.array_equal(a, protocol.generate_input(config, seed=5))


# --------------------------------------------------------------------------------------------------
# The sort's probabilistic guarantee
# --------------------------------------------------------------------------------------------------
OVERFLOWING = MPCConfig(n=190, eps=0.5, memory_factor=7.25, machines_factor=0.2)   # s = 100, 3 machines: 2 buckets


def test_sort_refuses_a_config_where_overflow_is_likely():
    with pytest.raises(ConfigError, match="overflows"):
        SampleSort().check_config(OVERFLOWING)
    assert SampleSort(max_failure=1.0).plan(OVERFLOWING).buckets == 2


def test_sort_overflow_is_a_typed_limit_error_in_both_styles_never_a_wrong_output():
    protocol = SampleSort(max_failure=1.0)
    data = make_input("random", OVERFLOWING.n)
    outcomes = []
    for seed in range(12):
        errors = []
        for mode in ("machine", "batch"):
            try:
                result = Simulator(OVERFLOWING, mode=mode).run(protocol, data, seed=seed)
            except LimitExceeded as exc:
                errors.append((type(exc), exc.round, exc.machine, exc.observed))
            else:
                assert np.array_equal(result.output, np.sort(data))
                errors.append(None)
        assert errors[0] == errors[1]                          # the same seeds fail, in the same way
        outcomes.append(errors[0] is None)
    assert any(outcomes) and not all(outcomes)


def _max_bucket(plan: SortPlan, data: np.ndarray, seed: int) -> int:
    """The largest bucket the protocol's sampling and splitters produce (no simulation)."""
    splitters = SampleSort._splitters(plan, data[sample_positions(plan.n, plan.samples, seed)], seed)
    count = plan.buckets - 1
    buckets = bucket_ids(data, np.arange(plan.n), splitters[:count], splitters[count:], plan.n)
    return int(np.bincount(buckets, minlength=plan.buckets).max())


@pytest.mark.parametrize("kind", ["random", "duplicates", "sorted", "constant"])
def test_sort_failure_bound_is_an_upper_bound_on_the_overflow_frequency(kind):
    n, s, buckets, spacing = 5000, 300, 101, 2             # a plan whose bound is far from 0
    plan = SortPlan(n=n, s=s, machines=120, buckets=buckets, spacing=spacing, load=s - 2 * (buckets - 1),
                    tree_degree=2, failure_bound=overflow_bound(n, s - 1, buckets * spacing, spacing))
    assert 0.5 < plan.failure_bound < 1
    data = make_input(kind, n, seed=9)
    largest = np.array([_max_bucket(plan, data, seed) for seed in range(300)])
    overflows = np.mean(largest > s - 1)
    assert overflows <= plan.failure_bound + 3 * math.sqrt(plan.failure_bound / 300)
    if kind == "random":       # the tail is real: buckets reach several times their mean n / k ~ 50
        assert largest.max() > 0.8 * (s - 1)


def test_sort_plans_respect_their_failure_target_and_memory():
    for n, eps, a, b in [(10**6, 0.5, 8, 1), (10**7, 0.5, 8, 1), (10**5, 0.75, 1, 2), (10**6, 0.6, 3, 2)]:
        config = MPCConfig(n=n, eps=eps, memory_factor=a, machines_factor=b)
        plan = SampleSort().plan(config)
        assert plan.failure_bound <= 1e-9
        assert plan.load + plan.splitter_words <= config.s           # data + splitters fit
        assert plan.samples <= config.s                               # the leader holds the sample
        assert plan.buckets + 1 <= config.machines                    # a coordinator beyond the buckets
        assert plan.tree().leaves <= config.machines


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------
@given(st.integers(1, 3000), st.integers(2, 40))
def test_tree_depth_is_the_smallest_power_reaching_the_leaves(leaves, degree):
    depth = tree_depth(leaves, degree)
    assert degree ** depth >= leaves and (depth == 0 or degree ** (depth - 1) < leaves)


@given(st.integers(1, 500), st.integers(2, 9), st.booleans())
def test_radix_tree_links_connect_every_node_to_its_parent_once(leaves, degree, helpers):
    tree = RadixTree(leaves, degree, first_helper=leaves if helpers else None)
    hosted = set()
    for level in range(1, tree.depth + 1):
        children, parents = tree.links(level)
        assert np.all(np.diff(children) > 0) and np.all(np.diff(parents) >= 0)
        expected = [(tree.machine(level - 1, c), tree.parent_machine(level - 1, c))
                    for c in range(tree.level_size(level - 1))
                    if helpers or c % degree != 0]
        assert list(zip(children.tolist(), parents.tolist())) == expected
        assert np.bincount(parents).max() <= (degree if helpers else degree - 1)
        for g in range(tree.level_size(level)):
            machine = int(tree.machine(level, g))
            assert tree.node_of(machine, level) == g
            if helpers:
                assert machine >= leaves and machine not in hosted
                hosted.add(machine)
    assert tree.level_size(tree.depth) == 1 and tree.machine(tree.depth, 0) == (
        leaves + tree.helper_count - 1 if helpers else 0)
    assert len(hosted) == tree.helper_count


@given(st.lists(st.integers(-3, 3), min_size=1, max_size=200), st.lists(st.integers(-3, 3), max_size=30),
       st.integers(1, 50), st.integers(0, 2**32))
def test_bucket_kernel_matches_the_numpy_bucketing_under_heavy_ties(values, splitter_values, load, seed):
    rng = np.random.default_rng(seed)
    values = np.array(values, dtype=np.int64)
    n = values.shape[0]
    positions = np.sort(rng.choice(n, size=min(len(splitter_values), n), replace=False))
    splitter_values = np.array(splitter_values[:positions.shape[0]], dtype=np.int64)
    order = np.lexsort((positions, splitter_values))
    splitter_values, positions = splitter_values[order], positions[order]
    expected = bucket_ids(values, np.arange(n), splitter_values, positions, n)
    # brute force: the number of (value, position) splitters below each element
    brute = [sum((sv, sp) < (int(v), i) for sv, sp in zip(splitter_values, positions)) for i, v in enumerate(values)]
    assert expected.tolist() == brute
    # the batch kernel: each machine's data regrouped by bucket, stably, one message per bucket
    machines = -(-n // load)
    data_len = np.clip(n - np.arange(machines) * load, 0, load)
    gaps = rng.integers(0, 3, machines)                  # data need not be contiguous in the state
    starts = (np.concatenate([[0], np.cumsum(data_len + gaps)[:-1]]) + gaps).astype(np.int64)
    words = np.full(int(starts[-1] + data_len[-1]), 99, dtype=np.int64)
    for m in range(machines):
        words[starts[m]:starts[m] + data_len[m]] = values[m * load:m * load + data_len[m]]
    grouped = np.empty(n, dtype=np.int64)
    src, dst, offsets = _to_buckets_kernel(words, starts, data_len, 0, load, splitter_values,
                                           positions.astype(np.int64), splitter_values.shape[0] + 1, grouped)
    order = np.lexsort((expected, np.arange(n) // load))            # by machine, then bucket, stably
    assert np.array_equal(grouped, values[order])
    pairs = np.unique(np.stack([np.arange(n) // load, expected]), axis=1)
    assert np.array_equal(src, pairs[0]) and np.array_equal(dst, pairs[1])
    assert offsets[0] == 0 and offsets[-1] == n
    for j in range(src.shape[0]):
        assert np.all(expected[order][offsets[j]:offsets[j + 1]] == dst[j])
    # a block of machines first.. (global ids, positions from `first`) gives that part of the messages
    first = int(rng.integers(0, machines))
    block = np.empty(int(data_len[first:].sum()), dtype=np.int64)
    bsrc, bdst, boffsets = _to_buckets_kernel(words, starts[first:], data_len[first:], first, load, splitter_values,
                                              positions.astype(np.int64), splitter_values.shape[0] + 1, block)
    tail = src >= first
    assert np.array_equal(bsrc, src[tail]) and np.array_equal(bdst, dst[tail])
    assert np.array_equal(block, grouped[first * load:])
    assert np.array_equal(boffsets[:-1], offsets[:-1][tail] - first * load) and boffsets[-1] == block.shape[0]


def test_stratified_sample_takes_one_position_per_slice():
    for n, samples in [(10, 10), (1000, 7), (999, 333), (10**6, 3000)]:
        positions = sample_positions(n, samples, seed=1)
        slices = np.arange(samples) * n // samples
        assert np.all(positions >= slices) and np.all(positions < np.append(slices[1:], n))
        assert not np.array_equal(positions, sample_positions(n, samples, seed=2)) or samples == n
