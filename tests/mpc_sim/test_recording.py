"""Message recording, round-by-round runs, per-round peak machines, the style that ran, strict round bounds."""
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpc_sim import (MPCConfig, NotRecorded, Protocol, RecordingTooLarge, RoundBoundExceeded, Simulator, Trace,
                     make_protocol)
from mpc_sim.strategies import ScriptedProtocol, make_schedule, schedules
from mpc_sim.trace import PEAK_MACHINES, merge_top, top_machines
from tests.strategies.engine import reference_rounds


def plain_top(amounts, k=PEAK_MACHINES):
    """The reference: sort every machine by (-amount, id), keep the positive ones, first k."""
    pairs = sorted(((int(a), m) for m, a in enumerate(amounts) if a > 0), key=lambda p: (-p[0], p[1]))
    return tuple((m, a) for a, m in pairs[:k])


@given(schedules(), st.sampled_from(["machine", "batch"]))
def test_both_styles_record_the_messages_and_peaks_the_plain_reference_gives(schedule, mode):
    protocol = ScriptedProtocol(schedule)
    result = Simulator(schedule.config, strict=False, mode=mode).run(protocol, schedule.input_data(),
                                                                     record_messages=True)
    trace = result.trace
    assert trace.mode == mode
    expected = reference_rounds(schedule)
    assert len(trace.messages) == trace.num_rounds == len(expected)
    for recorded, (delivered, holding, sent, received) in zip(trace.messages, expected):
        got = list(zip(recorded.src.tolist(), recorded.dst.tolist(), recorded.words.tolist()))
        assert got == delivered
        peaks = trace.peaks[recorded.round - 1]
        assert peaks.round == recorded.round
        assert (peaks.memory, peaks.sent, peaks.received) == (plain_top(holding), plain_top(sent), plain_top(received))
    assert len(trace.peaks) == trace.num_rounds + 1            # the final local computation too
    assert trace.peaks[-1].round == trace.num_rounds + 1 and trace.peaks[-1].sent == ()


@given(schedules(max_rounds=2))
def test_machine_and_batch_styles_record_identical_messages(schedule):
    runs = [Simulator(schedule.config, strict=False, mode=mode).run(ScriptedProtocol(schedule), schedule.input_data(),
                                                                    record_messages=True).trace
            for mode in ("machine", "batch")]
    for a, b in zip(runs[0].messages, runs[1].messages):
        for name in ("src", "dst", "words"):
            assert np.array_equal(getattr(a, name), getattr(b, name))
    assert runs[0].peaks == runs[1].peaks


@given(st.lists(st.integers(0, 6), max_size=30), st.integers(1, 5))
def test_top_machines_matches_sorting_everything(amounts, k):
    assert top_machines(np.array(amounts, dtype=np.int64), k) == plain_top(amounts, k)


@given(st.lists(st.integers(0, 6), min_size=1, max_size=30), st.integers(1, 5), st.data())
def test_merging_the_top_machines_of_blocks_gives_those_of_the_whole_cluster(amounts, k, data):
    """What the Dask backend gathers per block (top_machines with global ids) merges into the cluster's."""
    cuts = sorted(data.draw(st.sets(st.integers(1, len(amounts) - 1), max_size=5)) if len(amounts) > 1 else [])
    bounds = [0, *cuts, len(amounts)]
    words = np.array(amounts, dtype=np.int64)
    blocks = [top_machines(words[lo:hi], k, first=lo) for lo, hi in zip(bounds, bounds[1:])]
    assert merge_top(blocks, k) == plain_top(amounts, k)


def test_library_protocol_styles_record_the_same_messages():
    protocol = make_protocol("prefix-sum")
    config = protocol.default_config(500, 0.5)
    data = protocol.generate_input(config, seed=1)
    traces = [Simulator(config, mode=mode).run(protocol, data, record_messages=True).trace for mode in ("machine", "batch")]
    assert [t.mode for t in traces] == ["machine", "batch"]
    for a, b in zip(traces[0].messages, traces[1].messages):
        assert np.array_equal(a.src, b.src) and np.array_equal(a.dst, b.dst) and np.array_equal(a.words, b.words)


def test_to_networkx_sums_the_recorded_words_per_pair():
    schedule = make_schedule(MPCConfig(n=40, eps=0.5), rounds=2, seed=5)
    trace = Simulator(schedule.config).run(ScriptedProtocol(schedule), schedule.input_data(), record_messages=True).trace
    for r in (1, 2):
        graph = trace.to_networkx(r)
        pairs: dict = {}
        for s, d, p in schedule.messages[r - 1]:
            words, count = pairs.get((s, d), (0, 0))
            pairs[(s, d)] = (words + len(p), count + 1)
        assert {(u, v): (w, c) for u, v, w, c in
                ((u, v, data["words"], data["messages"]) for u, v, data in graph.edges(data=True))} == pairs
        assert graph.number_of_nodes() == schedule.config.machines
        assert sum(graph.nodes[m]["received"] for m in graph) == trace.rounds[r - 1].total_words


def test_views_of_messages_need_the_recording_and_an_existing_round():
    schedule = make_schedule(MPCConfig(n=40, eps=0.5), rounds=1, seed=2)
    plain = Simulator(schedule.config).run(ScriptedProtocol(schedule), schedule.input_data()).trace
    with pytest.raises(NotRecorded, match="record_messages=True"):
        plain.to_networkx(1)
    recorded = Simulator(schedule.config).run(ScriptedProtocol(schedule), schedule.input_data(),
                                              record_messages=True).trace
    with pytest.raises(NotRecorded, match="round 2 does not exist"):
        recorded.to_networkx(2)


class Untouchable(Protocol):
    """A protocol that must never run: its step fails the test."""

    name = "untouchable"

    def rounds_bound(self, config):
        return 3

    def step(self, ctx, machine, memory, inbox):
        raise AssertionError("the run started although the recording was refused")


def test_a_recording_that_would_not_fit_is_refused_before_any_work():
    config = MPCConfig(n=10_000, eps=0.5)
    with pytest.raises(RecordingTooLarge) as error:
        Simulator(config).run(Untouchable(), np.arange(10_000), record_messages=True, record_limit=400_000)
    message = str(error.value)
    assert "\n" not in message and "untouchable" in message and "limit of 390.6 KiB" in message and "468.8 KiB" in message
    # 3 rounds x (100 machines x 100 words of fan-out) x 16 bytes
    assert "3 rounds x up to 10000 messages x 16 bytes" in message


def test_steps_yield_every_round_then_the_result_with_the_run_counts():
    protocol = make_protocol("sort")
    config = protocol.default_config(2000, 0.5)
    data = protocol.generate_input(config, seed=4)
    run = Simulator(config).run(protocol, data, seed=4)
    steps = list(Simulator(config).steps(protocol, data, seed=4))
    assert [s.round for s in steps] == list(range(1, run.trace.num_rounds + 2))
    assert [s.stats.counts() for s in steps[:-1]] == [r.counts() for r in run.trace.rounds]
    assert not any(s.final for s in steps[:-1]) and steps[-1].final
    assert steps[-1].result.trace.counts() == run.trace.counts()
    assert np.array_equal(steps[-1].result.output, run.output)


class TooManyRounds(Protocol):
    """Sends in every round up to ``rounds`` while declaring a bound of one round."""

    name = "too-many-rounds"

    def __init__(self, rounds):
        self.rounds = rounds

    def rounds_bound(self, config):
        return 1

    def step(self, ctx, machine, memory, inbox):
        words = np.concatenate([memory, inbox.words])
        if ctx.round <= self.rounds and words.size:
            return words[:0], [(machine, words)]        # everything to itself, every round
        return words, []


def test_strict_runs_stop_at_the_first_round_past_the_declared_bound():
    config = MPCConfig(n=16, eps=0.5)
    with pytest.raises(RoundBoundExceeded, match="round 2: too-many-rounds is still sending after its declared "
                                                 "rounds_bound = 1"):
        Simulator(config).run(TooManyRounds(3), np.arange(16))
    loose = Simulator(config, strict=False).run(TooManyRounds(3), np.arange(16)).trace
    assert loose.num_rounds == 3 and loose.check() == ["3 rounds > declared bound 1"]


class SpiedProtocol(Protocol):
    """Both styles; counts the calls of the per-machine one."""

    name = "spied"

    def __init__(self):
        self.step_calls = 0

    def rounds_bound(self, config):
        return 0

    def step(self, ctx, machine, memory, inbox):
        self.step_calls += 1
        return memory, []

    def batch_step(self, ctx, state, delivery):
        from mpc_sim import MessageBatch
        return state, MessageBatch.empty()


def test_auto_mode_runs_the_batch_style_and_says_so_in_the_trace():
    protocol = SpiedProtocol()
    simulator = Simulator(MPCConfig(n=16, eps=0.5))
    trace = simulator.run(protocol, np.arange(16)).trace
    assert protocol.step_calls == 0 and trace.mode == "batch" == simulator.resolve_mode(protocol)
    assert "batch style" in " ".join(trace.table().title.split())
    assert Simulator(MPCConfig(n=16, eps=0.5), mode="machine").run(protocol, np.arange(16)).trace.mode == "machine"
    assert protocol.step_calls > 0


def test_peaks_and_mode_survive_json():
    schedule = make_schedule(MPCConfig(n=60, eps=0.5), rounds=2, seed=9)
    trace = Simulator(schedule.config).run(ScriptedProtocol(schedule), schedule.input_data()).trace
    back = Trace.from_json(trace.to_json())
    assert back.peaks == trace.peaks and back.mode == trace.mode and back.peaks
    assert json.loads(trace.to_json())["peaks"][0]["round"] == 1
