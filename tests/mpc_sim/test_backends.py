"""The backend interface and its registry: backends are found by name (unknown names are a typed
error listing the registered ones); a backend written only against the interface (here a toy that
routes with plain Python sorting) gives the local engine's traces, outputs, states and errors; the
engine's replay after a lost round is checked on a toy that loses work; the Dask options are
checked on creation. Nothing here needs ``distributed``."""
import contextlib
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_sim import (MPCConfig, ParameterError, Protocol, ProtocolError, Simulator, UnknownBackend,
                     UnknownDestination, make_protocol, simulate)
from mpc_sim.backends import (Backend, BackendError, BackendRun, Computed, DaskBackend, DaskOptions, History,
                              LocalBackend, Lost, Routed, backend_names, make_backend, register_backend,
                              unregister_backend)
from mpc_sim.backends.base import (Traffic, call_batch_step, check_batch, check_state, initial_state,
                                   machine_by_machine, over_limit, step_result)
from reductions.cli import main as cli_main
from mpc_sim.protocol import RoundContext
from mpc_sim.state import Delivery, MessageBatch
from mpc_sim.strategies import ScriptedProtocol, schedules
from mpc_sim.trace import Retry
from tests.strategies.engine import BATCH_MALFORMED, LIMIT_ERRORS, MACHINE_MALFORMED, Returns, Rounds, SendTo


def plain_route(batch: MessageBatch, machines: int) -> Delivery:
    """Messages sorted stably by destination with Python's sort (no numba kernel)."""
    order = sorted(range(batch.num_messages), key=lambda j: int(batch.dst[j]))
    payloads = [batch.words[batch.offsets[j]:batch.offsets[j + 1]] for j in order]
    offsets = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum([p.shape[0] for p in payloads], out=offsets[1:])
    words = np.concatenate(payloads) if payloads else np.zeros(0, dtype=batch.words.dtype)
    messages = MessageBatch(batch.src[order].astype(np.int64), batch.dst[order].astype(np.int64), offsets,
                            words.astype(batch.words.dtype))
    counts = np.bincount(messages.dst, minlength=machines)
    machine_offsets = np.zeros(machines + 1, dtype=np.int64)
    np.cumsum(counts, out=machine_offsets[1:])
    return Delivery(messages, machine_offsets)


class ToyRun(BackendRun):
    """Everything computed, nothing returned early: the engine alone decides what is raised."""

    def __init__(self, job):
        self.job = job
        self.delivery = Delivery.empty(job.config.machines, job.protocol.word_dtype)

    def start(self, words):
        self.words = words
        self.state = initial_state(self.job.protocol, self.job.config, words)
        return History()

    def compute(self, r, keep_state):
        job = self.job
        holding = self.state.sizes() + self.delivery.words_per_machine()
        step = call_batch_step if job.mode == "batch" else machine_by_machine
        try:
            state, batch = step_result(step(job.protocol, RoundContext(r, job.config, job.seed), self.state,
                                            self.delivery), job.protocol, round=r)
            check_state(state, job.config.machines, job.protocol, round=r)
        except ProtocolError as exc:           # reported, raised by the engine after the memory check
            return Computed(over_limit(holding, job.config.s), error=exc)
        self.state, self.batch, self.holding = state, batch, holding
        kept = state.sizes()
        return Computed(over_limit(holding, job.config.s), messages=batch.num_messages, state=state,
                        kept_over=over_limit(kept, job.config.s), max_kept=int(kept.max(initial=0)),
                        traffic=Traffic.measure(holding, np.zeros_like(holding), words=0, messages=0))

    def route(self, r):
        job, batch = self.job, self.batch
        sent = check_batch(batch, job.config, job.protocol, round=r)
        self.delivery = plain_route(batch, job.config.machines)
        received = self.delivery.words_per_machine()
        return Routed(over_limit(sent, job.config.s), over_limit(received, job.config.s),
                      int(received.max(initial=0)),
                      Traffic.measure(self.holding, sent, words=batch.num_words, messages=batch.num_messages))


class Toy(Backend):
    name = "toy"

    @contextlib.contextmanager
    def open(self, job):
        yield ToyRun(job)


class LosingRun(ToyRun):
    """Loses round ``lose`` the first ``times`` times it computes it; restarts from the input."""

    def __init__(self, job, lose, times):
        super().__init__(job)
        self.lose, self.left, self.retries = lose, times, []

    def compute(self, r, keep_state):
        if r == self.lose and self.left:
            self.left -= 1
            raise Lost(ConnectionError(f"lost round {r}"))
        return super().compute(r, keep_state)

    def recover(self, r, error):
        self.start(self.words)
        self.delivery = Delivery.empty(self.job.config.machines, self.job.protocol.word_dtype)
        self.retries.append(Retry(r, 0, "input", str(error)))
        return 1


class Losing(Backend):
    name = "losing"

    def __init__(self, lose=2, times=1):
        self.lose, self.times = lose, times

    @contextlib.contextmanager
    def open(self, job):
        yield LosingRun(job, self.lose, self.times)


@pytest.fixture
def toy():
    register_backend("toy", Toy)
    yield "toy"
    unregister_backend("toy")


# --- the registry ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["spark", "", None, 2, "LOCAL"])
def test_an_unknown_backend_is_a_typed_error_listing_the_registered_names(name):
    with pytest.raises(UnknownBackend, match="backend must be one of") as info:
        Simulator(MPCConfig(n=16, eps=0.5), backend=name)
    assert isinstance(info.value, ParameterError) and info.value.known == backend_names()
    assert info.value.name == name and all(repr(known) in str(info.value) for known in backend_names())
    with pytest.raises(UnknownBackend):
        make_backend(name)


def test_the_built_in_backends_are_registered_by_name():
    assert backend_names()[:2] == ("local", "dask")
    assert isinstance(make_backend("local"), LocalBackend) and make_backend("local").name == "local"
    dask = make_backend("dask", DaskOptions(blocks=3))
    assert isinstance(dask, DaskBackend) and dask.options.blocks == 3


def test_a_registered_name_appears_in_the_unknown_name_error_and_leaves_with_unregister(toy):
    with pytest.raises(UnknownBackend, match="'toy'"):
        Simulator(MPCConfig(n=16, eps=0.5), backend="spark")
    unregister_backend(toy)
    assert toy not in backend_names()
    with pytest.raises(UnknownBackend, match="got 'toy'"):
        Simulator(MPCConfig(n=16, eps=0.5), backend=toy)
    register_backend(toy, Toy)          # the fixture unregisters it


def test_registering_checks_the_name_the_factory_and_what_it_returns(toy):
    for name in ("", "  ", None, 3):
        with pytest.raises(ParameterError, match="backend name"):
            register_backend(name, Toy)
    with pytest.raises(ParameterError, match="callable"):
        register_backend("other", Toy())
    with pytest.raises(ParameterError, match="already registered"):
        register_backend(toy, Toy)
    register_backend(toy, Losing, replace=True)
    assert isinstance(make_backend(toy), Losing)
    register_backend(toy, lambda: "not a backend", replace=True)
    with pytest.raises(TypeError, match="returned a str, not a Backend"):
        make_backend(toy)
    with pytest.raises(UnknownBackend):
        unregister_backend("never-registered")


# --- a backend written against the interface gives the local engine's runs -----------------------------------
def assert_same_run(local, other):
    assert other.trace.counts() == local.trace.counts()
    assert other.trace == local.trace           # every compared field: rounds, bound, violations, seed, ...
    assert other.output.dtype == local.output.dtype            # bit for bit (NaN words included)
    assert np.array_equal(np.asarray(other.output).view(np.int64), np.asarray(local.output).view(np.int64))
    assert other.state.equals(local.state)
    assert len(other.states) == len(local.states)
    assert all(b.equals(a) for a, b in zip(local.states, other.states))


@settings(max_examples=15)
@given(schedule=schedules(loose=True, max_rounds=3), mode=st.sampled_from(["batch", "machine"]),
       strict=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_a_toy_backend_registered_by_name_gives_the_local_trace_state_by_state(schedule, mode, strict, seed):
    register_backend("toy", Toy, replace=True)
    try:
        runs = []
        for backend in ("local", "toy"):
            try:
                runs.append(Simulator(schedule.config, mode=mode, strict=strict, backend=backend).run(
                    ScriptedProtocol(schedule), schedule.input_data(), seed=seed, record_states=True))
            except tuple(LIMIT_ERRORS.values()) as exc:
                runs.append((type(exc), str(exc)))
    finally:
        unregister_backend("toy")
    local, toy = runs
    if isinstance(local, tuple):
        assert toy == local         # the same first error, round, machine and amount
    else:
        assert_same_run(local, toy)
        assert toy.trace.mode == mode and toy.trace.peaks == () and local.trace.peaks != ()


@pytest.mark.parametrize("name", ["prefix-sum", "sort", "khop", "connectivity"])
def test_library_protocols_give_the_local_output_and_trace_on_the_toy_backend(toy, name):
    protocol = make_protocol(name)
    config = protocol.default_config(256, 0.5)
    data = protocol.generate_input(config, seed=3)
    assert_same_run(simulate(protocol, data, config, seed=5), simulate(protocol, data, config, seed=5, backend=toy))


@pytest.mark.parametrize("mode, name", [("batch", name) for name in sorted(BATCH_MALFORMED)]
                         + [("machine", name) for name in sorted(MACHINE_MALFORMED)])
def test_malformed_steps_raise_the_local_error_on_the_toy_backend(toy, mode, name):
    make, message = (BATCH_MALFORMED if mode == "batch" else MACHINE_MALFORMED)[name]
    errors = []
    for backend in ("local", toy):
        with pytest.raises(ProtocolError, match=message) as info:
            Simulator(MPCConfig(n=16, eps=0.5), mode=mode, backend=backend).run(Returns(make), np.arange(16))
        errors.append(str(info.value))
    assert errors[0] == errors[1]


def test_the_engine_stops_unknown_destinations_and_never_halting_protocols_on_any_backend(toy):
    cfg = MPCConfig(n=16, eps=0.5)
    with pytest.raises(UnknownDestination) as info:
        Simulator(cfg, strict=False, backend=toy).run(SendTo(7), np.arange(16))
    assert (info.value.round, info.value.machine, info.value.destination) == (1, 0, 7)
    with pytest.raises(ProtocolError, match="still sending after max_rounds = 3") as info:
        Simulator(cfg, max_rounds=3, backend=toy).run(Rounds(10**9), np.arange(16))
    assert info.value.round == 4


def test_steps_and_message_recording_need_a_backend_that_keeps_them_here(toy):
    cfg = MPCConfig(n=16, eps=0.5)
    with pytest.raises(ValueError, match="steps\\(\\) needs a backend"):
        next(Simulator(cfg, backend=toy).steps(Rounds(2), np.arange(16)))
    with pytest.raises(ValueError, match="record_messages needs a backend that records messages"):
        Simulator(cfg, backend=toy).run(Rounds(2), np.arange(16), record_messages=True)


def test_a_backend_instance_is_used_as_given_and_takes_no_dask_options():
    backend = Toy()
    sim = Simulator(MPCConfig(n=16, eps=0.5), backend=backend)
    assert sim.backend is backend and sim.run(Rounds(2), np.arange(16)).trace.num_rounds == 2
    with pytest.raises(ParameterError, match="client give them to Toy itself"):
        Simulator(MPCConfig(n=16, eps=0.5), backend=backend, client="tcp://x:1")


def test_the_cli_runs_a_registered_backend(toy, capsys):
    assert cli_main(["simulate", "prefix-sum", "--n", "64", "--eps", "0.5", "--backend", toy, "--no-table"]) == 0
    assert "prefix-sum" in capsys.readouterr().out
    assert cli_main(["simulate", "prefix-sum", "--n", "64", "--eps", "0.5", "--backend", toy, "--blocks", "2"]) == 2
    assert "--blocks need --backend dask" in capsys.readouterr().err


# --- the engine's replay after a backend lost work ------------------------------------------------------------
def test_a_lost_round_is_replayed_from_the_restart_to_the_identical_run_and_announced_once():
    protocol = make_protocol("khop", k=4)
    config = protocol.default_config(128, 0.5)
    data = protocol.generate_input(config, seed=1)
    local = Simulator(config).run(protocol, data, seed=2, record_states=True)
    seen = []
    lossy = Simulator(config, backend=Losing(lose=3, times=2), on_round=seen.append).run(
        protocol, data, seed=2, record_states=True)
    assert_same_run(local, dataclasses.replace(lossy, trace=dataclasses.replace(lossy.trace, retries=())))
    assert [(x.round, x.restarted_from, x.source) for x in lossy.trace.retries] == [(3, 0, "input")] * 2
    assert [s.round for s in seen] == list(range(1, local.trace.num_rounds + 1))


def test_a_replayed_round_that_disagrees_with_its_first_run_is_a_backend_error():
    class Drifting(Protocol):
        """Sends one more word each time its round 1 runs: not deterministic in its seed."""

        name = "drifting"
        runs = 0

        def rounds_bound(self, config):
            return 2

        def step(self, ctx, machine, memory, inbox):
            if machine == 0 and ctx.round == 1:
                Drifting.runs += 1
                return memory[:0], [(1, np.arange(Drifting.runs))]
            return memory[:0], ([(0, [1])] if machine == 0 and ctx.round == 2 else [])

    with pytest.raises(BackendError, match="round 1 run again after the backend lost work gave .* deterministic"):
        Simulator(MPCConfig(n=16, eps=0.5), backend=Losing(lose=2)).run(Drifting(), np.arange(16))


def test_a_loss_on_a_backend_that_cannot_recover_ends_the_run_with_its_error():
    class Fragile(Toy):
        @contextlib.contextmanager
        def open(self, job):
            run = ToyRun(job)
            run.compute = lambda r, keep: (_ for _ in ()).throw(Lost(ConnectionError("gone")))
            yield run

    with pytest.raises(ConnectionError, match="gone"):
        Simulator(MPCConfig(n=16, eps=0.5), backend=Fragile()).run(Rounds(2), np.arange(16))


# --- Dask options ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("client", 3), ("client", ""), ("client", object()), ("checkpoint", 5), ("checkpoint", ""),
    ("resume", ["dir"]), ("processes", "yes"), ("processes", 1), ("max_retries", True), ("workers", True),
])
def test_dask_options_refuse_bad_fields_naming_them(field, value):
    with pytest.raises(ParameterError, match=field):
        DaskOptions(**{field: value})


def test_dask_options_are_frozen_and_keep_paths_as_paths(tmp_path):
    options = DaskOptions(client="tcp://h:8786", checkpoint=str(tmp_path / "a"), resume=tmp_path / "b")
    assert options.checkpoint == tmp_path / "a" and isinstance(options.checkpoint, Path)
    assert options.resume == tmp_path / "b" and options.client == "tcp://h:8786"
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.blocks = 2
    with pytest.raises(ParameterError, match="blocks"):
        dataclasses.replace(options, blocks=0)


def test_the_old_dask_keywords_fill_the_options_and_are_refused_twice_or_without_dask(tmp_path):
    cfg = MPCConfig(n=16, eps=0.5)
    sim = Simulator(cfg, backend="dask", client="tcp://h:1", checkpoint=tmp_path, dask=DaskOptions(blocks=3))
    assert sim.backend.options == DaskOptions(blocks=3, client="tcp://h:1", checkpoint=tmp_path)
    with pytest.raises(ParameterError, match="client given both as a keyword and in DaskOptions"):
        Simulator(cfg, backend="dask", client="tcp://h:1", dask=DaskOptions(client="tcp://h:2"))
    with pytest.raises(ParameterError, match="client, dask, resume need backend='dask'"):
        Simulator(cfg, client="tcp://h:1", dask=DaskOptions(), resume=tmp_path)
    with pytest.raises(TypeError, match="DaskOptions"):
        DaskBackend({"workers": 2})
