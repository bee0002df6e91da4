"""Trace: lossless JSON, self-check against the config, rendering and one-line summary."""
import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given
from rich.console import Console

from mpc_sim import MPCConfig, OutputStats, RoundStats, Simulator, Trace, Violation
from mpc_sim.strategies import ScriptedProtocol, make_schedule, traces

CFG = MPCConfig(n=100, eps=0.5)        # s = 10, 10 machines


def clean_trace(**changes):
    rounds = (RoundStats(1, 10, 5.0, 10, 8, 50, 12, 10, 0.25), RoundStats(2, 9, 4.5, 3, 3, 20, 7, 6, 0.5))
    base = dict(protocol="demo", config=CFG, rounds=rounds, rounds_bound=2, output=OutputStats(8, 2.0, 10, 0.125))
    return Trace(**{**base, **changes})


def render(trace, width=200):
    console = Console(record=True, width=width, color_system=None)
    console.print(trace)
    return console.export_text()


@given(traces())
def test_json_round_trip_is_lossless(trace):
    text = trace.to_json()
    back = Trace.from_json(text)
    assert back == trace
    assert back.counts() == trace.counts()
    assert [r.wall_time for r in back.rounds] == [r.wall_time for r in trace.rounds]   # not compared by ==
    assert back.to_json() == text


def test_json_file_round_trip_by_path(tmp_path):
    trace = clean_trace(violations=(Violation("send", 1, 3, 11, 10),), verified=True, params={"k": 4}, seed=7)
    path = tmp_path / "trace.json"
    text = trace.to_json(path)
    assert path.read_text() == text
    assert Trace.from_json(path) == trace
    assert Trace.from_json(str(path)) == trace


def test_json_has_the_documented_keys():
    data = json.loads(clean_trace().to_json())
    assert {"protocol", "config", "rounds", "rounds_bound", "verified"} <= set(data)
    assert {"n", "eps", "gamma", "s", "machines"} <= set(data["config"])
    assert data["config"]["s"] == 10 and data["config"]["machines"] == 10
    for row in data["rounds"]:
        assert {"round", "max_memory", "max_sent", "max_received", "total_words", "active_machines"} <= set(row)
    assert [r["round"] for r in data["rounds"]] == [1, 2]
    assert data["rounds"][0]["max_received"] == 8 and data["rounds_bound"] == 2 and data["verified"] is None


def test_from_json_refuses_other_documents():
    with pytest.raises(ValueError, match="not an anna-mpc trace"):
        Trace.from_json('{"format": "something-else"}')


def test_simulator_trace_round_trips_through_json():
    schedule = make_schedule(MPCConfig(n=60, eps=0.5), 3, seed=3)
    trace = Simulator(schedule.config).run(ScriptedProtocol(schedule), schedule.input_data()).trace
    assert Trace.from_json(trace.to_json()) == trace


def test_check_passes_a_clean_trace():
    assert clean_trace().check() == []
    assert clean_trace(rounds_bound=None, output=None).check() == []


@pytest.mark.parametrize("field, problem", [
    ("max_memory", "round 2: max_memory = 11 > s = 10"),
    ("max_sent", "round 2: max_sent = 11 > s = 10"),
    ("max_received", "round 2: max_received = 11 > s = 10"),
])
def test_check_finds_a_round_over_s(field, problem):
    trace = clean_trace()
    rounds = (trace.rounds[0], dataclasses.replace(trace.rounds[1], **{field: 11}))
    assert clean_trace(rounds=rounds).check() == [problem]


def test_check_finds_output_step_over_s_bound_missed_and_recorded_violations():
    assert clean_trace(output=OutputStats(12, 2.0, 10)).check() == ["output step: max_memory = 12 > s = 10"]
    assert clean_trace(output=OutputStats(3, 2.0, 13)).check() == ["output step: max_output_memory = 13 > s = 10"]
    assert clean_trace(rounds_bound=1).check() == ["2 rounds > declared bound 1"]
    violation = Violation("receive", 2, 4, 15, 10)
    assert clean_trace(violations=(violation,)).check() == ["round 2, machine 4: receive 15 > s = 10"]
    many = clean_trace(rounds_bound=0, output=OutputStats(11, 1.0, 11), violations=(violation,)).check()
    assert len(many) == 4


def test_records_refuse_impossible_values():
    with pytest.raises(ValueError, match="start at 1"):
        RoundStats(0, 1, 1.0, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="max_sent must be >= 0"):
        RoundStats(1, 1, 1.0, -1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="cannot exceed"):
        RoundStats(1, 1, 1.0, 5, 1, 4, 1, 1)
    with pytest.raises(ValueError, match="not a violation"):
        Violation("send", 1, 0, 10, 10)
    with pytest.raises(ValueError, match="violation kind"):
        Violation("disk", 1, 0, 11, 10)
    with pytest.raises(ValueError, match="numbered 3"):
        clean_trace(rounds=(RoundStats(3, 1, 1.0, 1, 1, 1, 1, 1),))


def test_counts_ignore_wall_times_only():
    a = clean_trace()
    b = clean_trace(rounds=tuple(dataclasses.replace(r, wall_time=9.0) for r in a.rounds))
    assert a.counts() == b.counts() and a == b
    c = clean_trace(rounds=(a.rounds[0], dataclasses.replace(a.rounds[1], messages=8)))
    assert a.counts() != c.counts()


def test_aggregates_over_rounds_and_output():
    trace = clean_trace()
    assert (trace.num_rounds, trace.max_sent, trace.max_received, trace.total_words) == (2, 10, 8, 70)
    assert trace.max_memory == 10
    assert trace.wall_time == pytest.approx(0.875)
    assert clean_trace(rounds=(), output=None).max_memory == 0


def test_rich_table_shows_title_columns_and_every_round():
    text = render(clean_trace())
    assert "demo: n = 100, eps = 0.5, s = 10, machines = 10, rounds = 2 (bound 2)" in " ".join(text.split())
    for column in ("round", "max mem", "mean mem", "max sent", "max recv", "words", "msgs", "active", "time"):
        assert column in text
    cells = [line.split() for line in text.splitlines()]
    assert ["1", "10", "5.0", "10", "8", "50", "12", "10", "250.0ms"] in cells
    assert ["2", "9", "4.5", "3", "3", "20", "7", "6", "500.0ms"] in cells
    assert ["output", "8", "2.0", "-", "-", "-", "-", "-", "125.0ms"] in cells


def test_rich_table_shows_protocol_names_with_brackets_literally():
    assert "khop[k=4][/b]: n = 100" in render(clean_trace(protocol="khop[k=4][/b]"))


def test_rich_table_marks_values_over_s():
    trace = clean_trace(rounds=(RoundStats(1, 12, 5.0, 10, 8, 50, 12, 10),))
    console = Console(record=True, width=200, force_terminal=True, color_system="standard")
    console.print(trace)
    styled = console.export_text(styles=True)
    assert "\x1b[1;31m12\x1b[0m" in styled          # bold red: over s
    assert "\x1b[1;31m10" not in styled              # at s: plain


def test_summary_line_reports_rounds_fractions_of_s_violations_and_verdict():
    line = clean_trace().summary()
    assert line == ("demo: rounds 2 (bound 2), max memory/s 1.00, max sent/s 1.00, max received/s 0.80, "
                    "0 violations, not verified")
    assert clean_trace(verified=True).summary().endswith("0 violations, verified")
    assert clean_trace(verified=False).summary().endswith("WRONG OUTPUT")
    bad = clean_trace(rounds_bound=None, violations=(Violation("send", 1, 0, 11, 10),) * 2)
    assert "rounds 2 (bound ?)" in bad.summary() and "2 violations" in bad.summary()


def test_with_verified_copies_everything_else():
    trace = clean_trace(params={"a": 1}, seed=3)
    verified = trace.with_verified(np.bool_(True))
    assert verified.verified is True and trace.verified is None
    assert dataclasses.replace(verified, verified=None) == trace
