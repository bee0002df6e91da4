"""The round engine: exact delivery, exact accounting, limits enforced to the word, typed errors,
both protocol styles equivalent, bad input refused, runs deterministic in the seed."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mpc_sim import (ClusterState, InputError, MemoryLimitExceeded, MessageBatch, MPCConfig, Protocol,
                     ProtocolError, Simulator, UnknownDestination, simulate)
from mpc_sim.strategies import (BatchOnly, MachineOnly, ScriptedProtocol, expected_run, inject_violation,
                                  make_schedule, schedules)
from tests.strategies.engine import (BATCH_MALFORMED, LIMIT_ERRORS, MACHINE_MALFORMED, Returns,
                                     Rounds, SendTo)

# (protocol factory, simulator mode, message order the engine sees)
STYLES = [
    (MachineOnly, "auto", "by_source"),
    (lambda sch: ScriptedProtocol(sch, batch_order="script"), "batch", "script"),
    (lambda sch: ScriptedProtocol(sch, batch_order="by_source"), "machine", "by_source"),
]


def bits(a):
    return np.asarray(a).view(np.int64)


def assert_run_matches_reference(schedule, protocol, result, order):
    expected = expected_run(schedule, order)
    assert set(protocol.log) == set(expected.inboxes)
    for key, (sources, words) in expected.inboxes.items():
        got_sources, got_words = protocol.log[key]
        assert got_sources == sources, key
        assert got_words.dtype == schedule.dtype
        assert np.array_equal(bits(got_words), bits(words)), key
    trace = result.trace
    assert tuple(r.counts() for r in trace.rounds) == expected.round_counts
    assert trace.output.counts() == expected.output_counts
    assert trace.violations == expected.violations
    assert result.output.dtype == schedule.dtype
    assert np.array_equal(bits(result.output), bits(expected.output))
    return expected


# --- exact delivery and accounting within the limits -----------------------------------------------
@pytest.mark.parametrize("factory, mode, order", STYLES, ids=["machine-only", "batch-script-order", "machine"])
@given(schedule=schedules())
def test_within_limits_every_word_reaches_the_right_machine_in_sent_order(factory, mode, order, schedule):
    protocol = factory(schedule)
    result = Simulator(schedule.config, mode=mode).run(protocol, schedule.input_data())
    assert_run_matches_reference(schedule, protocol, result, order)
    assert result.trace.num_rounds == schedule.rounds == result.trace.rounds_bound
    assert result.trace.check() == []
    assert result.trace.max_memory <= schedule.config.s


@given(schedule=schedules(tight=True))
def test_filling_every_limit_exactly_to_s_is_allowed(schedule):
    protocol = ScriptedProtocol(schedule)
    result = Simulator(schedule.config).run(protocol, schedule.input_data())
    assert_run_matches_reference(schedule, protocol, result, "by_source")
    assert result.trace.check() == []


def test_tight_schedules_do_reach_the_limit():
    cfg = MPCConfig(n=50, eps=0.5)
    schedule = make_schedule(cfg, 3, seed=1, tight=True)
    trace = Simulator(cfg).run(ScriptedProtocol(schedule), schedule.input_data()).trace
    assert trace.max_sent == trace.max_received == trace.max_memory == cfg.s


@given(schedule=schedules(), seed=st.integers(0, 2**32 - 1))
def test_machine_and_batch_styles_give_identical_traces_outputs_and_inboxes(schedule, seed):
    by_machine, by_batch = ScriptedProtocol(schedule), ScriptedProtocol(schedule)
    a = Simulator(schedule.config, mode="machine").run(by_machine, schedule.input_data(), seed=seed)
    b = Simulator(schedule.config, mode="batch").run(by_batch, schedule.input_data(), seed=seed)
    assert a.trace.counts() == b.trace.counts()
    assert np.array_equal(bits(a.output), bits(b.output))
    assert a.state.equals(b.state)
    assert by_machine.log.keys() == by_batch.log.keys()
    for key in by_machine.log:
        assert by_machine.log[key][0] == by_batch.log[key][0]
        assert np.array_equal(bits(by_machine.log[key][1]), bits(by_batch.log[key][1]))


def test_auto_mode_prefers_batch_and_styles_can_be_forced():
    schedule = make_schedule(MPCConfig(n=20, eps=0.5), 1, seed=0)
    sim = Simulator(schedule.config)
    assert sim.resolve_mode(ScriptedProtocol(schedule)) == "batch"
    assert sim.resolve_mode(MachineOnly(schedule)) == "machine"
    assert Simulator(schedule.config, mode="machine").resolve_mode(ScriptedProtocol(schedule)) == "machine"
    with pytest.raises(ProtocolError, match="has no batch_step"):
        Simulator(schedule.config, mode="batch").run(MachineOnly(schedule), schedule.input_data())
    with pytest.raises(ProtocolError, match="has no per-machine step"):
        Simulator(schedule.config, mode="machine").run(BatchOnly(schedule), schedule.input_data())

    class Nothing(Protocol):
        def rounds_bound(self, config):
            return 0
    with pytest.raises(ProtocolError, match="implements neither"):
        sim.run(Nothing(), np.arange(20))


# --- limits: exceeding by one word, strict and non-strict -----------------------------------------
@pytest.mark.parametrize("mode", ["machine", "batch"])
@given(schedule=schedules(tight=True, max_rounds=2), kind=st.sampled_from(["send", "receive", "memory"]),
       where=st.integers(0, 10**6), seed=st.integers(0, 1000))
def test_one_word_over_a_limit_raises_the_typed_error_naming_round_machine_observed_and_limit(
        mode, schedule, kind, where, seed):
    cfg = schedule.config
    last = schedule.rounds + (1 if kind == "memory" else 0)
    assume(last >= 1)
    r = 1 + where % last
    machine = (where // last) % cfg.machines
    injected = inject_violation(schedule, kind, r, machine, seed)
    assume(injected is not None)
    bad, (want_kind, want_round, want_machine) = injected
    with pytest.raises(LIMIT_ERRORS[want_kind]) as info:
        Simulator(cfg, mode=mode).run(ScriptedProtocol(bad), bad.input_data())
    err = info.value
    assert (err.round, err.machine, err.observed, err.limit) == (want_round, want_machine, cfg.s + 1, cfg.s)
    assert f"round {want_round}, machine {want_machine}" in str(err)
    assert f"{cfg.s + 1} words, limit s = {cfg.s} ({want_kind} limit exceeded by 1)" in str(err)


class KeepAndReceive(Protocol):
    """Machine 1 starts with ``kept`` words and keeps them; in round 1 machine 0 sends it ``received``."""

    name = "keep-and-receive"

    def __init__(self, kept, received):
        self.kept, self.received = kept, received

    def rounds_bound(self, config):
        return 1

    def initial_state(self, config, data):
        memories = [np.arange(0)] * config.machines
        memories[1] = np.arange(self.kept)
        return ClusterState.from_list(memories)

    def step(self, ctx, machine, memory, inbox):
        if ctx.round == 1:
            return memory, ([(1, np.arange(self.received))] if machine == 0 else [])
        return memory[:0], []


def test_memory_counts_kept_words_plus_inbox():
    cfg = MPCConfig(n=16, eps=0.5)                     # s = 4, 4 machines
    trace = Simulator(cfg).run(KeepAndReceive(2, 2), np.arange(16)).trace
    assert trace.output.max_memory == 4 and trace.check() == []
    with pytest.raises(MemoryLimitExceeded) as info:
        Simulator(cfg).run(KeepAndReceive(2, 3), np.arange(16))
    assert (info.value.round, info.value.machine, info.value.observed, info.value.limit) == (2, 1, 5, 4)
    with pytest.raises(MemoryLimitExceeded) as info:             # the initial placement is checked too
        Simulator(cfg).run(KeepAndReceive(5, 1), np.arange(16))
    assert (info.value.round, info.value.machine, info.value.observed) == (1, 1, 5)


@pytest.mark.parametrize("mode", ["machine", "batch"])
@given(schedule=schedules(loose=True, max_rounds=3))
def test_over_limit_patterns_strict_raises_the_first_and_non_strict_records_every_violation(mode, schedule):
    cfg = schedule.config
    expected = expected_run(schedule, "by_source").violations
    protocol = ScriptedProtocol(schedule)
    result = Simulator(cfg, strict=False, mode=mode).run(protocol, schedule.input_data())
    assert_run_matches_reference(schedule, protocol, result, "by_source")      # delivery stays exact
    assert result.trace.strict is False
    problems = result.trace.check()
    assert all(str(v) in problems for v in expected)
    if not expected:
        Simulator(cfg, mode=mode).run(ScriptedProtocol(schedule), schedule.input_data())
        return
    first = expected[0]
    with pytest.raises(LIMIT_ERRORS[first.kind]) as info:
        Simulator(cfg, mode=mode).run(ScriptedProtocol(schedule), schedule.input_data())
    assert (info.value.round, info.value.machine, info.value.observed, info.value.limit) == (
        first.round, first.machine, first.observed, first.limit)


def test_non_strict_records_each_machine_over_the_limit():
    cfg = MPCConfig(n=16, eps=0.5)                     # s = 4, 4 machines

    class EveryoneFloods(Protocol):
        name = "flood"

        def rounds_bound(self, config):
            return 1

        def step(self, ctx, machine, memory, inbox):
            if ctx.round == 1:              # each machine sends 5 words to machine 3
                return memory[:0], [(3, np.arange(5))]
            return memory[:0], []

    trace = Simulator(cfg, strict=False).run(EveryoneFloods(), np.arange(16)).trace
    kinds = [(v.kind, v.round, v.machine, v.observed) for v in trace.violations]
    assert kinds == [("send", 1, m, 5) for m in range(4)] + [("receive", 1, 3, 20), ("memory", 2, 3, 20)]
    assert trace.num_rounds == 1 and trace.rounds[0].max_received == 20
    assert len(trace.check()) >= 6


# --- unknown destinations and malformed protocols -------------------------------------------------
@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("mode", ["machine", "batch"])
@pytest.mark.parametrize("offset", [-1, 0, 7])
def test_unknown_destination_raises_even_when_not_strict(strict, mode, offset):
    cfg = MPCConfig(n=16, eps=0.5)
    destination = -1 if offset == -1 else cfg.machines + offset
    with pytest.raises(UnknownDestination) as info:
        Simulator(cfg, strict=strict, mode=mode).run(SendTo(destination), np.arange(16))
    err = info.value
    assert (err.round, err.machine, err.destination, err.machines) == (1, 0, destination, cfg.machines)
    assert f"unknown machine {destination}" in str(err) and "0..3" in str(err)


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("mode", ["machine", "batch"])
def test_empty_message_is_a_protocol_error(strict, mode):
    with pytest.raises(ProtocolError, match="carries 0 words"):
        Simulator(MPCConfig(n=16, eps=0.5), strict=strict, mode=mode).run(SendTo(2, payload=()), np.arange(16))


@pytest.mark.parametrize("name", sorted(BATCH_MALFORMED))
def test_malformed_batch_step_results_are_protocol_errors_naming_the_round(name):
    make, message = BATCH_MALFORMED[name]
    with pytest.raises(ProtocolError, match=message) as info:
        Simulator(MPCConfig(n=16, eps=0.5), mode="batch").run(Returns(make), np.arange(16))
    assert info.value.round == 1 and str(info.value).startswith("round 1")


@pytest.mark.parametrize("name", sorted(MACHINE_MALFORMED))
def test_malformed_step_results_are_protocol_errors_naming_the_round(name):
    make, message = MACHINE_MALFORMED[name]
    with pytest.raises(ProtocolError, match=message) as info:
        Simulator(MPCConfig(n=16, eps=0.5), mode="machine").run(Returns(make), np.arange(16))
    assert info.value.round == 1
    assert "machine 1" in str(info.value)


def test_never_halting_protocol_is_stopped_at_max_rounds():
    with pytest.raises(ProtocolError, match="still sending after max_rounds = 5") as info:
        Simulator(MPCConfig(n=16, eps=0.5), max_rounds=5).run(Rounds(10**9), np.arange(16))
    assert info.value.round == 6


@pytest.mark.parametrize("k", [1, 5])
def test_a_protocol_using_exactly_max_rounds_rounds_finishes(k):
    trace = Simulator(MPCConfig(n=16, eps=0.5), max_rounds=k).run(Rounds(k), np.arange(16)).trace
    assert trace.num_rounds == k and trace.check() == []


def test_simulator_arguments_are_checked():
    cfg = MPCConfig(n=16, eps=0.5)
    with pytest.raises(TypeError, match="MPCConfig"):
        Simulator({"n": 16})
    with pytest.raises(ValueError, match="mode"):
        Simulator(cfg, mode="fast")
    with pytest.raises(ValueError, match="max_rounds"):
        Simulator(cfg, max_rounds=0)
    with pytest.raises(ValueError, match="seed"):
        Simulator(cfg).run(Rounds(1), np.arange(16), seed=-1)


# --- input validation -----------------------------------------------------------------------------
class Identity(Protocol):
    name = "identity"

    def __init__(self, dtype=np.int64):
        self.word_dtype = np.dtype(dtype)

    def rounds_bound(self, config):
        return 0

    def step(self, ctx, machine, memory, inbox):
        return memory, []


@pytest.mark.parametrize("dtype, data, message", [
    (np.int64, np.arange(16) + 0.5, "input words must be integers, got dtype float64"),
    (np.int64, np.arange(16.0), "input words must be integers, got dtype float64"),
    (np.int64, np.array(["a"] * 16), "input words must be integers"),
    (np.int64, np.full(16, 2**63, dtype=np.uint64), "does not fit in an int64 word"),
    (np.int64, [2**64] * 16, "input words must be integers, got dtype object"),
    (np.int64, np.arange(15), "input has 15 words but the config says n = 16"),
    (np.int64, np.arange(17), "input has 17 words"),
    (np.int64, np.arange(16).reshape(4, 4), r"input must be a 1-D array of words, got shape \(4, 4\)"),
    (np.int64, 5, r"got shape \(\)"),
    (np.float64, np.r_[np.arange(15.0), np.nan], "input word 15 is nan"),
    (np.float64, np.r_[np.inf, np.arange(15.0)], "input word 0 is inf"),
    (np.float64, np.r_[np.arange(10.0), -np.inf, np.arange(5.0)], "input word 10 is -inf"),
    (np.float64, np.arange(16) + 1j, "must be real numbers"),
    (np.float64, np.array(["x"] * 16), "must be real numbers"),
    (np.float64, np.ones((16, 1)), "1-D"),
])
def test_bad_input_is_an_input_error_saying_what_is_wrong(dtype, data, message):
    with pytest.raises(InputError, match=message) as info:
        Simulator(MPCConfig(n=16, eps=0.5)).run(Identity(dtype), data)
    assert str(info.value).startswith("identity: ")


@pytest.mark.parametrize("dtype, data", [
    (np.int64, list(range(16))), (np.int64, np.arange(16, dtype=np.uint8)), (np.int64, np.ones(16, dtype=bool)),
    (np.int64, np.full(16, 2**63 - 1, dtype=np.uint64)), (np.float64, np.arange(16)),
    (np.float64, np.r_[-0.0, 1e308, np.arange(14.0)]),
])
def test_good_input_of_any_fitting_dtype_is_accepted_as_words(dtype, data):
    result = Simulator(MPCConfig(n=16, eps=0.5)).run(Identity(dtype), data)
    assert result.output.dtype == dtype
    assert np.array_equal(bits(result.output), bits(np.asarray(data).astype(dtype)))


def test_protocols_overwriting_memory_in_place_never_touch_the_callers_array():
    class SortInPlace(Identity):
        def rounds_bound(self, config):
            return 0

        def step(self, ctx, machine, memory, inbox):
            memory.sort()
            return memory, []

        def reference(self, data):
            return np.concatenate([np.sort(data[i:i + 4]) for i in range(0, 16, 4)])

    data = np.arange(16)[::-1].copy()
    before = data.copy()
    result = simulate(SortInPlace(), data, MPCConfig(n=16, eps=0.5), verify=True)
    assert np.array_equal(data, before)
    assert result.trace.verified is True
    assert result.output.tolist() == [12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3]


def test_simulate_verify_records_a_wrong_output():
    class Wrong(Identity):
        def reference(self, data):
            return data + 1
    assert simulate(Wrong(), np.arange(16), MPCConfig(n=16, eps=0.5), verify=True).trace.verified is False
    assert simulate(Wrong(), np.arange(16), MPCConfig(n=16, eps=0.5)).trace.verified is None


def test_on_round_sees_every_round_and_record_states_keeps_each_computation():
    cfg = MPCConfig(n=30, eps=0.5)
    schedule = make_schedule(cfg, 3, seed=5)
    seen = []
    result = Simulator(cfg, on_round=seen.append).run(ScriptedProtocol(schedule), schedule.input_data(),
                                                      record_states=True)
    assert tuple(seen) == result.trace.rounds and len(seen) == 3
    assert len(result.states) == 4
    for state, memories in zip(result.states, schedule.memories):
        assert state.equals(ClusterState.from_list(memories))


# --- randomness -----------------------------------------------------------------------------------
class RandomScatter(Protocol):
    """Three rounds: every machine perturbs its words with ``ctx.rng`` and sends each to a machine
    chosen by ``ctx.uniform``. Both styles draw the same numbers."""

    name = "random-scatter"

    def rounds_bound(self, config):
        return 3

    def _move(self, ctx, machine, words):
        perturbed = words + ctx.rng(machine).integers(0, 1000, words.shape[0])
        dst = (ctx.uniform(machine, np.arange(words.shape[0])) * ctx.machines).astype(np.int64)
        return perturbed, dst

    def step(self, ctx, machine, memory, inbox):
        words = np.concatenate([memory, inbox.words])
        if ctx.round > 3:
            return words, []
        perturbed, dst = self._move(ctx, machine, words)
        return words[:0], [(int(d), perturbed[dst == d]) for d in np.unique(dst)]

    def batch_step(self, ctx, state, delivery):
        inboxes = delivery.inbox_state()
        memories = [np.concatenate([state.memory(m), inboxes.memory(m)]) for m in range(state.machines)]
        if ctx.round > 3:
            return ClusterState.from_list(memories), MessageBatch.empty()
        messages = []
        for machine, words in enumerate(memories):
            perturbed, dst = self._move(ctx, machine, words)
            messages.extend((machine, int(d), perturbed[dst == d]) for d in np.unique(dst))
        return ClusterState.empty(state.machines), MessageBatch.from_list(messages)


def test_same_seed_same_run_different_seed_different_run_in_both_styles():
    cfg = MPCConfig(n=64, eps=0.5, memory_factor=8)       # s = 64: any placement fits
    data = np.arange(64)
    runs = {(mode, seed): Simulator(cfg, mode=mode).run(RandomScatter(), data, seed=seed)
            for mode in ("machine", "batch") for seed in (1, 2)}
    again = Simulator(cfg, mode="batch").run(RandomScatter(), data, seed=1)
    for seed in (1, 2):
        a, b = runs[("machine", seed)], runs[("batch", seed)]
        assert a.trace.counts() == b.trace.counts()
        assert np.array_equal(a.output, b.output)
    assert again.trace.counts() == runs[("batch", 1)].trace.counts()
    assert np.array_equal(again.output, runs[("batch", 1)].output)
    assert not np.array_equal(runs[("batch", 1)].output, runs[("batch", 2)].output)
    assert runs[("batch", 1)].trace.counts() != runs[("batch", 2)].trace.counts()
    assert runs[("batch", 1)].trace.seed == 1
    assert all(run.output.shape == (64,) for run in runs.values())        # every word arrives somewhere
