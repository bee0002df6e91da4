"""Low-rank attention as an MPC protocol (per-machine step) and, through compile_mpc, as an
ANNA-transformer (Theorem 4.4's route)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anna.transformer import init_transformer
from mpc_sim import MPCConfig, Simulator
from reductions.compile import compile_mpc
from reductions.decompile import PlanError, UnsupportedModel, run_model_protocol
from reductions.decompile.lowrank_protocol import LowRankProtocol, lowrank_plan


def _lowrank(causal=False, heads=1, dim=2, depth=2, seed=3, feature_map="elu+1", scale=1.0):
    return init_transformer(vocab_size=7, dim=dim, n_outputs=2, depth=depth, heads=heads, max_len=512,
                            kind="lowrank", causal=causal, seed=seed,
                            scale=scale).with_attention("lowrank", feature_map=feature_map)


CASES = {
    "one machine": (_lowrank(), 5, None),
    "two heads, fan-out uncapped": (_lowrank(heads=2, dim=4), 40, None),
    "binary tree, capped fan-out": (_lowrank(), 64, 2),
    "causal, fan-out 3": (_lowrank(causal=True, heads=2, dim=4), 100, 3),
    "causal, deep": (_lowrank(causal=True), 200, 2),
    "queries and keys scaled by 3": (_lowrank(causal=True, dim=4, scale=3.0), 60, 2),
    "callable feature map of rank 3": (_lowrank(feature_map=lambda x: np.exp(np.c_[x, -x[:, :1]])), 50, 2),
}


def _run(name):
    model, n, fanout = CASES[name]
    protocol = LowRankProtocol(model, fanout=fanout)
    config = protocol.default_config(n, 0.5)
    return protocol, config, run_model_protocol(protocol, protocol.generate_input(config, seed=n), config)


@pytest.mark.parametrize("name", CASES)
def test_lowrank_protocol_agrees_with_the_forward_pass_within_every_limit(name):
    _, _, run = _run(name)
    assert run.agrees, f"max scaled error {run.max_scaled_error:.3g}"
    assert run.trace.check() == []


@pytest.mark.parametrize("name", CASES)
def test_lowrank_rounds_are_input_rounds_plus_2DL_plus_one(name):
    protocol, config, run = _run(name)
    plan = protocol.plan(config)
    input_rounds = 1 if plan.fanout_cap is None else -(-plan.input_fanout() // plan.fanout_cap)
    assert run.trace.num_rounds == plan.rounds == input_rounds + 2 * plan.depth * plan.layers + 1


@pytest.mark.parametrize("name", CASES)
def test_no_machine_sends_more_messages_in_a_round_than_the_fanout_bound(name):
    protocol, config, _ = _run(name)
    counts = []
    step = protocol.step

    def counting_step(ctx, machine, memory, inbox):
        memory, messages = step(ctx, machine, memory, inbox)
        counts.append(len(messages))
        return memory, messages

    protocol.step = counting_step
    Simulator(config, mode="machine").run(protocol, protocol.generate_input(config))
    assert max(counts) == protocol.fanout_bound(config)
    if protocol.fanout is not None:
        assert max(counts) <= protocol.fanout


def test_the_tree_is_deep_where_the_case_table_says():
    protocol, config, _ = _run("causal, deep")
    plan = protocol.plan(config)
    assert plan.depth >= 3 and 2 <= plan.degree <= protocol.fanout + 1
    assert plan.degree ** plan.depth >= plan.token_machines > plan.degree ** (plan.depth - 1)


@given(causal=st.booleans(), heads=st.integers(1, 2), n=st.integers(1, 60), fanout=st.sampled_from([None, 2, 3]),
       seed=st.integers(0, 99))
@settings(max_examples=15)
def test_random_lowrank_models_agree_with_their_forward_pass(causal, heads, n, fanout, seed):
    model = _lowrank(causal=causal, heads=heads, dim=2 * heads, seed=seed)
    protocol = LowRankProtocol(model, fanout=fanout)
    config = protocol.default_config(n, 0.5)
    assert run_model_protocol(protocol, protocol.generate_input(config, seed=seed), config).agrees


@pytest.mark.parametrize("name", ["two heads, fan-out uncapped", "binary tree, capped fan-out", "causal, fan-out 3"])
def test_compiled_anna_model_reproduces_the_simulator_and_the_lowrank_model(name):
    protocol, config, _ = _run(name)
    data = protocol.generate_input(config, seed=7)
    simulated = Simulator(config, mode="machine").run(protocol, data).output
    compiled = compile_mpc(protocol, config)
    assert compiled.report.depth == protocol.rounds_bound(config)
    assert compiled.report.alpha == protocol.fanout_bound(config)
    output = compiled(data)
    assert np.array_equal(np.asarray(output).view(np.int64), np.asarray(simulated).view(np.int64))
    assert protocol.verify(data, output)


def test_plan_refuses_memory_that_cannot_hold_a_token_and_its_sums():
    model = _lowrank(dim=4, heads=2)
    spec = LowRankProtocol(model).spec
    with pytest.raises(PlanError, match="do not fit"):
        lowrank_plan(spec, 64, 8)
    with pytest.raises(PlanError, match="fanout"):
        lowrank_plan(spec, 64, 400, fanout=1)


def test_lowrank_protocol_refuses_other_heads():
    anna_free = init_transformer(vocab_size=3, dim=2, n_outputs=1, depth=1, max_len=8, kind="softmax")
    with pytest.raises(UnsupportedModel, match="lowrank"):
        LowRankProtocol(anna_free)


def test_config_with_too_few_machines_is_refused():
    protocol = LowRankProtocol(_lowrank())
    config = protocol.default_config(64, 0.5)
    with pytest.raises(Exception, match="machines"):
        protocol.check_config(MPCConfig(n=64, eps=0.5, memory_factor=config.memory_factor,
                                        machines_factor=config.machines_factor / 4))


@pytest.mark.slow
def test_theorem44_full_sweep_holds():
    from reductions.claims import Theorem44
    results = Theorem44().run(quick=False)
    assert all(r.holds for r in results), [r for r in results if not r.holds]
