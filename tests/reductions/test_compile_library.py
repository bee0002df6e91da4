"""Every protocol of the library compiles and reproduces its simulator output exactly (EMA heads).

A small instance of each protocol runs in the default suite (sizes where it communicates: sort's
default constants keep inputs below ``s`` on one machine until n is a few hundred); the larger
instances are marked slow (connectivity's ~100 rounds of ~50 routing heads take minutes there).
"""
import numpy as np
import pytest

from mpc_sim import Simulator
from mpc_sim.protocols import CATALOG, make_protocol
from reductions.compile import compile_mpc

PARAMS = {"aggregate": [{"op": "sum"}, {"op": "min"}], "khop": [{"k": 1}, {"k": 5}]}
SMALL = {"connectivity": 16, "sort": 400}
LARGE = {"sort": 1000}


def _cases():
    for name in sorted(CATALOG):
        for params in PARAMS.get(name, [{}]):
            tag = f"{name}-{params}"
            yield pytest.param(name, params, SMALL.get(name, 32), 0.5, id=f"{tag}-small")
            yield pytest.param(name, params, LARGE.get(name, 100), 0.6, id=f"{tag}-large", marks=pytest.mark.slow)


def test_the_case_table_covers_every_protocol_of_the_catalog():
    covered = {case.values[0] for case in _cases()}
    assert covered == set(CATALOG)


@pytest.mark.parametrize("name,params,n,eps", list(_cases()))
def test_library_protocol_compiles_and_reproduces_the_simulator(name, params, n, eps):
    protocol = make_protocol(name, **params)
    config = protocol.default_config(n, eps)
    data = protocol.generate_input(config, seed=3)
    sim = Simulator(config, mode="machine").run(protocol, data, seed=3)
    assert sim.trace.num_rounds >= 1, "the instance must communicate to test routing"
    model = compile_mpc(protocol, config, seed=3, rounds=sim.trace.num_rounds)
    run = model.run(data)
    assert np.array_equal(np.asarray(run.output).view(np.int64), np.asarray(sim.output).view(np.int64))
    assert model.report.depth == sim.trace.num_rounds
    assert model.align(data, run).all_match
