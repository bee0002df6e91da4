"""The shared table of cases (tests/strategies/cases.py) run at every stage: the simulator against
the reference, the per-machine style against the batch style, the Dask backend against the local
engine, the compiler's lean and dense engines against the simulator, decompiled models against
their forward pass. Every case runs in a stage or the table says why not, and what it says a
protocol cannot do is checked here."""
import copy

import numpy as np
import pytest

from mpc_sim import ConfigError, Simulator
from mpc_sim.protocols import CATALOG
from reductions.compile import CompileError, compile_mpc
from reductions.decompile import run_model_protocol
from tests.strategies.cases import CANNOT, CASES, LIBRARY, MODELS, STAGES, cases, select


def same_words(a, b) -> bool:
    return np.array_equal(np.asarray(a).view(np.int64), np.asarray(b).view(np.int64))


def counting(protocol):
    """A copy of ``protocol`` that records in ``widest[0]`` the most messages one machine sent in
    one round; it overrides only the styles the protocol implements."""
    base = type(protocol)
    widest = [0]

    def step(self, ctx, machine, memory, inbox):
        memory, messages = base.step(self, ctx, machine, memory, inbox)
        messages = list(messages)
        widest[0] = max(widest[0], len(messages))
        return memory, messages

    def batch_step(self, ctx, state, delivery):
        state, batch = base.batch_step(self, ctx, state, delivery)
        if batch.num_messages:
            widest[0] = max(widest[0], int(np.bincount(batch.src).max()))
        return state, batch

    methods = {"step": step} if base.has_step() else {}
    if base.has_batch_step():
        methods["batch_step"] = batch_step
    clone = copy.copy(protocol)
    object.__setattr__(clone, "__class__", type(base.__name__, (base,), methods))
    return clone, widest


# --- the table ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", STAGES)
def test_every_case_runs_in_each_stage_or_the_table_says_why_not(stage):
    for case in CASES:
        reason = case.reason(stage)
        assert reason is None or (isinstance(reason, str) and reason.strip()), (case.name, stage)
    assert cases(stage), f"no case runs in the {stage} stage"


@pytest.mark.parametrize("stage", ["simulator", "styles", "dask", "compile", "dense"])
def test_every_library_protocol_runs_in_every_stage_it_can_in_the_default_suite(stage):
    covered = {case.protocol for case in CASES if case.runs(stage) and stage not in case.slow} - set(MODELS)
    assert covered == {name for name in LIBRARY if stage not in CANNOT.get(name, {})}


def test_the_library_is_the_catalog():
    assert set(LIBRARY) == set(CATALOG)


def test_every_kind_of_model_is_decompiled_and_the_lowrank_protocol_compiles():
    assert {case.protocol for case in CASES if case.runs("decompile")} == set(MODELS)
    assert "lowrank-model" in {case.protocol for case in CASES if case.runs("compile")}


@pytest.mark.parametrize("kind", sorted(CANNOT))
def test_what_the_table_says_a_protocol_cannot_do_is_true(kind):
    case = next(case for case in CASES if case.protocol == kind and not case.refused)
    protocol, config = case.build()
    says = CANNOT[kind]
    if "styles" in says:
        assert ("no batch step" in says["styles"]) == (not protocol.has_batch_step())
        assert ("no per-machine step" in says["styles"]) == (not protocol.has_step())
    if "compile" in says:
        with pytest.raises(CompileError):
            compile_mpc(protocol, config)


def test_protocols_said_to_run_in_both_styles_have_both():
    for name in LIBRARY + MODELS:
        if "styles" not in CANNOT.get(name, {}):
            protocol, _ = next(case for case in CASES if case.protocol == name).build()
            assert protocol.has_step() and protocol.has_batch_step(), name


@pytest.mark.parametrize("case", select(*LIBRARY))
def test_a_case_is_refused_exactly_when_the_table_says(case):
    protocol, config = case.build()
    if case.refused:
        with pytest.raises(ConfigError):
            protocol.check_config(config)
        with pytest.raises(ConfigError):
            Simulator(config).run(protocol, np.zeros(config.n, dtype=np.int64))
    else:
        protocol.check_config(config)


# --- simulator: the reference, every limit, the round bound, the fan-out, the layout -------------------------------
@pytest.mark.parametrize("case", cases("simulator"))
def test_output_equals_the_reference_within_every_limit_round_bound_and_fanout_on_the_first_machines(case):
    protocol, config = case.build()
    recording, widest = counting(protocol)
    for i, data in enumerate(case.data(protocol, config)):
        result = Simulator(config).run(recording, data, seed=case.seed)     # batch where there is one
        expected = protocol.reference(data)
        assert result.output.dtype == np.int64
        assert np.array_equal(result.output, expected), i
        assert protocol.verify(data, result.output)
        assert result.trace.check() == []                      # strict mode: no limit ever exceeded
        bound = protocol.rounds_bound(config)
        assert result.trace.num_rounds == bound if case.exact_rounds else result.trace.num_rounds <= bound
        sizes, s, out = result.state.sizes(), config.s, expected.shape[0]
        if case.protocol == "broadcast":                       # every machine holds the value
            assert (sizes == protocol.width).all()
        else:                                                  # s words per machine on the first machines
            used = -(-out // s)
            assert sizes.tolist() == [min(s, out - j * s) for j in range(used)] + [0] * (sizes.size - used)
    assert widest[0] <= protocol.fanout_bound(config)


# --- styles: per machine and batch -------------------------------------------------------------------------------
@pytest.mark.parametrize("case", cases("styles"))
def test_per_machine_and_batch_styles_give_the_same_trace_output_and_state(case):
    protocol, config = case.build()
    for data in case.data(protocol, config)[:case.style_inputs]:
        by_machine = Simulator(config, mode="machine").run(protocol, data, seed=case.seed)
        by_batch = Simulator(config, mode="batch").run(protocol, data, seed=case.seed)
        assert by_machine.trace.counts() == by_batch.trace.counts()
        assert same_words(by_machine.output, by_batch.output)
        assert by_machine.state.equals(by_batch.state)


# --- dask: the local engine's run ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    pytest.importorskip("distributed", reason="the dask backend needs the optional extra anna-mpc[dask]")
    from tests.strategies.backends import in_process_client
    yield from in_process_client()


@pytest.mark.parametrize("case", cases("dask"))
def test_the_dask_backend_gives_the_local_output_and_report_round_by_round(client, case):
    from mpc_sim.backends.dask import DaskOptions
    from tests.strategies.backends import assert_same_report
    protocol, config = case.build()
    data = case.data(protocol, config)[0]
    local = Simulator(config).run(protocol, data, seed=case.seed, record_messages=True)   # the fast batch style
    dask = Simulator(config, backend="dask", dask=DaskOptions(client=client)).run(protocol, data, seed=case.seed,
                                                                                  record_messages=True)
    assert_same_report(dask.trace, local.trace)
    assert same_words(dask.output, local.output) and dask.state.equals(local.state)
    assert protocol.verify(data, dask.output)


@pytest.mark.parametrize("case", cases("dask"))
def test_a_memory_limit_exceeded_on_dask_is_the_local_error_and_the_local_report(client, case):
    """One machine of the last block keeps s + 1 extra words after round 1 (tests.strategies.backends.Ballast):
    strict runs raise the same typed error naming the machine, round 2 and the amount; non-strict runs record the
    same violations and peaks, and assert_within names the same machine."""
    from mpc_sim import MemoryLimitExceeded
    from mpc_sim.backends.dask import DaskOptions
    from mpc_sim.testing import BudgetExceeded, assert_within
    from tests.strategies.backends import Ballast, assert_same_report
    inner, config = case.build()
    data = case.data(inner, config)[0]
    machine = config.machines - 1
    protocol = Ballast(inner, round=1, machine=machine, extra=config.s + 1)
    errors = []
    for backend in ({}, {"backend": "dask", "dask": DaskOptions(client=client, blocks=3)}):
        with pytest.raises(MemoryLimitExceeded) as info:
            Simulator(config, **backend).run(protocol, data, seed=case.seed)
        errors.append((type(info.value), info.value.round, info.value.machine, info.value.observed, str(info.value)))
    assert errors[0] == errors[1]
    assert errors[0][1:3] == (2, machine) and errors[0][3] > config.s
    local, dask = (Simulator(config, strict=False, **backend).run(protocol, data, seed=case.seed)
                   for backend in ({}, {"backend": "dask", "dask": DaskOptions(client=client, blocks=3)}))
    assert_same_report(dask.trace, local.trace)
    assert ("memory", 2, machine) in {(v.kind, v.round, v.machine) for v in dask.trace.violations}
    assert protocol.verify(data, dask.output) and same_words(dask.output, local.output)
    messages = []
    for trace in (local.trace, dask.trace):
        with pytest.raises(BudgetExceeded, match=f"first in round 2.*machines? ([0-9]+ \\([0-9]+\\), )*{machine} ") \
                as info:
            assert_within(trace, memory=config.s)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


# --- compile: lean engine against the simulator, dense engine against the lean one, layer by layer ---------------
@pytest.mark.parametrize("case", cases("compile"))
def test_the_compiled_model_reproduces_the_simulator_and_the_dense_engine_the_lean_one(case):
    protocol, config = case.build()
    data = case.data(protocol, config)[0]
    sim = Simulator(config, mode="machine").run(protocol, data, seed=case.seed)
    assert sim.trace.num_rounds >= 1, "the instance must communicate to test routing"
    model = compile_mpc(protocol, config, seed=case.seed, rounds=sim.trace.num_rounds)
    dense = case.runs("dense")
    lean = model.run(data, record=dense)
    assert same_words(lean.output, sim.output)
    assert protocol.verify(data, lean.output)
    assert model.report.depth == sim.trace.num_rounds
    assert model.report.alpha == protocol.fanout_bound(config)
    assert model.align(data, lean).all_match
    if dense:
        full = model.run(data, engine="dense")
        assert same_words(full.output, sim.output)
        assert len(lean.memories) == len(full.memories) == model.report.depth + 1
        for layer, (a, b) in enumerate(zip(lean.memories, full.memories)):
            assert all(same_words(x, y) for x, y in zip(a, b)), layer


# --- decompile: the model's forward pass ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", cases("decompile"))
def test_a_decompiled_model_agrees_with_its_forward_pass_within_every_limit(case):
    protocol, config = case.build()
    for data in case.data(protocol, config):
        run = run_model_protocol(protocol, data, config, seed=case.seed)
        assert run.output.shape == run.expected.shape
        assert run.agrees, f"max scaled error {run.max_scaled_error:.3g} > tolerance {run.tolerance}"
        trace = run.trace
        assert trace.verified and trace.strict and not trace.violations and trace.check() == []
        assert max(trace.max_memory, trace.max_sent, trace.max_received) <= config.s
        assert trace.num_rounds == protocol.rounds_bound(config)
