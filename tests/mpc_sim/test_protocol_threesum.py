"""3-SUM by block triples: reference, local check, both styles, limits, round bound and fan-out."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpc_sim import ConfigError, InputError, MPCConfig, Simulator, make_protocol
from mpc_sim.protocols.threesum import (VALUE_BOUND, ThreeSum, cell_of_leaf, has_zero_triple, rounds_limit,
                                        three_sum_reference)
from tests.strategies.cases import select


def bruteforce(values) -> int:
    """Straight from the definition: some i < j < k with x_i + x_j + x_k = 0 (Python integers)."""
    xs = [int(v) for v in values]
    return int(any(a + b + c == 0 for a, b, c in itertools.combinations(xs, 3)))


def run_both(protocol, config, data, seed=0):
    """Batch and per-machine runs agree exactly and respect every limit; returns the batch run."""
    batch = Simulator(config, mode="batch").run(protocol, data, seed=seed)
    machine = Simulator(config, mode="machine").run(protocol, data, seed=seed)
    assert np.array_equal(batch.output, machine.output)
    assert batch.trace.counts() == machine.trace.counts()
    assert batch.trace.check() == []
    assert [m.tolist() for m in batch.state.to_list()] == [m.tolist() for m in machine.state.to_list()]
    return batch


# the cases (explicit values: duplicates, zeros, extremes, too short; generated inputs at several
# configs) are in the shared table, whose stages (tests/test_stages.py) run both styles, the
# reference, every limit and the exact round bound
@pytest.mark.parametrize("case", select("threesum"))
def test_reference_and_local_check_match_the_definition_on_the_case_table(case):
    protocol, config = case.build()
    for x in case.data(protocol, config):
        values = x.tolist()
        assert three_sum_reference(x) == bruteforce(values) == int(has_zero_triple(x))
        assert protocol.reference(x).tolist() == [bruteforce(values)]


@given(st.lists(st.integers(-12, 12), max_size=14))
def test_reference_and_local_check_match_bruteforce_on_random_small_values(values):
    x = np.array(values, dtype=np.int64)
    assert three_sum_reference(x) == bruteforce(values) == int(has_zero_triple(x))


def test_every_cell_receives_exactly_its_distinct_blocks():
    for g in range(1, 9):
        received: dict[int, list[int]] = {}
        for block in range(g):
            for cell in cell_of_leaf(block, np.arange(g * (g + 1) // 2)).tolist():
                received.setdefault(cell, []).append(block)
        cells = list(itertools.combinations_with_replacement(range(g), 3))
        assert sorted(received) == list(range(len(cells)))
        by_rank = {int(cell_of_leaf(t[0], [t[1] + (t[2] + 1) * t[2] // 2])[0]): t for t in cells}
        for cell, blocks in received.items():
            assert sorted(blocks) == sorted(set(by_rank[cell]))


@given(st.lists(st.integers(-30, 30), min_size=1, max_size=40), st.sampled_from([0.5, 0.6, 0.75]))
def test_protocol_matches_bruteforce_on_random_dense_inputs(values, eps):
    protocol = ThreeSum()
    data = np.array(values, dtype=np.int64)
    config = protocol.default_config(data.size, eps)
    run = run_both(protocol, config, data)
    assert run.output.tolist() == [bruteforce(values)]


def test_planted_and_triple_free_instances_at_a_larger_size():
    protocol = ThreeSum()
    config = protocol.default_config(600, 0.6)
    rng = np.random.default_rng(5)
    free = rng.integers(1, 10**12, size=600)          # all positive: no triple sums to 0
    planted = free.copy()
    planted[[3, 300, 599]] = (-7, 2, 5)
    for data, expected in ((free, 0), (planted, 1)):
        run = Simulator(config, mode="batch").run(protocol, data)
        assert run.output.tolist() == [expected] == [three_sum_reference(data)]
        assert run.trace.check() == []


class _CountingThreeSum(ThreeSum):
    """Records the largest number of messages any machine sends in a round."""

    def __init__(self):
        object.__setattr__(self, "widest", 0)

    def step(self, ctx, machine, memory, inbox):
        memory, messages = super().step(ctx, machine, memory, inbox)
        object.__setattr__(self, "widest", max(self.widest, len(messages)))
        return memory, messages


@pytest.mark.parametrize("n,eps", [(30, 0.5), (100, 0.6), (150, 0.75)])
def test_fanout_never_exceeds_the_declared_bound(n, eps):
    protocol = _CountingThreeSum()
    config = protocol.default_config(n, eps)
    Simulator(config, mode="machine").run(protocol, protocol.generate_input(config, seed=1))
    assert 2 <= protocol.widest <= protocol.fanout_bound(config)


@pytest.mark.parametrize("eps", [0.52, 0.55, 0.6, 0.75, 0.9])
def test_rounds_stay_below_the_n_independent_limit(eps):
    protocol = ThreeSum()
    rounds = [protocol.rounds_bound(protocol.default_config(2**e, eps)) for e in range(1, 61)]
    rounds += [protocol.rounds_bound(protocol.default_config(n, eps)) for n in range(2, 600)]
    assert max(rounds) <= rounds_limit(eps)


def test_width_parameters_grow_with_n_as_documented():
    protocol = ThreeSum()
    small, large = (protocol.plan(protocol.default_config(n, 0.75)) for n in (2**10, 2**20))
    assert small.block == 32 and large.block == 1024                 # b = ceil(sqrt n)
    assert large.arity / small.arity == pytest.approx(2**2.5, rel=0.1)  # f ~ 4 n^(eps - 1/2)
    assert large.cells == (large.blocks + 2) * (large.blocks + 1) * large.blocks // 6


def test_registered_in_the_catalog():
    assert isinstance(make_protocol("threesum"), ThreeSum)


def test_bad_configs_and_inputs_are_refused_with_clear_errors():
    protocol = ThreeSum()
    with pytest.raises(ConfigError, match="s >= 3"):
        protocol.check_config(MPCConfig(n=4, eps=0.5))
    with pytest.raises(ConfigError, match="machines"):
        protocol.check_config(MPCConfig(n=100, eps=0.6, memory_factor=4))
    with pytest.raises(ConfigError, match="1/2 < eps"):
        rounds_limit(0.5)
    config = protocol.default_config(5, 0.6)
    with pytest.raises(InputError, match="2\\*\\*61"):
        Simulator(config).run(protocol, np.array([1, 2, VALUE_BOUND + 1, 0, 0]))
    with pytest.raises(InputError, match="2\\*\\*61"):
        Simulator(config).run(protocol, np.array([1, 2, np.iinfo(np.int64).min, 0, 0]))


def test_leaf_pairs_are_unranked_exactly_at_large_indices():
    from mpc_sim.protocols.threesum import _pair_of_leaf

    u = np.r_[np.arange(2000), np.random.default_rng(0).integers(0, 2**50, size=5000)]
    j, k = _pair_of_leaf(u)
    assert ((0 <= j) & (j <= k)).all()
    assert np.array_equal(j + k * (k + 1) // 2, u)
