"""compile_mpc: compiled ANNA-transformers reproduce the simulator exactly (EMA heads)."""
import numpy as np
import pytest
from hypothesis import given, settings

from mpc_sim import MPCConfig, Protocol, ProtocolError, Simulator
from reductions.compile import (CompileError, RoundBudgetExceeded, UnsupportedProtocol, compile_mpc)
from tests.strategies.compiled import MixingProtocol, mixing_cases


def _simulate(protocol, config, data, seed=0):
    return Simulator(config, mode="machine").run(protocol, data, seed=seed)


def _same_words(a, b):
    return np.array_equal(np.asarray(a).view(np.int64), np.asarray(b).view(np.int64))


CASES = [
    (MixingProtocol(rounds=2, fanout=1), MPCConfig(n=16, eps=0.5, memory_factor=2)),
    (MixingProtocol(rounds=3, fanout=2, salt=5), MPCConfig(n=36, eps=0.5, memory_factor=2)),
    (MixingProtocol(rounds=1, fanout=3, salt=9), MPCConfig(n=40, eps=0.6, memory_factor=3)),
    (MixingProtocol(rounds=0, fanout=1), MPCConfig(n=9, eps=0.5, memory_factor=2)),
]


@pytest.mark.parametrize("layout", ["hashed", "disjunct"])
@pytest.mark.parametrize("protocol,config", CASES)
def test_compiled_model_reproduces_the_simulator_output_exactly(protocol, config, layout):
    data = np.random.default_rng(1).integers(-2**63, 2**63 - 1, size=config.n)
    model = compile_mpc(protocol, config, layout=layout)
    expected = _simulate(protocol, config, data)
    assert _same_words(model(data), expected.output)


@given(case=mixing_cases())
@settings(max_examples=15)
def test_random_protocols_compile_and_reproduce_the_simulator(case):
    protocol, config, data = case
    model = compile_mpc(protocol, config)
    assert _same_words(model(data), _simulate(protocol, config, data).output)


@pytest.mark.parametrize("protocol,config", CASES)
def test_depth_equals_rounds_when_alpha_covers_the_fanout(protocol, config):
    data = np.arange(config.n)
    rounds = _simulate(protocol, config, data).trace.num_rounds
    model = compile_mpc(protocol, config, rounds=rounds)
    report = model.report
    assert report.depth == rounds and report.depth_constant == 0
    assert len(model.transformer.layers) == rounds
    assert report.heads_per_layer == protocol.fanout + 1      # alpha routing heads + the global head
    assert report.width == report.m * report.heads_per_layer


def test_smaller_alpha_spreads_a_round_over_ceil_fanout_over_alpha_layers():
    protocol, config = MixingProtocol(rounds=2, fanout=3, salt=1), MPCConfig(n=40, eps=0.6, memory_factor=3)
    data = np.arange(config.n)
    model = compile_mpc(protocol, config, alpha=2)
    assert model.report.layers_per_round == 2 and model.report.depth == 4
    assert _same_words(model(data), _simulate(protocol, config, data).output)


def test_a_budget_larger_than_the_rounds_used_leaves_idle_layers_and_the_same_output():
    protocol, config = MixingProtocol(rounds=1, fanout=2), MPCConfig(n=25, eps=0.5, memory_factor=2)
    data = np.arange(config.n)
    model = compile_mpc(protocol, config, rounds=5)
    assert model.report.depth == 5
    assert _same_words(model(data), _simulate(protocol, config, data).output)


def test_too_small_a_budget_is_detected_not_returned_wrong():
    protocol, config = MixingProtocol(rounds=3, fanout=1), MPCConfig(n=16, eps=0.5, memory_factor=2)
    with pytest.raises(RoundBudgetExceeded, match="more rounds"):
        compile_mpc(protocol, config, rounds=2)(np.arange(16))


def test_layer_trace_lines_up_with_the_simulator_rounds():
    protocol, config = MixingProtocol(rounds=3, fanout=2, salt=3), MPCConfig(n=36, eps=0.5, memory_factor=2)
    data = np.arange(config.n)
    model = compile_mpc(protocol, config)
    alignment = model.align(data)
    assert alignment.all_match
    assert [row[1] for row in alignment.rows] == [1, 2, 3, 4]
    assert all(row[2] == config.machines for row in alignment.rows)


def test_an_unsupported_protocol_is_refused_with_every_reason():
    class BatchOnly(Protocol):
        name = "batch-only"

        def batch_step(self, ctx, state, delivery):
            raise AssertionError("never run")

    with pytest.raises(UnsupportedProtocol) as info:
        compile_mpc(BatchOnly(), MPCConfig(n=16, eps=0.5), alpha=0)
    reasons = info.value.reasons
    assert any("per-machine step" in r for r in reasons)
    assert any("rounds_bound" in r for r in reasons)
    assert any("alpha" in r for r in reasons)
    with pytest.raises(UnsupportedProtocol, match="not an mpc_sim Protocol"):
        compile_mpc(object(), MPCConfig(n=16, eps=0.5))


def test_exceeding_the_declared_fanout_is_an_error_not_a_silent_drop():
    class Liar(MixingProtocol):
        def fanout_bound(self, config):
            return 1

    protocol, config = Liar(rounds=1, fanout=2), MPCConfig(n=25, eps=0.5, memory_factor=2)
    with pytest.raises(CompileError, match="fan-out bound"):
        compile_mpc(protocol, config)(np.arange(25))


def test_lsh_heads_succeed_at_least_as_often_as_theorem_3_4_promises_and_are_exact_when_they_do():
    from anna.lsh import Hyperplane, theory_parameters
    from reductions.compile import DecodeError
    from reductions.compile.layers import ID_FAR, ID_NEAR

    protocol, config = MixingProtocol(rounds=2, fanout=2, salt=2), MPCConfig(n=36, eps=0.5, memory_factor=2)
    data = np.arange(config.n)
    expected = _simulate(protocol, config, data).output
    from reductions.compile import id_lsh

    params = theory_parameters(config.machines, ID_NEAR, ID_FAR / ID_NEAR, Hyperplane())
    choice = id_lsh(config.machines, mode="theorem-3.4")
    assert (choice.lsh.z, choice.lsh.ell) == (params.z, params.ell)
    # every head hashes with the same tables: one run fails with probability at most eta
    eta_run = min(1.0, params.eta_bound)
    seeds = range(8)
    successes = 0
    for seed in seeds:
        model = compile_mpc(protocol, config, attention="anna", lsh=choice, hash_seed=seed)
        assert model.report.lsh_mode == "theorem-3.4"
        try:
            out = model(data)
        except DecodeError:
            continue
        assert _same_words(out, expected)
        successes += 1
    assert successes / len(seeds) >= 1.0 - eta_run - 1e-12


def test_too_few_tables_make_lsh_routing_fail_loudly_never_silently():
    from anna.lsh import Hyperplane, LSHConfig
    from reductions.compile import DecodeError

    protocol, config = MixingProtocol(rounds=2, fanout=2, salt=4), MPCConfig(n=36, eps=0.5, memory_factor=2)
    data = np.arange(config.n)
    expected = _simulate(protocol, config, data).output
    outcomes = []
    for seed in range(6):
        model = compile_mpc(protocol, config, attention="anna", lsh=LSHConfig(Hyperplane(), z=1, ell=1), hash_seed=seed)
        try:
            outcomes.append(_same_words(model(data), expected))
        except DecodeError:
            outcomes.append("detected")
    assert "detected" in outcomes          # one hyperplane per table: far ids collide half the time
    assert False not in outcomes           # and a wrong output is never returned


def test_dense_softmax_heads_with_a_null_token_route_exactly_too():
    protocol, config = MixingProtocol(rounds=2, fanout=2, salt=6), MPCConfig(n=36, eps=0.5, memory_factor=2)
    data = np.arange(config.n)
    model = compile_mpc(protocol, config, attention="softmax")
    assert model.report.tokens == config.machines + 1
    assert _same_words(model(data), _simulate(protocol, config, data).output)
    assert model.align(data).all_match


class _FloatWords(MixingProtocol):
    """MixingProtocol whose round-``bad_round`` step returns non-integral floats as ``where``."""

    def __init__(self, where: str, bad_round: int):
        super().__init__(rounds=2, fanout=1)
        object.__setattr__(self, "where", where)
        object.__setattr__(self, "bad_round", bad_round)

    def step(self, ctx, machine, memory, inbox):
        memory, messages = super().step(ctx, machine, memory, inbox)
        if ctx.round == self.bad_round and machine == 3:
            if self.where == "memory":
                memory = memory.astype(np.float64) + 0.5
            elif self.where == "payload":
                messages = [(dst, payload.astype(np.float64) + 0.5) for dst, payload in messages]
            else:
                raise ArithmeticError("the step itself failed")
        return memory, messages


@pytest.mark.parametrize("engine", ["dense", "lean"])
@pytest.mark.parametrize("bad_round", [1, 2])
@pytest.mark.parametrize("where", ["memory", "payload", "raise"])
def test_a_step_returning_non_integral_floats_raises_the_simulators_typed_error_in_every_engine(where, bad_round,
                                                                                                  engine):
    protocol, config = _FloatWords(where, bad_round), MPCConfig(n=16, eps=0.5, memory_factor=2)
    data = np.arange(16)
    with pytest.raises(ProtocolError) as simulated:
        Simulator(config, mode="machine").run(protocol, data)
    with pytest.raises(ProtocolError) as compiled:
        compile_mpc(protocol, config).run(data, engine=engine, local="machine")
    assert type(compiled.value) is type(simulated.value)
    assert str(compiled.value) == str(simulated.value)
    assert "machine 3" in str(simulated.value) and f"round {bad_round}" in str(simulated.value)
