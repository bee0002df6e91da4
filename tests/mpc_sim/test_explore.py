"""anna-mpc explore: the page's embedded numbers equal the trace and the recorded messages; bad input."""
import json
import re

import numpy as np
import pytest

from mpc_sim import Simulator, make_protocol
from mpc_sim import explore
from mpc_sim.explore import explore_data, explore_html, write_explorer
from reductions.cli import main as cli_main


def embedded(page_html):
    return json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', page_html,
                                re.S).group(1).replace("<\\/", "</"))


@pytest.mark.parametrize("name, n, strip, matrix", [("sort", 3000, None, None), ("prefix-sum", 2000, 7, 4)])
def test_page_numbers_equal_the_trace_and_the_recorded_messages(name, n, strip, matrix, monkeypatch):
    if strip is not None:           # small caps: the blocked views of large clusters, on a small one
        monkeypatch.setattr(explore, "MAX_STRIP", strip)
        monkeypatch.setattr(explore, "MAX_MATRIX", matrix)
    protocol = make_protocol(name)
    config = protocol.default_config(n, 0.5)
    data = protocol.generate_input(config, seed=2)
    page = embedded(explore_html(explore_data(protocol, config, data, seed=2)))
    trace = Simulator(config).run(protocol, data, seed=2, record_messages=True).trace
    assert page["num_rounds"] == trace.num_rounds == len(page["rounds"])
    q = config.machines
    block, cell = page["strip_block"], page["matrix_block"]
    assert (block > 1) == (strip is not None) and len(page["rounds"][0]["sent"]) == -(-q // block)
    for shown, stats, recorded, peaks in zip(page["rounds"], trace.rounds, trace.messages, trace.peaks):
        for key in ("max_memory", "max_sent", "max_received", "total_words", "messages", "active_machines"):
            assert shown[key] == getattr(stats, key)
        assert max(shown["memory"]) == stats.max_memory and max(shown["sent"]) == stats.max_sent
        assert max(shown["received"]) == stats.max_received
        sent = recorded.sent(q)
        assert shown["sent"] == [int(sent[i:i + block].max()) for i in range(0, q, block)]
        expected = {}
        for s, d, w in zip(recorded.src.tolist(), recorded.dst.tolist(), recorded.words.tolist()):
            key = (s // cell) * page["matrix_cells"] + d // cell
            expected[key] = expected.get(key, 0) + w
        assert {k: w for k, w in shown["matrix"]} == expected
        assert peaks.memory[0][1] == stats.max_memory


def test_explore_writes_a_self_contained_page(tmp_path, capsys):
    out = tmp_path / "sort.html"
    assert cli_main(["explore", "sort", "--n", "2000", "--round", "2", "--out", str(out)]) == 0
    text = out.read_text()
    assert "http://" not in text and "https://" not in text and "<script src" not in text
    assert "show(1);" in text and embedded(text)["protocol"] == "sort"
    assert "wrote" in capsys.readouterr().out


def test_explore_refuses_bad_paths_and_rounds_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")        # one line per error, however long the temporary path
    ran = []
    monkeypatch.setattr(explore, "explore_data", lambda *a, **k: ran.append(1))
    for args, message in [(["--out", str(tmp_path / "missing" / "x.html")], "folder"),
                          (["--out", str(tmp_path)], "is a directory"),
                          (["--round", "99", "--out", str(tmp_path / "x.html")], "round 99 does not exist"),
                          (["--round", "0", "--out", str(tmp_path / "x.html")], "round 0 does not exist")]:
        assert cli_main(["explore", "sort", "--n", "2000", *args]) == 2
        out = capsys.readouterr().out
        assert message in out and out.count("\n") == 1
    assert ran == []


def test_a_round_past_the_run_is_refused_before_writing(tmp_path):
    protocol = make_protocol("connectivity")          # runs far fewer rounds than its bound
    config = protocol.default_config(300, 0.5)
    data = protocol.generate_input(config, seed=0)
    rounds = Simulator(config).run(protocol, data).trace.num_rounds
    assert rounds < protocol.rounds_bound(config)
    with pytest.raises(ValueError, match=f"this run of connectivity has {rounds} rounds"):
        write_explorer(tmp_path / "x.html", protocol, config, data, start_round=rounds + 1)
    assert not (tmp_path / "x.html").exists()
    page = write_explorer(tmp_path / "y.html", protocol, config, data, start_round=rounds)
    assert page["num_rounds"] == rounds and np.isfinite(page["rounds"][-1]["mean_memory"])
