"""ANNA-transformer -> MPC (Theorem 4.2) and the softmax baseline: outputs, rounds, limits, machines."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anna.lsh import E2LSH, CrossPolytope, Hyperplane, LSHConfig
from anna.strategies import lsh_families
from anna.tasks import generate_match2, match2_labels
from anna.transformer import Head, Layer, Transformer, init_transformer
from mpc_sim import ConfigError, InputError, MPCConfig, ReceiveLimitExceeded, Simulator
from reductions.decompile import PlanError, TokenwiseEmbedding, UnsupportedModel, compile_anna, run_model_protocol
from reductions.decompile._batch import RoundOutput, group_keys, lookup, segmented_exclusive_sum
from reductions.decompile.examples import example_model
from reductions.decompile.plan import make_anna_plan, overflow_bound, relay_depth
from reductions.decompile.softmax_protocol import SoftmaxProtocol
from reductions.decompile.tokens import HeadSpec, LayerSpec, ModelSpec
from tests.strategies.cases import BY_NAME, anna_model, select, softmax_model


_anna = anna_model


def _run(name, seed=0):
    """A case of the shared table (tests/strategies/cases.py) run through the protocol; seed the
    run's (and the generated input's) seed."""
    case = BY_NAME[f"anna/{name}"]
    protocol, config = case.build()
    data = case.data(protocol, config)[0] if seed == case.seed else protocol.generate_input(config, seed=seed)
    if name == "match2 task model":
        data = generate_match2(case.n, 37, seed=seed)[0].astype(float)
    return protocol, config, data, run_model_protocol(protocol, data, config, seed=seed)


# the output against the forward pass and every limit: the decompile stage of the shared case table
# (tests/test_stages.py); here the round formula of Theorem 4.2's protocol on the same cases
@pytest.mark.parametrize("case", select("anna-model"))
def test_trace_rounds_equal_the_stated_formula(case):
    protocol, config = case.build()
    run = run_model_protocol(protocol, case.data(protocol, config)[0], config, seed=case.seed)
    plan = protocol.plan(config)
    per_layer = [2 * (layer.relay_depth + layer.tree_depth) for layer in plan.layers]
    assert [layer.rounds for layer in plan.layers] == per_layer
    assert run.trace.num_rounds == plan.rounds == 2 + sum(per_layer) == protocol.rounds_bound(config)


def test_deep_trees_are_exercised_by_the_case_table():
    protocol, config = BY_NAME["anna/two layers, two heads, causal, deep trees"].build()
    plan = protocol.plan(config)
    assert min(layer.tree_depth for layer in plan.layers) >= 2
    assert plan.token_machines > plan.layers[0].tree_degree


def test_match2_task_model_labels_every_token_through_the_protocol():
    _, _, data, run = _run("match2 task model", seed=4)
    assert np.array_equal(run.output[:, 0], match2_labels(data.astype(np.int64), 37))


@st.composite
def anna_models(draw):
    depth, heads = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    m, ell, z = draw(st.integers(1, 4)), draw(st.integers(1, 6)), draw(st.integers(1, 3))
    model = init_transformer(vocab_size=6, dim=m * heads, n_outputs=2, depth=depth, heads=heads, max_len=64,
                             kind="anna", lsh=LSHConfig(draw(lsh_families()), z=z, ell=ell),
                             causal=draw(st.booleans()), normalize=draw(st.booleans()), seed=draw(st.integers(0, 999)))
    return model, draw(st.integers(1, 40)), draw(st.sampled_from([None, 1, 2, 4])), draw(st.integers(0, 99))


@given(case=anna_models())
@settings(max_examples=12)
def test_random_anna_models_run_as_protocols_that_agree_with_their_forward_pass(case):
    model, n, tokens, seed = case
    protocol = compile_anna(model, tokens_per_machine=tokens, max_failure=1e-6)
    config = protocol.default_config(n, 0.5)
    run = run_model_protocol(protocol, protocol.generate_input(config, seed=seed), config, seed=seed)
    assert run.agrees and run.trace.num_rounds == protocol.plan(config).rounds
    assert run.trace.check() == []


def test_same_seed_gives_identical_output_and_trace_counts():
    protocol, config, data, first = _run("two layers, two heads, causal, deep trees")
    second = run_model_protocol(protocol, data, config)
    assert np.array_equal(first.output, second.output)
    assert first.trace.counts() == second.trace.counts()


# --- the plan -----------------------------------------------------------------------------------
def _spec(ell=8, value_dim=4, dim=4, layers=1):
    return ModelSpec(dim, (LayerSpec((HeadSpec("anna", dim, value_dim, ell),), False),) * layers, 2,
                     np.dtype(np.float64))


@pytest.mark.parametrize("n,s", [(64, 800), (200, 1500), (500, 4000)])
def test_plan_shards_expect_at_most_cap_over_r_records_and_bound_sums_to_the_failure_bound(n, s):
    plan = make_anna_plan(_spec(), n, s)
    assert plan.failure_bound <= plan.max_failure
    for layer in plan.layers:
        total = 0.0
        assert layer.tree_degree ** layer.tree_depth >= plan.token_machines
        for tree in layer.trees:
            assert tree.cap == s // (2 * tree.record_width)
            assert tree.leaf_records == 2 * plan.tokens_per_machine * (tree.stop_table - tree.first_table)
            for level, (nodes, width) in enumerate(zip(tree.level_nodes, tree.widths), start=1):
                records = min(layer.tree_degree ** level, plan.token_machines) * tree.leaf_records
                assert nodes == -(-plan.token_machines // layer.tree_degree ** level)
                assert records <= tree.cap or width * tree.cap >= layer.oversampling * records
                children = min(layer.tree_degree, -(-plan.token_machines // layer.tree_degree ** (level - 1)))
                total += nodes * width * overflow_bound(records, children, tree.cap, width)
        assert total == pytest.approx(layer.failure_bound)
        tables = [stop - first for first, stop in layer.record_tables]
        assert sum(tables) == 8 and max(tables) - min(tables) <= 1
        assert layer.relay_depth == relay_depth(layer.record_machines + 1, layer.relay_degree)


def _binomial_tail(trials: int, p: float, above: int) -> float:
    """P(Binomial(trials, p) > above), exactly (log-space terms)."""
    total = 0.0
    for k in range(above + 1, trials + 1):
        total += math.exp(math.lgamma(trials + 1) - math.lgamma(k + 1) - math.lgamma(trials - k + 1)
                          + k * math.log(p) + (trials - k) * math.log1p(-p))
    return total


@pytest.mark.parametrize("records,cap,shards", [(400, 40, 20), (1000, 50, 50), (300, 12, 60)])
def test_overflow_bound_is_above_the_exact_tail_of_distinct_buckets(records, cap, shards):
    # weight-1 buckets (every child holds different ones): the load is exactly binomial
    exact = _binomial_tail(records, 1.0 / shards, cap)
    assert exact <= overflow_bound(records, 1, cap, shards) <= 1.0
    # heaviest case: buckets held by all c children, records / c of them, each worth c records
    c = 4
    assert _binomial_tail(records // c, 1.0 / shards, cap // c) <= overflow_bound(records, c, cap, shards)


def test_overflow_bound_is_zero_when_a_node_cannot_receive_more_than_cap():
    assert overflow_bound(50, 8, 50, 1) == 0.0 and overflow_bound(51, 8, 50, 1) > 0.0


def test_plan_refuses_memory_too_small_and_says_why():
    with pytest.raises(PlanError, match="no plan fits"):
        make_anna_plan(_spec(), 64, 20)


def test_default_config_takes_the_smallest_memory_factor_that_fits():
    protocol = compile_anna(_anna(ell=6))
    config = protocol.default_config(64, 0.5)
    smaller = MPCConfig(n=64, eps=0.5, memory_factor=config.memory_factor / 1.25, machines_factor=64.0)
    with pytest.raises(PlanError):
        protocol.plan(smaller)
    assert config.machines == protocol.plan(config).machines


def test_a_config_with_too_few_machines_is_refused():
    protocol = compile_anna(_anna())
    config = protocol.default_config(40, 0.5)
    short = MPCConfig(n=40, eps=0.5, memory_factor=config.memory_factor, machines_factor=config.machines_factor * 0.5)
    with pytest.raises(ConfigError, match="machines"):
        compile_anna(_anna(), short)


def test_an_overflowing_shard_raises_in_strict_mode_and_is_recorded_otherwise():
    # every token block the same 8 tokens: every bucket is in every child, the Chernoff bound's
    # worst case; oversampling 1 gives shards expecting a full machine each (bound reported as 1)
    protocol = compile_anna(_anna(ell=6, z=3, dim=6), tokens_per_machine=8, max_failure=1.0, oversampling=(1,))
    config = protocol.default_config(128, 0.5)
    assert protocol.plan(config).failure_bound == 1.0
    data = (np.arange(128) % 8).astype(float)
    with pytest.raises(ReceiveLimitExceeded):
        Simulator(config).run(protocol, data)
    result = Simulator(config, strict=False).run(protocol, data)
    assert result.trace.violations and "receive" in {v.kind for v in result.trace.violations}
    assert protocol.verify(data, result.output)       # the limits broke, the arithmetic did not


def test_unsupported_models_are_refused_with_every_reason():
    softmax = init_transformer(vocab_size=4, dim=2, n_outputs=1, depth=1, max_len=8, kind="softmax")
    mixing = Transformer(lambda inputs: np.zeros((len(inputs), 2)), softmax.layers, softmax.readout, dim=2)
    with pytest.raises(UnsupportedModel) as info:
        compile_anna(mixing)
    assert len(info.value.reasons) == 2
    assert "softmax head" in str(info.value) and "TokenwiseEmbedding" in str(info.value)


def test_input_words_must_be_token_ids_of_the_vocabulary():
    protocol = compile_anna(_anna())
    config = protocol.default_config(8, 0.5)
    with pytest.raises(InputError, match="token id"):
        Simulator(config).run(protocol, np.full(8, 2.5))
    with pytest.raises(InputError, match="token id"):
        Simulator(config).run(protocol, np.full(8, 9.0))


def test_tokenwise_embedding_sees_positions():
    embedding = TokenwiseEmbedding(lambda v, p: np.stack([v, p], axis=1).astype(float), dim=2)
    head = Head("anna", np.eye(2), np.eye(2), np.eye(2), np.eye(2), lsh=LSHConfig(Hyperplane(), 1, 2))
    model = Transformer(embedding, (Layer((head,)),), np.eye(2), dim=2)
    run = run_model_protocol(compile_anna(model), np.linspace(-1, 1, 20), eps=0.5)
    assert run.agrees


# --- the softmax baseline (its agreement with the forward pass: the shared table's decompile stage) ----------
_softmax = softmax_model


@pytest.mark.parametrize("n", [2, 9, 30])
def test_softmax_baseline_uses_exactly_n_plus_n_squared_machines_and_2D_plus_2_rounds_per_layer(n):
    model = _softmax()
    protocol = SoftmaxProtocol(model)
    config = protocol.default_config(n, 0.5)
    head_words = sum(max(h.dim, h.value_dim) + 2 for h in model.layers[0].heads)
    b = config.s // (4 * head_words)
    depth = math.ceil(round(math.log(n, b), 9))
    assert config.machines == n + n * n == protocol.plan(config).machines
    run = run_model_protocol(protocol, protocol.generate_input(config), config)
    assert run.trace.num_rounds == 2 + len(model.layers) * (2 * depth + 2)
    assert max(r.active_machines for r in run.trace.rounds) == n + n * n


def test_softmax_baseline_refuses_anna_heads():
    with pytest.raises(UnsupportedModel, match="softmax"):
        SoftmaxProtocol(_anna())


# --- batch helpers against plain references -----------------------------------------------------
@given(keys=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=40),
       queries=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), max_size=40))
def test_lookup_finds_the_row_with_equal_keys_or_minus_one(keys, queries):
    table = list(dict.fromkeys(keys))
    a = np.array([k[0] for k in table], dtype=np.int64)
    b = np.array([k[1] for k in table], dtype=np.int64)
    qa = np.array([q[0] for q in queries], dtype=np.int64)
    qb = np.array([q[1] for q in queries], dtype=np.int64)
    expected = [table.index(q) if q in table else -1 for q in queries]
    assert lookup((a, b), (qa, qb)).tolist() == expected


@given(values=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=30), data=st.data())
def test_segmented_exclusive_sum_matches_a_loop(values, data):
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(values) - 1), max_size=5)) if len(values) > 1 else []))
    starts = np.array([0] + cuts)
    got = segmented_exclusive_sum(np.array(values)[:, None], starts)[:, 0]
    expected, bounds = [], list(starts) + [len(values)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        running = 0.0
        for v in values[lo:hi]:
            expected.append(running)
            running += v
    assert got.tolist() == expected


def test_group_keys_orders_by_the_first_key_then_the_next():
    order, starts, group = group_keys(np.array([2, 1, 2, 1]), np.array([0, 5, 0, 3]))
    assert order.tolist() == [3, 1, 0, 2] and starts.tolist() == [0, 1, 2] and group.tolist() == [0, 1, 2, 2]


def test_round_output_builds_memories_and_messages_sorted_by_sender():
    out = RoundOutput(4)
    out.keep(np.array([3, 1]), np.array([2, 1]), np.array([1.0, 2.0, 3.0]))
    out.send(np.array([2, 0]), np.array([0, 3]), np.array([1, 2]), np.array([9.0, 7.0, 8.0]))
    state, batch = out.build()
    assert [m.tolist() for m in state.to_list()] == [[], [3.0], [], [1.0, 2.0]]
    assert batch.src.tolist() == [0, 2] and batch.dst.tolist() == [3, 0] and batch.words.tolist() == [7.0, 8.0, 9.0]


# --- the claim's figure and the command line -----------------------------------------------------
def test_verify_plots_writes_the_machines_figure(tmp_path):
    from reductions.claims import Theorem42
    from reductions.plots import write_figures
    claim = Theorem42(eps=(0.25,), c=(16.0,), quick_exponents=(5, 6, 7), quick_simulate={16.0: (5, 6)},
                      quick_baseline_exponents=(3, 4), rho_pairs=2000)
    specs = claim.figures(claim.sweep(quick=True))
    paths = write_figures(specs, tmp_path / "figures")
    assert {p.name for p in paths} == {"theorem42_machines.png"}
    assert all(p.stat().st_size > 1000 for p in paths)
    machines = specs[0]
    assert [s.label for s in machines.series] == ["ANNA protocol, c = 16, eps = 0.25", "softmax baseline, n + n^2"]
    assert machines.series[1].slope() == pytest.approx(2.0, abs=0.15)


@pytest.mark.parametrize("example", ["random", "match2", "softmax", "lowrank"])
def test_decompile_command_runs_every_example_and_reports_agreement(example, capsys):
    from reductions.cli import main
    assert main(["decompile", "--example", example, "--n", "24"]) == 0
    out = capsys.readouterr().out
    assert "agrees" in out and "rounds (formula)" in out


def test_decompile_command_loads_a_saved_model(tmp_path, capsys):
    from reductions.cli import main
    model = example_model("random", 16)
    model.save(tmp_path / "model")
    assert main(["decompile", str(tmp_path / "model.npz"), "--n", "16", "--memory-factor", "300"]) == 0
    assert main(["decompile", "--n", "16"]) == 2
    assert "exactly one" in capsys.readouterr().err


@pytest.mark.slow
def test_theorem42_full_sweep_holds():
    from reductions.claims import Theorem42
    results = Theorem42().run(quick=False)
    assert all(r.holds for r in results), [r for r in results if not r.holds]
