"""explore --compile: layers beside rounds, the alignment, and ANNA collisions against the oracle."""
import json
import re

import numpy as np
import pytest

from anna import collision_counts
from anna.reference import normalize_rows
from anna.transformer.maps import apply_map
from mpc_sim import make_protocol
from reductions import explore as rexplore
from reductions.cli import main as cli_main
from reductions.compile import compile_mpc
from reductions.explore import compiled_section, head_collisions


def embedded(page_html):
    return json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', page_html,
                                re.S).group(1).replace("<\\/", "</"))


@pytest.fixture(scope="module")
def anna_model():
    protocol = make_protocol("prefix-sum")
    config = protocol.default_config(64, 0.5)
    data = protocol.generate_input(config, seed=3)
    model = compile_mpc(protocol, config, seed=3, attention="anna")
    return model, data, model.run(data, engine="dense")


def test_collisions_per_table_sum_to_the_dense_oracle_and_the_forward_counts(anna_model):
    model, data, run = anna_model
    layer = 0
    x = run.forward.states[layer]
    positions = np.arange(x.shape[0])
    nonzero = 0
    for h, head in enumerate(model.transformer.layers[layer].heads):
        q = apply_map("query", head.query, x, positions, head.dim)
        k = apply_map("key", head.key, x, positions, head.dim)
        if head.normalize:
            q, k = normalize_rows(q), normalize_rows(k)
        dense = collision_counts(q, k, head.lsh, seed=model.transformer.head_seed(layer, h))
        for query in range(x.shape[0]):
            found = head_collisions(model, run, layer, h, query)
            per_key = np.zeros(x.shape[0], dtype=np.int64)
            for key, tables in found["keys"]:
                assert tables == sorted(set(tables)) and all(0 <= t < head.lsh.ell for t in tables)
                per_key[key] = len(tables)
            assert per_key.tolist() == dense[query].tolist()
            assert found["total"] == run.forward.counts[layer][h][query]
            nonzero += found["total"] > 0
    assert nonzero > 0


def test_bad_layer_head_or_query_is_named(anna_model):
    model, data, run = anna_model
    with pytest.raises(ValueError, match="layer 99 does not exist"):
        head_collisions(model, run, 99, 0, 0)
    with pytest.raises(ValueError, match="query 999 does not exist"):
        head_collisions(model, run, 0, 0, 999)
    ema = compile_mpc(model.protocol, model.plan.config, seed=3)
    with pytest.raises(ValueError, match="is not an ANNA head"):
        head_collisions(ema, ema.run(data), 0, 0, 0)


def test_compiled_section_lists_every_layer_with_its_round_and_the_alignment(anna_model):
    model, data, run = anna_model
    section = compiled_section(model, data, query=0)
    assert [row[0] for row in section["layers"]] == list(range(model.plan.depth))
    assert [tuple(row[1:3]) for row in section["layers"]] == [model.plan.round_of_layer(i)
                                                               for i in range(model.plan.depth)]
    assert [tuple(a) for a in section["alignment"]] == list(model.align(data).rows)
    heads = section["collisions"]["heads"]
    assert [h["head"] for h in heads] == [i for i, head in enumerate(model.transformer.layers[0].heads)
                                          if head.kind == "anna"]
    assert [h["total"] for h in heads] == [int(run.forward.counts[0][h["head"]][0]) for h in heads]


def test_explore_compile_writes_the_section(tmp_path, capsys):
    out = tmp_path / "p.html"
    assert cli_main(["explore", "prefix-sum", "--n", "64", "--compile", "--out", str(out)]) == 0
    page = embedded(out.read_text())
    assert page["compiled"]["depth"] == len(page["compiled"]["layers"]) >= page["num_rounds"]
    assert page["compiled"]["collisions"] is None           # ema heads: nothing hashed
    assert all(matching == page["machines"] for _, _, matching, _ in page["compiled"]["alignment"])


def test_explore_compile_refuses_a_bad_query_or_layer_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    ran = []
    monkeypatch.setattr(rexplore, "compiled_section", lambda *a, **k: ran.append(1))
    for args, message in [(["--query", "500"], "query 500 does not exist"),
                          (["--layer", "-1"], "layer -1 does not exist"),
                          (["--layer", "40"], "layer 40 does not exist: the model has layers 0 .. 1")]:
        code = cli_main(["explore", "prefix-sum", "--n", "64", "--compile", "--attention", "anna", *args,
                         "--out", str(tmp_path / "x.html")])
        out = capsys.readouterr().out
        assert code == 2 and message in out and out.count("\n") == 1, out
    assert ran == [] and not (tmp_path / "x.html").exists()
