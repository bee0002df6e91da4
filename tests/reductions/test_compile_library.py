"""Every protocol of the library compiles and reproduces its simulator output exactly (EMA heads)."""
import numpy as np
import pytest

from mpc_sim import Simulator
from mpc_sim.protocols import CATALOG, make_protocol
from reductions.compile import compile_mpc

PARAMS = {"aggregate": [{"op": "sum"}, {"op": "min"}], "khop": [{"k": 1}, {"k": 5}], "match2": [{}]}


def _cases():
    for name in sorted(CATALOG):
        for params in PARAMS.get(name, [{}]):
            for n, eps in ((48, 0.5), (100, 0.6)):
                yield pytest.param(name, params, n, eps, id=f"{name}-{params}-n{n}-eps{eps}")


@pytest.mark.parametrize("name,params,n,eps", list(_cases()))
def test_library_protocol_compiles_and_reproduces_the_simulator(name, params, n, eps):
    protocol = make_protocol(name, **params)
    config = protocol.default_config(n, eps)
    data = protocol.generate_input(config, seed=3)
    sim = Simulator(config, mode="machine").run(protocol, data, seed=3)
    model = compile_mpc(protocol, config, seed=3, rounds=sim.trace.num_rounds)
    run = model.run(data)
    assert np.array_equal(np.asarray(run.output).view(np.int64), np.asarray(sim.output).view(np.int64))
    assert model.report.depth == sim.trace.num_rounds
    assert model.align(data, run).all_match
