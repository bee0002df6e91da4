"""The lean engine (vectorised over tokens, compact stream) against the dense transformer and the
simulator; the plan-only estimate, the memory refusal, honest widths and the exact-ids LSH."""
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_sim import MPCConfig, Simulator
from mpc_sim.protocols import make_protocol
from reductions.compile import (ESTIMATE_FACTOR, CompileError, DecodeError, HashedLayout, DisjunctLayout,
                                ModelTooLarge, compile_mpc, id_lsh)
from reductions.compile.layouts import Message
from reductions.compile.sparse import decode_groups, encode_items, group_sums, layout_cells
from tests.strategies.compiled import MixingProtocol, mixing_cases


def _same_words(a, b):
    return np.array_equal(np.asarray(a).view(np.int64), np.asarray(b).view(np.int64))


def _simulate(protocol, config, data, seed=0):
    return Simulator(config, mode="machine").run(protocol, data, seed=seed)


# ------------------------------------------------------------------------------ the compiler's test protocols
MIXING = [
    (MixingProtocol(rounds=2, fanout=1), MPCConfig(n=16, eps=0.5, memory_factor=2), {}),
    (MixingProtocol(rounds=3, fanout=2, salt=5), MPCConfig(n=36, eps=0.5, memory_factor=2), {}),
    (MixingProtocol(rounds=2, fanout=3, salt=9), MPCConfig(n=40, eps=0.6, memory_factor=3), {"alpha": 2}),
    (MixingProtocol(rounds=0, fanout=1), MPCConfig(n=9, eps=0.5, memory_factor=2), {}),
]
def _library_case(name, params, n, seed=3):
    protocol = make_protocol(name, **params)
    config = protocol.default_config(n, 0.5)
    return protocol, config, protocol.generate_input(config, seed=seed)


def _both_engines(protocol, config, data, seed=0, **options):
    sim = Simulator(config, mode="machine").run(protocol, data, seed=seed, record_states=True)
    options.setdefault("rounds", max(sim.trace.num_rounds, 1))
    model = compile_mpc(protocol, config, seed=seed, **options)
    lean = model.run(data, record=True)
    dense = model.run(data, engine="dense")
    return sim, model, lean, dense


def _assert_engines_agree(sim, model, lean, dense):
    assert _same_words(lean.output, sim.output) and _same_words(dense.output, sim.output)
    assert len(lean.memories) == len(dense.memories) == model.report.depth + 1
    for layer in range(len(dense.memories)):
        assert all(_same_words(a, b) for a, b in zip(lean.memories[layer], dense.memories[layer])), layer


@pytest.mark.parametrize("layout", ["hashed", "disjunct"])
@pytest.mark.parametrize("protocol,config,options", MIXING)
def test_lean_engine_equals_the_dense_transformer_layer_by_layer_on_mixing_protocols(protocol, config, options, layout):
    data = np.random.default_rng(1).integers(-2**63, 2**63 - 1, size=config.n)
    _assert_engines_agree(*_both_engines(protocol, config, data, layout=layout, **options))


# the library protocols, lean against dense against the simulator: the compile stage of the shared
# case table (tests/test_stages.py)


@pytest.mark.parametrize("name,params,n", [("khop", {"k": 5}, 48), ("sort", {}, 400)])  # protocols with a batch step
def test_batch_and_per_machine_local_steps_give_the_same_run(name, params, n):
    protocol, config, data = _library_case(name, params, n)
    model = compile_mpc(protocol, config, seed=3, rounds=_simulate(protocol, config, data, seed=3).trace.num_rounds)
    batch, machine = model.run(data, local="batch", record=True), model.run(data, local="machine", record=True)
    assert _same_words(batch.output, machine.output)
    assert all(all(_same_words(a, b) for a, b in zip(x, y)) for x, y in zip(batch.memories, machine.memories))


@given(case=mixing_cases())
@settings(max_examples=15)
def test_lean_engine_reproduces_the_simulator_on_random_protocols(case):
    protocol, config, data = case
    model = compile_mpc(protocol, config)
    assert _same_words(model.run(data).output, _simulate(protocol, config, data).output)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(8, 120), k=st.integers(1, 6))
@settings(max_examples=10)
def test_lean_engine_reproduces_the_simulator_on_random_khop_inputs(seed, n, k):
    protocol, config, data = _library_case("khop", {"k": k}, n, seed=seed)
    sim = _simulate(protocol, config, data, seed=seed)
    model = compile_mpc(protocol, config, seed=seed, rounds=sim.trace.num_rounds)
    assert _same_words(model.run(data).output, sim.output)


# ------------------------------------------------------------------------------ layouts, vectorised
def _random_messages(rng, layout, receivers, senders_per_receiver):
    messages = []
    for dst in range(receivers):
        srcs = rng.choice(layout.machines, size=senders_per_receiver, replace=False)
        budget = layout.capacity
        for src in srcs:
            length = int(rng.integers(0, max(1, budget // senders_per_receiver) + 1))
            messages.append(Message(int(src), dst, rng.integers(-2**63, 2**63 - 1, size=length)))
    return messages


def _sparse_average(layout, messages):
    offsets = np.zeros(len(messages) + 1, dtype=np.int64)
    np.cumsum([m.words.shape[0] for m in messages], out=offsets[1:])
    words = np.concatenate([m.words for m in messages]) if messages else np.zeros(0, np.int64)
    items = encode_items(layout, [m.src for m in messages], [m.dst for m in messages], offsets, words)
    group = np.array([m.dst for m in messages])[items.message]
    g, cell, sums = group_sums(group, np.arange(items.message.shape[0]), np.ones(items.message.shape[0]), items,
                               layout_cells(layout)[0])
    counts = np.bincount([m.dst for m in messages])
    return items, g, cell, sums / counts[g][:, None]


@pytest.mark.parametrize("make", [lambda: HashedLayout(capacity=12, max_senders=6, machines=50),
                                  lambda: DisjunctLayout(capacity=4, max_senders=3, machines=20)])
def test_vectorised_encoding_and_averaging_match_the_dense_layout(make):
    layout = make()
    rng = np.random.default_rng(0)
    messages = _random_messages(rng, layout, receivers=4, senders_per_receiver=min(3, layout.max_senders))
    items, g, cell, average = _sparse_average(layout, messages)
    n_cells, item_width = layout_cells(layout)
    for dst in range(4):
        dense = layout.encode_many([m for m in messages if m.dst == dst]).mean(axis=0)
        table = np.zeros((n_cells, item_width))
        table[cell[g == dst]] = average[g == dst]
        assert np.allclose(table.ravel(), dense, rtol=0, atol=1e-9)
    decoded = decode_groups(layout, g, cell, average, 4)
    for dst in range(4):
        expected = layout.decode(layout.encode_many([m for m in messages if m.dst == dst]).mean(axis=0))
        got = np.flatnonzero(decoded.group == dst)
        assert [m.src for m in expected] == decoded.src[got].tolist()
        for m, j in zip(expected, got):
            assert np.array_equal(m.words, decoded.words[decoded.offsets[j]:decoded.offsets[j + 1]])


@given(seed=st.integers(0, 2**32 - 1), groups=st.integers(1, 6), pairs=st.integers(1, 400),
       span=st.sampled_from([8, 64, 4096]))
@settings(max_examples=40)
def test_group_sums_equal_a_numpy_reference_whether_cells_are_counted_or_sorted(seed, groups, pairs, span):
    from reductions.compile.sparse import Items
    rng = np.random.default_rng(seed)
    n_items, per_item = 50, 3
    cells = np.sort(rng.choice(span, size=(n_items, per_item)), axis=1)
    items = Items(rng.integers(-1000, 1000, size=(n_items, 5)).astype(np.float64), np.arange(n_items), cells)
    group = rng.integers(0, groups, size=pairs)
    item = rng.integers(0, n_items, size=pairs)
    weight = rng.integers(1, 4, size=pairs).astype(np.float64)
    g, cell, sums = group_sums(group, item, weight, items, span)
    keys = (group[:, None] * span + cells[item]).ravel()
    unique, inverse = np.unique(keys, return_inverse=True)
    expected = np.zeros((unique.shape[0], 5))
    np.add.at(expected, inverse, np.repeat(weight[:, None] * items.items[item], per_item, axis=0))
    assert np.array_equal(g * span + cell, unique) and np.array_equal(sums, expected)


def test_decoding_many_groups_at_once_equals_decoding_each_group_alone():
    layout = HashedLayout(capacity=12, max_senders=6, machines=50)
    rng = np.random.default_rng(3)
    messages = [m for dst, senders in enumerate((5, 1, 3, 6, 2))
                for m in _random_messages(rng, layout, receivers=1, senders_per_receiver=senders)
                for m in [Message(m.src, dst, m.words)]]
    _, g, cell, average = _sparse_average(layout, messages)
    together = decode_groups(layout, g, cell, average, 5)       # each group's cells overwrite the last's
    for dst, senders in enumerate((5, 1, 3, 6, 2)):
        alone = decode_groups(layout, np.zeros(int((g == dst).sum()), dtype=np.int64), cell[g == dst],
                              average[g == dst], 1)
        got = np.flatnonzero(together.group == dst)
        assert together.src[got].tolist() == alone.src.tolist() and got.size == senders
        assert np.array_equal(together.words[together.offsets[got[0]]:together.offsets[got[-1] + 1]], alone.words)


@given(seed=st.integers(0, 2**32 - 1), senders=st.integers(1, 8), capacity=st.integers(1, 30))
@settings(max_examples=40)
def test_hashed_peeling_kernel_decodes_exactly_what_the_dense_decoder_decodes(seed, senders, capacity):
    layout = HashedLayout(capacity=capacity, max_senders=8, machines=64, seed=seed % 7)
    rng = np.random.default_rng(seed)
    messages = _random_messages(rng, layout, receivers=1, senders_per_receiver=senders)
    _, g, cell, average = _sparse_average(layout, messages)
    expected = layout.decode(layout.encode_many(messages).mean(axis=0))
    decoded = decode_groups(layout, g, cell, average, 1)
    assert decoded.src.tolist() == [m.src for m in expected]
    assert all(np.array_equal(m.words, decoded.words[decoded.offsets[j]:decoded.offsets[j + 1]])
               for j, m in enumerate(expected))


@given(seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.5, 2.0 / 3.0, 1.5]))
@settings(max_examples=25)
def test_a_mangled_average_fails_in_the_kernel_exactly_when_it_fails_in_the_dense_decoder(seed, scale):
    layout = HashedLayout(capacity=10, max_senders=6, machines=40)
    rng = np.random.default_rng(seed)
    messages = _random_messages(rng, layout, receivers=1, senders_per_receiver=int(rng.integers(1, 5)))
    _, g, cell, average = _sparse_average(layout, messages)
    mangled = average.copy()
    mangled[int(rng.integers(0, mangled.shape[0]))] *= scale
    n_cells, item_width = layout_cells(layout)
    table = np.zeros((n_cells, item_width))
    table[cell] = mangled
    try:
        expected = [(m.src, m.words.tolist()) for m in layout.decode(table.ravel())]
    except DecodeError:
        expected = "error"
    try:
        out = decode_groups(layout, g, cell, mangled, 1)
        got = [(int(s), out.words[out.offsets[j]:out.offsets[j + 1]].tolist()) for j, s in enumerate(out.src)]
    except DecodeError:
        got = "error"
    assert got == expected


# ------------------------------------------------------------------------------ anna heads
def test_lean_anna_heads_hash_like_the_dense_transformer_and_route_exactly():
    protocol, config = MixingProtocol(rounds=2, fanout=2, salt=2), MPCConfig(n=36, eps=0.5, memory_factor=2)
    data = np.arange(config.n)
    sim, model, lean, dense = _both_engines(protocol, config, data, attention="anna", hash_seed=4)
    _assert_engines_agree(sim, model, lean, dense)
    report = model.report
    assert report.lsh_mode == "exact-ids" and "ell=1" in report.lsh
    assert report.lsh_far_pairs == 0 and report.lsh_far_bound <= 1.0 / config.machines


def test_with_one_hyperplane_lean_and_dense_anna_runs_fail_or_succeed_together_and_never_return_wrong_outputs():
    from anna.lsh import Hyperplane, LSHConfig

    protocol, config = MixingProtocol(rounds=2, fanout=2, salt=4), MPCConfig(n=36, eps=0.5, memory_factor=2)
    data = np.arange(config.n)
    expected = _simulate(protocol, config, data).output
    outcomes = []
    for seed in range(6):
        model = compile_mpc(protocol, config, attention="anna", lsh=LSHConfig(Hyperplane(), z=1, ell=2),
                            hash_seed=seed)
        assert model.report.lsh_far_pairs > 0          # one hyperplane: far ids collide about half the time
        pair = []
        for engine in ("lean", "dense"):
            try:
                pair.append(_same_words(model.run(data, engine=engine).output, expected))
            except DecodeError:
                pair.append("detected")
        assert pair[0] == pair[1]
        outcomes.append(pair[0])
    assert "detected" in outcomes and False not in outcomes


def test_exact_ids_lsh_states_its_parameters_and_bound():
    choice = id_lsh(391)
    assert choice.mode == "exact-ids" and choice.lsh.ell == 1
    assert choice.far_bound == pytest.approx(min(1.0, 2 * 391 ** 2 * choice.p2 ** choice.lsh.z))
    assert choice.far_bound <= 1.0 / 391
    theorem = id_lsh(391, mode="theorem-3.4")
    assert theorem.lsh.ell > 1 and theorem.mode == "theorem-3.4"


# ------------------------------------------------------------------------------ widths, estimate, refusal
@pytest.mark.parametrize("attention", ["ema", "anna"])
def test_reported_widths_are_the_widths_the_heads_produce(attention):
    protocol, config = MixingProtocol(rounds=2, fanout=3, salt=1), MPCConfig(n=40, eps=0.6, memory_factor=3)
    model = compile_mpc(protocol, config, attention=attention)
    x = model.transformer.embedding(model.tokens(np.arange(config.n)))
    positions = np.arange(x.shape[0])
    heads = model.transformer.layers[0].heads
    values = [np.asarray(h.value(x, positions)) for h in heads]
    keys = [np.asarray(h.key(x, positions)) for h in heads]
    report = model.report
    assert report.m == max(v.shape[1] for v in values) == model.layout.width
    assert report.width_sum == sum(v.shape[1] for v in values) == protocol.fanout * model.layout.width + 1
    assert report.key_dim == max(k.shape[1] for k in keys)
    assert report.width == report.m * report.heads_per_layer
    assert model.transformer.report().m == max(report.m, report.key_dim)


@pytest.mark.parametrize("name,params,n", [("khop", {"k": 4}, 64), ("sort", {}, 400), ("connectivity", {}, 16)])
def test_the_estimate_bounds_the_measured_peak_within_the_stated_factor(name, params, n):
    protocol, config, data = _library_case(name, params, n)
    rounds = _simulate(protocol, config, data, seed=3).trace.num_rounds
    model = compile_mpc(protocol, config, seed=3, rounds=rounds)
    model.run(data)        # numba and caches warm
    tracemalloc.start()
    try:
        model = compile_mpc(protocol, config, seed=3, rounds=rounds)
        model.run(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = model.report.estimated_bytes
    assert peak <= estimate <= ESTIMATE_FACTOR * peak, (peak, estimate)


def test_a_run_over_the_memory_limit_is_refused_before_anything_is_built(monkeypatch):
    import reductions.compile as compile_module

    def never(*args, **kwargs):
        raise AssertionError("built despite the refusal")

    monkeypatch.setattr(compile_module, "build_layers", never)
    protocol = make_protocol("connectivity")
    config = protocol.default_config(2 ** 14, 0.5)
    with pytest.raises(ModelTooLarge) as info:
        compile_module.check_request(protocol, config, max_memory=10 ** 7)
    estimate = info.value.estimate
    assert isinstance(info.value, CompileError) and info.value.limit == 10 ** 7 and estimate > 10 ** 7
    assert "running compiled connectivity" in str(info.value) and str(estimate) in str(info.value)
    assert "10000000" in str(info.value)
    with pytest.raises(ModelTooLarge, match="building compiled connectivity"):
        compile_mpc(protocol, config, max_memory=10 ** 5)


def test_a_compiled_model_refuses_a_run_over_the_limit_but_still_reports():
    protocol, config, data = _library_case("khop", {"k": 4}, 64)
    model = compile_mpc(protocol, config, seed=3, max_memory=model_bytes(protocol, config) - 1)
    assert model.report.estimated_bytes > model.max_memory
    with pytest.raises(ModelTooLarge, match="lean engine"):
        model.run(data)


def model_bytes(protocol, config):
    from reductions.compile import check_request
    return check_request(protocol, config, seed=3).bytes("lean")


def test_the_dense_engine_is_refused_where_the_lean_engine_fits():
    protocol, config, data = _library_case("khop", {"k": 4}, 64)
    model = compile_mpc(protocol, config, seed=3)
    limit = (model.report.estimated_bytes + model.report.estimated_dense_bytes) // 2
    assert model.report.estimated_bytes < limit < model.report.estimated_dense_bytes
    with pytest.raises(ModelTooLarge, match="dense engine"):
        model.run(data, engine="dense", max_memory=limit)
    assert _same_words(model.run(data, max_memory=limit).output, _simulate(protocol, config, data, seed=3).output)


@pytest.mark.parametrize("bad", [0, -5, "1GB", True])
def test_max_memory_must_be_a_positive_number(bad):
    with pytest.raises(CompileError, match="max_memory"):
        compile_mpc(MixingProtocol(), MPCConfig(n=16, eps=0.5, memory_factor=2), max_memory=bad)


def test_the_softmax_baseline_runs_on_the_dense_engine_only():
    protocol, config = MixingProtocol(rounds=1, fanout=1), MPCConfig(n=16, eps=0.5, memory_factor=2)
    model = compile_mpc(protocol, config, attention="softmax")
    assert model.report.engine == "dense"
    with pytest.raises(ValueError, match="lean engine"):
        model.run(np.arange(16), engine="lean")


# ------------------------------------------------------------------------------ the CLI
def test_max_memory_accepts_byte_suffixes_and_names_a_bad_value():
    from reductions.commands import parse_bytes
    assert parse_bytes("4G") == 4 << 30 and parse_bytes("500M") == 500 << 20 and parse_bytes("1234") == 1234
    assert parse_bytes("2GiB") == 2 << 30
    for bad in ("lots", "-1G", "0"):
        with pytest.raises(CompileError, match="max-memory"):
            parse_bytes(bad)


def _cli(args, capsys):
    from reductions.cli import main
    code = main(["compile", *args])
    return code, capsys.readouterr().out


def test_cli_refuses_above_max_memory_before_running_anything(capsys):
    code, out = _cli(["connectivity", "--n", "16384", "--eps", "0.5", "--max-memory", "1000000"], capsys)
    assert code == 2 and "ModelTooLarge" in out and "estimated at" in out


@pytest.mark.parametrize("eps", ["0", "1.0", "1.5", "-0.2"])
def test_cli_names_an_eps_outside_the_open_unit_interval(capsys, eps):
    from reductions.cli import main
    with pytest.raises(SystemExit) as exit_:
        main(["compile", "aggregate", "--n", "64", "--eps", eps])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--eps" in err and "0 < eps < 1" in err and len(err.strip().splitlines()) == 1


def test_cli_compiles_runs_and_reports_the_estimate(capsys):
    code, out = _cli(["khop", "--n", "64", "--eps", "0.5", "--k", "4"], capsys)
    assert code == 0 and "identical to" in out and "estimated memory" in out


# the scale targets (2**14 tokens, slow): cases of the shared table (tests/strategies/cases.py)


def test_run_stats_measure_the_value_width_actually_used_within_the_head_width():
    protocol, config, data = _library_case("sort", {}, 400)
    rounds = _simulate(protocol, config, data, seed=3).trace.num_rounds
    model = compile_mpc(protocol, config, seed=3, rounds=rounds + 2)
    stats = model.run(data).stats
    assert stats.layers_run == rounds + 1            # the layer after the halt runs; the last is idle
    assert stats.messages > 0 and stats.items >= stats.messages
    assert 0 < stats.max_value_width_used <= model.report.m
    assert stats.layout_cells * stats.item_width == model.report.m
    # every message of the run went through one head of one layer: count them in the simulator
    sim = _simulate(protocol, config, data, seed=3)
    assert stats.messages == sum(r.messages for r in sim.trace.rounds)
