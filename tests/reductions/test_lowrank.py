"""Low-rank attention as an MPC protocol (per-machine step) and, through compile_mpc, as an
ANNA-transformer (Theorem 4.4's route)."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anna.transformer import init_transformer
from mpc_sim import MPCConfig, Simulator
from reductions.decompile import PlanError, UnsupportedModel, run_model_protocol
from reductions.decompile.lowrank_protocol import LowRankProtocol, lowrank_plan
from tests.strategies.cases import BY_NAME, lowrank_model, select


_lowrank = lowrank_model


def _run(case):
    protocol, config = case.build()
    return protocol, config, run_model_protocol(protocol, case.data(protocol, config)[0], config, seed=case.seed)


# agreement with the forward pass within every limit, and the compiled ANNA-transformer against the
# simulator: the decompile and compile stages of the shared case table (tests/test_stages.py)
@pytest.mark.parametrize("case", select("lowrank-model"))
def test_lowrank_rounds_are_input_rounds_plus_2DL_plus_one(case):
    protocol, config, run = _run(case)
    plan = protocol.plan(config)
    input_rounds = 1 if plan.fanout_cap is None else -(-plan.input_fanout() // plan.fanout_cap)
    assert run.trace.num_rounds == plan.rounds == input_rounds + 2 * plan.depth * plan.layers + 1


@pytest.mark.parametrize("case", select("lowrank-model"))
def test_no_machine_sends_more_messages_in_a_round_than_the_fanout_bound(case):
    protocol, config = case.build()
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
    protocol, config = BY_NAME["lowrank/causal, deep"].build()
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
