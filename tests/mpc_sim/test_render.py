"""Terminal and notebook output: 80 columns without a cut digit, long tables elided, compile notice."""
import re

import numba
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from mpc_sim import MPCConfig, OutputStats, RoundStats, Simulator, Trace, make_protocol
from mpc_sim.compile_notice import announce_compiles
from mpc_sim.render import compact_table, elide
from mpc_sim.strategies import configs
from reductions.cli import main as cli_main


def render(renderable, width=80):
    console = Console(record=True, width=width, color_system=None, file=open("/dev/null", "w"))
    console.print(renderable)
    return console.export_text()


@st.composite
def plausible_traces(draw):
    """Traces of runs of up to 10^9 words: per-machine amounts up to s (a little over, non-strict),
    totals up to machines * s, up to 9999 rounds, wall times up to an hour."""
    config = draw(configs(max_n=10**9))
    s, q = config.s, config.machines
    rounds = []
    for r in range(1, draw(st.integers(1, 4)) + 1):
        total = draw(st.integers(0, q * s))
        rounds.append(RoundStats(r, draw(st.integers(0, 2 * s)), draw(st.floats(0, 2 * s)), min(total, draw(
            st.integers(0, 2 * s))), min(total, draw(st.integers(0, 2 * s))), total, draw(st.integers(0, total)),
            draw(st.integers(0, q)), draw(st.floats(0, 3600))))
    rounds = [RoundStats(9999 - len(rounds) + i + 1, *r.counts()[1:], r.wall_time) for i, r in enumerate(rounds)] \
        if draw(st.booleans()) else rounds
    return config, rounds, OutputStats(draw(st.integers(0, s)), draw(st.floats(0, s)), draw(st.integers(0, s)),
                                       draw(st.floats(0, 3600)))


@given(plausible_traces())
def test_trace_tables_fit_80_columns_with_every_digit(case):
    config, rounds, output = case
    trace = Trace("sort", config, tuple(RoundStats(i + 1, *r.counts()[1:], r.wall_time) for i, r in enumerate(rounds)),
                  rounds_bound=5, output=output, mode="batch")
    text = render(trace)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    rows = [line.split() for line in text.splitlines()]
    for r in trace.rounds:
        expected = [str(r.round), str(r.max_memory)]
        assert any(row[:2] == expected and row[3:8] == [str(r.max_sent), str(r.max_received), str(r.total_words),
                                                         str(r.messages), str(r.active_machines)] for row in rows)
    assert any(row[:2] == ["output", str(output.max_memory)] for row in rows)


def test_simulate_at_80_columns_shows_whole_numbers_and_elides_long_runs(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    args = ["simulate", "connectivity", "--n", "3000", "--eps", "0.3"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80
    rounds = int(re.search(r"rounds (\d+) \(bound", out).group(1))
    assert rounds > 20
    shown = [line.split()[0] for line in out.splitlines() if re.match(r"\s*\d+\s+\d+", line)]
    assert shown == [str(r) for r in list(range(1, 11)) + list(range(rounds - 9, rounds + 1))]
    assert f"{rounds - 20} rounds not shown (--all shows every row)" in " ".join(out.split())
    assert cli_main(args + ["--all"]) == 0
    out = capsys.readouterr().out
    shown = [line.split()[0] for line in out.splitlines() if re.match(r"\s*\d+\s+\d+", line)]
    assert shown == [str(r) for r in range(1, rounds + 1)] and "not shown" not in out


def test_protocol_listing_fits_80_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert cli_main(["protocols", "--eps", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80
    from mpc_sim.protocols import make_protocol
    connectivity = make_protocol("connectivity")
    bound = connectivity.rounds_bound(connectivity.default_config(2**20, 0.5))
    assert str(bound) in out and "n=2^20" in out          # connectivity's bound at 2^20, whole


def test_compact_table_keeps_numbers_whole_and_elides_the_middle():
    rows = [[str(i), str(10**12 + i), "some words to wrap " * 3] for i in range(30)]
    text = render(compact_table("t", ["i", "big", "text"], rows, numeric=[True, True, False], max_rows=6), width=40)
    assert "…" not in text
    assert [r for r in ("1000000000000", "1000000000001", "1000000000002", "1000000000027", "1000000000028",
                        "1000000000029") if r in text] == ["1000000000000", "1000000000001", "1000000000002",
                                                           "1000000000027", "1000000000028", "1000000000029"]
    assert "1000000000003" not in text and "24 rows not shown" in " ".join(text.split())
    assert elide(list(range(5)), 4) == ([0, 1, 3, 4], 2, 1)


def test_compile_notice_says_compiling_once_and_how_long():
    @numba.njit
    def fresh(x):          # not cached: compiled in this test
        return x + 1

    lines = []
    with announce_compiles(lines.append) as listener:
        fresh(1)
        fresh(2)           # compiled already: nothing more
        fresh(1.5)         # a second signature: compiled, not announced again
    assert lines[0].startswith("compiling numba kernels") and len(lines) == 2
    assert re.fullmatch(r"compiled 2 numba kernels in \d+\.\d s \(cached from now on\)", lines[1])
    assert listener.kernels == 2
    with announce_compiles(lines.append):
        fresh(3)
    assert len(lines) == 2


def test_html_views_show_the_numbers():
    protocol = make_protocol("prefix-sum")
    config = protocol.default_config(300, 0.5)
    result = Simulator(config).run(protocol, protocol.generate_input(config, seed=0))
    html = result._repr_html_()
    for r in result.trace.rounds:
        assert f"<td>{r.total_words}</td>" in html
    assert "ClusterState" in html and f"{config.machines} machines" in html
    assert "&lt;b&gt;" in Trace("<b>", MPCConfig(n=16, eps=0.5), ())._repr_html_()
    assert result.state._repr_html_().count("<tr>") <= 2 + 12         # header, elision row, 12 machines
    assert np.asarray(result.output).size > 0


def test_first_cli_run_says_it_compiles_kernels_and_later_runs_do_not(tmp_path):
    import os
    import subprocess
    import sys
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"}
    command = [sys.executable, "-m", "reductions.cli", "simulate", "broadcast", "--n", "64", "--eps", "0.5"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    assert first.count("compiling numba kernels") == 1
    assert re.search(r"compiled \d+ numba kernels in \d+\.\d s", first)
    second = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    assert "numba" not in second
