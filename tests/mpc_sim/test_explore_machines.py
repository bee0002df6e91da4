"""The explorer's machine view, Explorer object, --watch and --serve (no browser needed here).

The oracle for a watched machine's contents is the protocol itself, run per machine: a spy
records the memory and inbox every ``step`` call is handed and the messages it returns."""
import html
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from mpc_sim import Simulator, make_protocol
from mpc_sim import explore
from mpc_sim.cli import parse_watch
from mpc_sim.explore import Explorer, check_watch, explore_data, explore_html, serve_html
from reductions.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]


def embedded(page_html):
    return json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', page_html,
                                re.S).group(1).replace("<\\/", "</"))


def exact(words):
    """The page's words back as Python ints (those past 2**53 are embedded as strings)."""
    return [int(w) for w in words]


def spy_on(protocol, seen):
    """``protocol`` whose per-machine ``step`` also records ``(round, machine) -> (memory, inbox, sent)``."""
    base = type(protocol)

    class Spy(base):
        def step(self, ctx, machine, memory, inbox):
            kept, messages = base.step(self, ctx, machine, memory, inbox)
            messages = list(messages)
            seen[(ctx.round, machine)] = (memory.tolist(), [[int(s), p.tolist()] for s, p in inbox],
                                          sorted([int(d), len(np.atleast_1d(p))] for d, p in messages))
            return kept, messages

    spy = object.__new__(Spy)
    spy.__dict__.update(protocol.__dict__)
    return spy


@pytest.mark.parametrize("name, n", [("sort", 3000), ("prefix-sum", 2000)])
def test_watched_contents_equal_what_each_machine_step_is_handed(name, n):
    protocol = make_protocol(name)
    config = protocol.default_config(n, 0.5)
    data = protocol.generate_input(config, seed=4)
    watch = [0, 3, config.machines - 1]
    page = embedded(explore_html(explore_data(protocol, config, data, seed=4, watch=watch)))
    seen = {}
    Simulator(config, mode="machine").run(spy_on(protocol, seen), data, seed=4)
    assert page["watch"] == watch
    checked_messages = 0
    for shown in page["rounds"]:
        r = shown["round"]
        assert sorted(shown["watched"]) == [str(m) for m in watch]
        for m in watch:
            memory, inbox, sent = seen[(r, m)]
            got = shown["watched"][str(m)]
            assert exact(got["kept"]) == memory and sorted(got["sent"]) == sent
            assert [[source, exact(words)] for source, words in got["inbox"]] == inbox
            # the memory strip (one cell per machine here) is kept words + inbox words
            assert shown["memory"][m] == len(memory) + sum(len(words) for _, words in inbox)
            assert shown["sent"][m] == sum(length for _, length in sent)
            checked_messages += len(inbox) + len(sent)
    assert checked_messages > 0           # the comparison saw real traffic


def test_words_javascript_cannot_read_exactly_are_embedded_as_strings():
    ints = np.array([1, -(2**53), 2**53 + 1, -(2**63)], dtype=np.int64)
    assert explore._words(ints) == [1, -(2**53), str(2**53 + 1), str(-(2**63))]
    floats = np.array([0.5, np.nan, np.inf], dtype=np.float64)
    assert explore._words(floats) == [0.5, "nan", "inf"]


def test_watch_lists_are_checked_and_parsed():
    assert check_watch(None, 5) == [0, 1, 2, 3, 4] and check_watch(None, 100) == list(range(explore.DEFAULT_WATCH))
    assert check_watch([3, 1, 3], 5) == [1, 3]
    with pytest.raises(ValueError, match="machine 5 does not exist: the cluster has machines 0 .. 4"):
        check_watch([1, 5], 5)
    with pytest.raises(ValueError, match="at most MAX_WATCH"):
        check_watch(range(explore.MAX_WATCH + 1), 10**6)
    assert parse_watch("0-2,7") == [0, 1, 2, 7] and parse_watch(None) is None
    with pytest.raises(ValueError, match="--watch takes machine ids and ranges"):
        parse_watch("0-x")


def test_bad_watch_is_refused_in_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    ran = []
    monkeypatch.setattr(explore, "explore_data", lambda *a, **k: ran.append(1))
    for watch, message in [("0,9999", "machine 9999 does not exist"), ("a", "--watch takes machine ids")]:
        assert cli_main(["explore", "sort", "--n", "2000", "--watch", watch, "--out", str(tmp_path / "x.html")]) == 2
        out = capsys.readouterr().out
        assert message in out and out.count("\n") == 1
    assert ran == [] and not (tmp_path / "x.html").exists()


def test_explorer_renders_in_jupyter_as_the_same_page_and_refuses_missing_rounds():
    protocol = make_protocol("prefix-sum")
    config = protocol.default_config(200, 0.5)
    view = explore.explore(protocol, config, protocol.generate_input(config, seed=1), seed=1, start_round=2)
    frame = view._repr_html_()
    srcdoc = re.fullmatch(r'<iframe srcdoc="(.*?)" style=.*</iframe>', frame, re.S).group(1)
    assert html.unescape(srcdoc) == view.html() == explore_html(view.page, 2)
    assert '"' not in srcdoc and "show(1);" in view.html()
    with pytest.raises(ValueError, match=f"this run of prefix-sum has {view.num_rounds} rounds"):
        Explorer(view.page, view.num_rounds + 1)
    with pytest.raises(ValueError, match="round 9 does not exist"):
        explore.explore(protocol, config, protocol.generate_input(config, seed=1), start_round=9)


def test_serve_html_serves_the_page_on_localhost_and_stops():
    server, url = serve_html("<p>hello explorer</p>")
    try:
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert reply.status == 200 and reply.read() == b"<p>hello explorer</p>"
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(url + "other", timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_explore_serve_prints_a_url_that_serves_the_written_page(tmp_path):
    out = tmp_path / "sort.html"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-u", "-m", "reductions.cli", "explore", "sort", "--n", "2000",
                             "--out", str(out), "--serve"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, cwd=ROOT)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            found = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
            if found:
                break
        assert found, "".join(lines)
        with urllib.request.urlopen(found.group(1), timeout=20) as reply:
            assert reply.read().decode() == out.read_text()
        assert proc.poll() is None              # still serving until stopped
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_served_explorer_records_an_unwatched_machine_on_demand():
    protocol = make_protocol("sort")
    config = protocol.default_config(3000, 0.5)
    data = protocol.generate_input(config, seed=2)
    view = explore.explore(protocol, config, data, seed=2, watch=[0])
    assert "9" not in view.page["rounds"][0]["watched"]
    server, url = view.serve()
    try:
        with urllib.request.urlopen(url + "contents?machine=9", timeout=60) as reply:
            got = json.loads(reply.read())
        watched = explore_data(protocol, config, data, seed=2, watch=[9])
        assert got == {"machine": 9, "rounds": [r["watched"]["9"] for r in watched["rounds"]]}
        for bad in ("machine=99999", "machine=x", "other=1"):
            with pytest.raises(urllib.error.HTTPError, match="400"):
                urllib.request.urlopen(url + "contents?" + bad, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    plain, plain_url = serve_html(view.html())          # no recorder: nothing to ask for
    try:
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(plain_url + "contents?machine=9", timeout=10)
    finally:
        plain.shutdown()
        plain.server_close()
