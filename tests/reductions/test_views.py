"""Named stream dimensions, model listings and reductions.testing's assertions."""
import re

import numpy as np
import pytest
from rich.console import Console

from mpc_sim import MPCConfig, Protocol
from mpc_sim.protocols import make_protocol
from mpc_sim.protocols.aggregate import Aggregate
from reductions.compile import compile_mpc
from reductions.compile.layouts import Message, words_to_limbs
from reductions.compile.stream import TokenState
from reductions.testing import (CompilationMismatch, ModelBudgetExceeded, assert_compiles_exactly,
                                assert_model_within)


def render(renderable, width=80):
    console = Console(record=True, width=width, color_system=None, file=open("/dev/null", "w"))
    console.print(renderable)
    return console.export_text()


@pytest.fixture(scope="module", params=["hashed", "disjunct"])
def model(request):
    protocol = make_protocol("khop", k=2)
    return compile_mpc(protocol, protocol.default_config(32, 0.5), layout=request.param)


def test_stream_names_say_what_each_dimension_of_an_encoded_token_holds(model):
    names = model.stream_names()
    assert len(names) == model.stream.dim and len(set(names)) == len(names)
    column = {name: i for i, name in enumerate(names)}
    state = TokenState(5, memory=np.array([7, -3]), outbox=[(2, np.array([11])), (9, np.array([4, 6]))],
                       inbox=[(3, 0, np.array([8]))])
    row = model.stream.encode(state)
    assert row[column["machine"]] == 5 and row[column["memory.length"]] == 2
    assert [row[column[f"memory[1].limb{i}"]] for i in range(3)] == words_to_limbs(np.array([-3]))[0].tolist()
    assert (row[column["outbox.count"]], row[column["outbox[1].dst"]], row[column["outbox[1].length"]]) == (2, 9, 2)
    assert (row[column["inbox.count"]], row[column["inbox[0].src"]], row[column["inbox[0].length"]]) == (1, 3, 1)


def test_packet_slot_names_match_where_the_layout_writes(model):
    names = model.stream_names()
    start = model.stream.head_slice(0).start
    packet = model.layout.encode(Message(7, 3, np.array([1, 2, 3])))
    fields = {}
    for offset, value in enumerate(packet):
        slot, _, field = names[start + offset].rpartition(".")
        fields.setdefault(slot, {})[field] = value
    occupied = [f for f in fields.values() if f.get("count", f.get("valid", 0)) > 0]
    assert occupied
    for f in occupied:
        copies = f.get("count", f.get("valid"))
        assert (f["src"], f["dst"]) == (7 * copies, 3 * copies)


def test_show_lists_layers_with_readable_map_names_at_80_columns(model):
    console = Console(record=True, width=80, color_system=None, file=open("/dev/null", "w"))
    model.show(console, max_rows=4)
    text = console.export_text()
    assert "<locals>" not in text and "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    assert f"{model.report.depth - 4} layers not shown" in " ".join(text.split())
    wide = Console(record=True, width=250, color_system=None, file=open("/dev/null", "w"))
    model.show(wide)
    text = wide.export_text()
    assert "key=dst of outbox[i], value=packet of outbox[i] -> route{h}." in text and "global.anyone_sends" in text
    assert f"{model.report.depth - 1} " in text and "not shown" not in text
    tree = render(model.transformer, width=120)
    assert "<locals>" not in tree and "callable own id" in re.sub(r"[\s│├└─]+", " ", tree)  # wrapped lines joined


def test_html_view_lists_every_layer_of_a_short_model():
    model = compile_mpc(Aggregate(op="sum"), MPCConfig(n=64, eps=0.5))
    html = model._repr_html_()
    assert f"{model.report.rounds} rounds -&gt; {model.report.depth} layers" in html
    assert len(re.findall(r"<tr><td>\d+</td><td>\d+", html)) == model.report.depth
    assert "decode inbox of round 1" in html


class Forgetful(Protocol):
    """Adds a counter of its own calls to the output: the compiled model calls step again, later."""

    name = "forgetful"

    def __init__(self):
        self.calls = 0

    def rounds_bound(self, config):
        return 1

    def fanout_bound(self, config):
        return 1

    def step(self, ctx, machine, memory, inbox):
        self.calls += 1
        if ctx.round == 1:
            return memory[:0], ([(0, memory)] if memory.size else [])
        return (np.concatenate([inbox.words, [self.calls]]) if machine == 0 else memory), []


def test_compiling_exactly_names_the_first_differing_word_and_layer():
    config = MPCConfig(n=16, eps=0.5, memory_factor=4.5)
    with pytest.raises(CompilationMismatch, match=r"compiled forgetful \(n = 16, s = 18\): output word 16 is "
                                                  r"\d+, the simulator's \d+; memories first differ after layer "
                                                  r"\d+ on machine 0"):
        assert_compiles_exactly(Forgetful(), config, np.arange(16))


def test_model_budgets_list_every_quantity_over():
    model = assert_compiles_exactly(Aggregate(op="sum"), MPCConfig(n=64, eps=0.5), depth=1)
    assert_model_within(model, depth=model.report.depth, width=model.report.width)
    with pytest.raises(ModelBudgetExceeded, match=r"depth 1 > budget 0 .*; width \d+ > budget 1 \(m \d+ x heads \d+\)"):
        assert_model_within(model, depth=0, width=1)
    with pytest.raises(ValueError, match="width budget must be an int"):
        assert_model_within(model, width=1.5)


def test_compile_command_elides_the_alignment_of_long_models(capsys, monkeypatch):
    from reductions.cli import main
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["compile", "connectivity", "--n", "64", "--eps", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80
    layers = int(re.search(r"-> (\d+) layers", out).group(1))
    assert layers > 20 and f"{layers + 1 - 20} layers not shown" in " ".join(out.split())
