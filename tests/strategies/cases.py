"""One table of cases -- protocol x config x input -- and the stages each case runs in.

Every case of :data:`CASES` is named and says which protocol it runs (a library protocol or a
protocol decompiled from a model), under which config (``protocol.default_config(n, eps)``, with
``memory_scale`` times its memory factor, or an explicit :class:`~mpc_sim.MPCConfig`), on which
inputs (generated from a seed, a value kind of :func:`make_input`, or explicit words), and for each
of the :data:`STAGES` either that it runs there or why not (:meth:`Case.reason`):

``simulator``  the output equals the protocol's reference within every limit (strict mode), in
               exactly (or, where the table says so, at most) the declared rounds, within the
               declared fan-out, on the first machines (``tests/test_stages.py``)
``styles``     the per-machine and the batch style give the same trace counts, output and state
``dask``       the Dask backend gives the local run's output and trace counts
``compile``    ``compile_mpc``'s model (lean engine) reproduces the simulator's output; depth = rounds
``dense``      the dense transformer equals the lean engine layer by layer (and the simulator)
``decompile``  a protocol built from a model agrees with the model's forward pass within every limit

Why reasons: what a protocol cannot do (no batch step, no per-machine step) is a fact of the
protocol (:data:`CANNOT`, checked by ``tests/test_stages.py``); what is left out for time is said
per section of the table. Protocol-specific tests (oracles written from the definitions, round
formulas) take their cases from the same table with :func:`select`.

The table lives with the tests, not in :mod:`mpc_sim`: its model cases build ANNA models and the
compiler's stages import :mod:`reductions`, and ``mpc_sim`` imports neither (the layering of the
repository). The public hypothesis strategies stay in :mod:`mpc_sim.strategies` and
:mod:`anna.strategies`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np
import pytest

from mpc_sim import MPCConfig, Protocol, make_protocol
from mpc_sim.protocols import CATALOG

__all__ = ["STAGES", "LIBRARY", "MODELS", "CANNOT", "ROUNDS_AT_MOST", "Case", "CASES", "BY_NAME", "KINDS", "GRID",
           "BASIC", "SIZES", "AABCBABCA", "make_input", "path_edges", "scaled_config", "grid_config", "cases",
           "select", "anna_model", "lowrank_model", "softmax_model"]

STAGES = ("simulator", "styles", "dask", "compile", "dense", "decompile")
LIBRARY = tuple(sorted(CATALOG))
INT64 = np.iinfo(np.int64)

# what a kind of protocol cannot do, whatever the case (tests/test_stages.py checks each claim)
CANNOT = {
    "connectivity": {"styles": "no batch step: connectivity runs per machine only"},
    "anna-model": {"styles": "no per-machine step: the ANNA protocol is batch only",
                   "compile": "no per-machine step, which compile_mpc runs"},
    "softmax-model": {"styles": "no per-machine step: the softmax baseline is batch only",
                      "compile": "no per-machine step, which compile_mpc runs"},
    "lowrank-model": {"styles": "no batch step: the low-rank protocol runs per machine only"},
}
MODELS = ("anna-model", "lowrank-model", "softmax-model")
# protocols whose runs may end before their declared round bound (all others take exactly it)
ROUNDS_AT_MOST = {"connectivity": "random coins decide how many phases run; the bound allows t_max + 3"}


def make_input(kind: str, n: int, seed: int = 0) -> np.ndarray:
    """``n`` int64 words of one kind: random, duplicates, negative, sorted, reversed, constant."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.integers(INT64.min, INT64.max, size=n, dtype=np.int64, endpoint=True)
    if kind == "duplicates":
        return rng.integers(-3, 4, size=n, dtype=np.int64)
    if kind == "negative":
        return -rng.integers(1, 10**12, size=n, dtype=np.int64)
    if kind == "sorted":
        return np.sort(rng.integers(-10**6, 10**6, size=n, dtype=np.int64))
    if kind == "reversed":
        return np.sort(rng.integers(-10**6, 10**6, size=n, dtype=np.int64))[::-1].copy()
    if kind == "constant":
        return np.full(n, 42, dtype=np.int64)
    raise ValueError(f"unknown input kind {kind!r}")


KINDS = ("random", "duplicates", "negative", "sorted", "reversed", "constant")


@dataclass(frozen=True)
class Case:
    """One named case: a protocol, a config, inputs, and the stages it runs in.

    ``inputs`` holds one entry per input: ``None`` (``protocol.generate_input(config, seed)``),
    an int (``generate_input`` with that seed), a kind of :func:`make_input` (with ``seed``) or
    explicit words (a tuple). ``seed`` is also the run's seed; the styles stage compares the first
    ``style_inputs`` inputs (all when ``None``); ``skip`` maps a stage to why this
    case does not run there; ``slow`` names stages where it is marked slow; ``refused`` says why
    the protocol refuses the config (a ConfigError: the case runs in no stage).
    """

    name: str
    protocol: str
    make: Callable[[], Protocol] = field(repr=False)
    n: int
    eps: float = 0.5
    config: MPCConfig | None = None
    memory_scale: float = 1.0
    inputs: tuple = (None,)
    seed: int = 3
    style_inputs: int | None = None
    skip: Mapping[str, str] = field(default_factory=dict)
    slow: frozenset = frozenset()
    refused: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in LIBRARY + MODELS:
            raise ValueError(f"case {self.name!r}: unknown protocol kind {self.protocol!r}")
        unknown = (set(self.skip) | set(self.slow)) - set(STAGES)
        if unknown:
            raise ValueError(f"case {self.name!r}: unknown stages {sorted(unknown)}")
        if not self.inputs:
            raise ValueError(f"case {self.name!r}: no inputs")
        object.__setattr__(self, "skip", MappingProxyType(dict(self.skip)))

    @property
    def exact_rounds(self) -> bool:
        """Whether a run takes exactly the declared round bound (else at most: :data:`ROUNDS_AT_MOST`)."""
        return self.protocol not in ROUNDS_AT_MOST

    @property
    def model(self) -> bool:
        return self.protocol in MODELS

    def reason(self, stage: str) -> str | None:
        """Why this case does not run in ``stage``; ``None`` when it does."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")
        if self.refused:
            return f"the protocol refuses the config: {self.refused}"
        if stage in CANNOT.get(self.protocol, {}):
            return CANNOT[self.protocol][stage]
        if stage == "decompile" and not self.model:
            return "a library protocol, not a protocol decompiled from a model"
        if stage == "simulator" and self.model:
            return "a model's reference is its forward pass, within a tolerance: the decompile stage"
        if stage == "dense" and self.reason("compile"):
            return "not compiled"
        return self.skip.get(stage)

    def runs(self, stage: str) -> bool:
        return self.reason(stage) is None

    def build(self) -> tuple[Protocol, MPCConfig]:
        """A fresh protocol and the case's config."""
        protocol = self.make()
        if self.config is not None:
            return protocol, self.config
        return protocol, scaled_config(protocol, self.n, self.eps, self.memory_scale)

    def data(self, protocol: Protocol, config: MPCConfig) -> list[np.ndarray]:
        """The case's inputs, in order."""
        out = []
        for spec in self.inputs:
            if spec is None or isinstance(spec, int):
                out.append(protocol.generate_input(config, seed=self.seed if spec is None else spec))
            elif isinstance(spec, str):
                out.append(make_input(spec, config.n, seed=self.seed))
            else:
                out.append(np.asarray(spec, dtype=np.int64 if not self.model else np.float64))
        return out


def scaled_config(protocol: Protocol, n: int, eps: float = 0.5, memory_scale: float = 1.0) -> MPCConfig:
    """``protocol.default_config(n, eps)`` with ``memory_scale`` times its memory factor (fewer,
    fuller machines), checked by the protocol."""
    config = protocol.default_config(n, eps)
    if memory_scale != 1.0:
        config = MPCConfig(n=n, eps=eps, memory_factor=memory_scale * config.memory_factor,
                           machines_factor=config.machines_factor)
        protocol.check_config(config)
    return config


def grid_config(name: str) -> MPCConfig:
    """The config of entry ``name`` of :data:`GRID`."""
    n, eps, a, b = GRID[name]
    return MPCConfig(n=n, eps=eps, memory_factor=a, machines_factor=b)


def _library(name: str, **params) -> Callable[[], Protocol]:
    def make():
        return make_protocol(name, **params)
    make.__qualname__ = f"{name}({params})"
    return make


def _tag(params: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in params.items())


# -------------------------------------------------------------------------------------------------
# Section 1: the basic protocols over a grid of configs, six kinds of values each
# -------------------------------------------------------------------------------------------------
# (n, eps, memory_factor, machines_factor)
GRID = {
    "n=1": (1, 0.5, 1.0, 1.0),
    "n=2": (2, 0.3, 1.0, 1.0),
    "s=4,n=10": (10, 0.5, 1.0, 2.0),                 # n not a multiple of s
    "full-cluster": (100, 0.5, 1.0, 1.0),            # s = 10, 10 machines, all full
    "n=257": (257, 0.34, 2.0, 2.0),
    "s=1": (50, 0.5, 0.1, 8.0),                      # s = 1: one word per machine
    "sort-small": (200, 0.5, 10.0, 1.0),
    "sort-eps.75": (1000, 0.75, 2.0, 4.0),
    "sort-3000": (3000, 0.5, 10.0, 2.0),
    "sort-deep-tree": (2000, 0.5, 6.5, 2.0),         # the splitters need 3 rounds to spread
    "eps=0.2": (5000, 0.2, 1.0, 2.0),                # s = 6, 1821 machines: deep trees
    "fits-one-machine": (30, 0.9, 2.0, 1.0),         # n <= s
}
BASIC = {  # id: (catalog name, params)
    "broadcast": ("broadcast", {}),
    "broadcast-3": ("broadcast", {"width": 3}),
    "aggregate-sum": ("aggregate", {"op": "sum"}),
    "aggregate-min": ("aggregate", {"op": "min"}),
    "aggregate-max": ("aggregate", {"op": "max"}),
    "prefix-sum": ("prefix-sum", {}),
    "sort": ("sort", {}),
}
# what each basic protocol refuses (every other entry of the grid is accepted: nothing skipped)
_REFUSED = {
    "broadcast-3": ({"n=1", "n=2", "s=1"}, "width 3 > n or > s"),
    "aggregate": ({"s=1"}, "s >= 2"),
    "prefix-sum": ({"s=1", "full-cluster"}, "s >= 2 and an empty helper machine"),
    "sort": ({"s=4,n=10", "full-cluster", "n=257", "s=1", "eps=0.2"}, "s**2 below ~60 n"),
}
_GRID_TIME = {"dask": "time: Dask runs the 'instance' cases, one per protocol",
              "compile": "time: the compiler runs the 'instance' cases", }


def _basic_cases():
    for pid, (name, params) in BASIC.items():
        refused, why = _REFUSED.get(pid, _REFUSED.get(pid.split("-")[0], (set(), "")))
        for grid, (n, eps, _, _) in GRID.items():
            skip = dict(_GRID_TIME)
            if n > 3000:
                skip["styles"] = "time: 1821 machines per machine; test_the_eps_0_2_case_runs_in_the_per_machine_style"
            yield Case(f"{pid}/{grid}", name, _library(name, **params), n, eps, grid_config(grid), inputs=KINDS,
                       style_inputs=2, skip=skip, refused=why if grid in refused else None)


# -------------------------------------------------------------------------------------------------
# Section 2: k-hop, Match2, connectivity and 3-SUM on explicit inputs, at the smallest and a roomy config
# -------------------------------------------------------------------------------------------------
SIZES = {"tight": 1.0, "roomy": 3.0}     # times the memory factor of protocol.default_config(n, 0.5)
_WORDS_TIME = {"dask": "time: Dask runs the 'instance' cases, one per protocol",
               "compile": "time: the compiler runs the 'instance' cases"}

AABCBABCA = (0, 0, 1, 2, 1, 0, 1, 2, 0)
KHOP = {  # name: (tokens, k)
    "theory example aabcbabca, k=1": (AABCBABCA, 1),
    "theory example aabcbabca, k=2": (AABCBABCA, 2),
    "k=0 is the identity": (AABCBABCA, 0),
    "k=3 (two set bits)": (AABCBABCA * 2, 3),
    "n=1": ((7,), 1),
    "negative tokens": ((-3, -1, -3, 5, -1, -3, 5, -1), 3),
    "k larger than n": ((0, 1, 1, 0, 1, 0, 0, 1, 0), 50),
    "immediate repeats are fixed points": ((2, 2, 2, 1, 1, 2, 2), 6),
    "all tokens distinct": (tuple(range(11)), 2),
    "n not a multiple of s": (tuple(int(t) for t in np.random.default_rng(5).integers(0, 3, 29)), 5),
    "int64 extremes": ((INT64.max, INT64.min, INT64.max, 0, INT64.min, INT64.max), 2),
}
KHOP_BOTTOM = -10**9


def _with_partners(values, modulus):
    """``values`` plus the complements of half of them, shuffled: many positive labels."""
    words = np.r_[values, (-values[: values.size // 2]) % modulus + modulus]
    return tuple(int(w) for w in np.random.default_rng(0).permutation(words))


MATCH2 = {  # name: (words, modulus)
    "theory sizes N=32, M=37": (tuple(make_protocol("match2", modulus=37).generate_input(
        MPCConfig(n=32, eps=0.5), seed=4).tolist()), 37),
    "negative words": ((-1, 1, -5, 9, 4, -4, 13, 2), 7),
    "n=1 pairs with itself": ((3,), 6),
    "n=1 without partner": ((1,), 6),
    "M=1: everything matches": ((5, -2, 0), 1),
    "M=2": ((1, 3, 2, 5, 7), 2),
    "large M needs several bitmap words": (_with_partners(np.random.default_rng(1).integers(0, 500, 40), 500), 500),
    "n not a multiple of s": (tuple(int(v) for v in np.random.default_rng(2).integers(-50, 50, 47)), 11),
}


def path_edges(ids):
    """The edge list (as words) of the path through ``ids`` in order."""
    return np.c_[ids[:-1], ids[1:]].ravel()


def _gnp_edges():
    import networkx as nx
    return np.array(list(nx.gnp_random_graph(16, 0.15, seed=3).edges()) or [(0, 0)]).ravel()


GRAPHS = {  # name: (vertices, edge list as words)
    "path, increasing ids": (10, path_edges(np.arange(10))),
    "path, random ids": (12, path_edges(np.random.default_rng(0).permutation(12))),
    "cycle": (9, np.r_[path_edges(np.arange(9)), 8, 0]),
    "star, centre 0": (12, np.c_[np.zeros(11, int), np.arange(1, 12)].ravel()),
    "star, centre V-1": (12, np.c_[np.full(11, 11), np.arange(11)].ravel()),
    "forest of three trees": (11, np.array([0, 1, 1, 2, 3, 4, 4, 5, 4, 6, 7, 8, 9, 8, 10, 9])),
    "G(16, 0.15)": (16, _gnp_edges()),
    "isolated vertices": (10, np.array([2, 5, 5, 7])),
    "self-loops only": (4, np.array([0, 0, 2, 2, 3, 3])),
    "duplicate edges": (5, np.array([1, 3, 3, 1, 1, 3, 4, 4, 1, 3])),
    "one vertex": (1, np.array([0, 0])),
    "complete graph K6": (6, np.array([(a, b) for a in range(6) for b in range(a + 1, 6)]).ravel()),
    "two components, larger ids first": (8, np.array([7, 6, 6, 5, 3, 2, 2, 1])),
}
# 3-SUM: explicit values (duplicates, zeros, extremes, too short) at default_config(n, 0.5), and
# (n, eps, memory_factor) of default_config with three generated inputs each
THREESUM_WORDS = {
    "empty-ish": (5,),
    "two zeros": (0, 0),
    "three zeros": (0, 0, 0),
    "one zero plus pair": (4, 0, -4),
    "pair reused is not a triple": (1, -2, 7),
    "double value": (1, 1, -2),
    "no triple": (1, 2, 4, 8, 16, 32),
    "extremes": (2**61, -2**61, 0, 3),
    "extremes no triple": (2**61, 2**61, -2**61 + 1),
}
THREESUM = [(1, 0.5, 4), (2, 0.5, 4), (3, 0.5, 4), (7, 0.5, 4), (20, 0.6, 4), (20, 0.5, 1.5), (48, 0.5, 4),
            (64, 0.75, 4), (64, 0.75, 1), (100, 0.6, 4)]


def _threesum_config(n, eps, memory_factor):
    from mpc_sim.protocols.threesum import ThreeSum
    return ThreeSum().default_config(n, eps, memory_factor=memory_factor)


def _word_cases():
    for size, scale in SIZES.items():
        for name, (tokens, k) in KHOP.items():
            yield Case(f"khop/{name}/{size}", "khop", _library("khop", k=k, bottom=KHOP_BOTTOM), len(tokens),
                       memory_scale=scale, inputs=(tuple(tokens),), seed=0, skip=_WORDS_TIME)
        for name, (words, modulus) in MATCH2.items():
            yield Case(f"match2/{name}/{size}", "match2", _library("match2", modulus=modulus), len(words),
                       memory_scale=scale, inputs=(tuple(words),), seed=0, skip=_WORDS_TIME)
        for name, (vertices, words) in GRAPHS.items():
            for finish in (True, False):
                yield Case(f"connectivity/{name}/{size}/{'finish' if finish else 'no-finish'}", "connectivity",
                           _library("connectivity", vertices=vertices, finish=finish), len(words),
                           memory_scale=scale, inputs=(tuple(int(w) for w in words),), seed=0, skip=_WORDS_TIME)
    for name, words in THREESUM_WORDS.items():
        yield Case(f"threesum/{name}", "threesum", _library("threesum"), len(words), inputs=(words,), seed=0,
                   skip=_WORDS_TIME)
    for n, eps, factor in THREESUM:
        yield Case(f"threesum/n={n},eps={eps},memory_factor={factor}", "threesum", _library("threesum"), n, eps,
                   _threesum_config(n, eps, factor), inputs=(0, 1, 2), seed=0, skip=_WORDS_TIME)


# -------------------------------------------------------------------------------------------------
# Section 3: one instance per protocol (and parameters) at protocol.default_config(n, eps): the
# cases the Dask backend and the compiler run. Dask runs the instances of seed 5 (the sizes where
# each protocol communicates over several machines); the compiler those of seed 3 (sizes where
# it communicates at all: sort's default constants keep inputs on one machine below a few
# hundred words), the dense engine the subset marked below, larger ones are slow.
# -------------------------------------------------------------------------------------------------
DASK = {"sort": 1000, "broadcast": 300, "aggregate": 300, "prefix-sum": 300, "match2": 300, "khop": 64,
        "connectivity": 32, "threesum": 64}
# (name, params, n, eps, dense engine too)
COMPILED = [
    ("aggregate", {"op": "sum"}, 32, 0.5, False), ("aggregate", {"op": "sum"}, 64, 0.5, True),
    ("aggregate", {"op": "min"}, 32, 0.5, False), ("aggregate", {"op": "min"}, 100, 0.5, True),
    ("broadcast", {}, 32, 0.5, True), ("connectivity", {}, 16, 0.5, True),
    ("khop", {"k": 1}, 32, 0.5, True), ("khop", {"k": 5}, 32, 0.5, False), ("khop", {"k": 5}, 48, 0.5, True),
    ("match2", {}, 32, 0.5, False), ("match2", {}, 40, 0.5, True),
    ("prefix-sum", {}, 32, 0.5, False), ("prefix-sum", {}, 64, 0.5, True),
    ("sort", {}, 400, 0.5, True), ("threesum", {}, 16, 0.5, True), ("threesum", {}, 32, 0.5, False),
]
# larger instances, slow: the compiler's lean engine only (connectivity's ~100 rounds take minutes)
COMPILED_LARGE = {"sort": 1000}
COMPILED_LARGE_PARAMS = {"aggregate": [{"op": "sum"}, {"op": "min"}], "khop": [{"k": 1}, {"k": 5}]}
_NO_DENSE = "time: the dense engine runs one instance per protocol and parameters"
# the compiler's scale targets, slow: 2**14 tokens, lean engine only
SCALE = [("aggregate", {"op": "sum"}), ("prefix-sum", {}), ("sort", {}), ("khop", {"k": 8}), ("match2", {}),
         ("connectivity", {})]
_SCALE_SKIP = {"dask": "time: Dask runs the instances of seed 5",
               "dense": "2**14 tokens: the dense engine's stream does not fit the memory"}


def _instance_cases():
    for name, n in DASK.items():
        yield Case(f"{name}/n={n}", name, _library(name), n, seed=5,
                   skip={"compile": "time: the compiler runs the smaller instances"})
    for name, params, n, eps, dense in COMPILED:
        tag = _tag(params)
        yield Case(f"{name}{'(' + tag + ')' if tag else ''}/n={n}/compiled", name, _library(name, **params), n, eps,
                   skip={"dask": "time: Dask runs the instances of seed 5", **({} if dense else {"dense": _NO_DENSE})})
    for name in LIBRARY:
        for params in COMPILED_LARGE_PARAMS.get(name, [{}]):
            n, tag = COMPILED_LARGE.get(name, 100), _tag(params)
            yield Case(f"{name}{'(' + tag + ')' if tag else ''}/n={n}/compiled-large", name,
                       _library(name, **params), n, 0.6,
                       skip={"dask": "time: Dask runs the instances of seed 5", "dense": _NO_DENSE},
                       slow=frozenset({"simulator", "styles", "compile"}))
    for name, params in SCALE:
        tag = _tag(params)
        yield Case(f"{name}{'(' + tag + ')' if tag else ''}/n=2**14/compiled", name, _library(name, **params), 2**14,
                   seed=0, skip=_SCALE_SKIP, slow=frozenset({"simulator", "styles", "compile"}))


# -------------------------------------------------------------------------------------------------
# Section 4: protocols decompiled from models (Theorem 4.2's ANNA protocol, the softmax baseline,
# low-rank attention)
# -------------------------------------------------------------------------------------------------
def anna_model(depth=1, heads=1, dim=4, ell=4, z=2, family=None, causal=False, seed=0, max_len=256,
               dtype=np.float64):
    """A small random ANNA transformer over a vocabulary of 9 tokens."""
    from anna.lsh import Hyperplane, LSHConfig
    from anna.transformer import init_transformer
    return init_transformer(vocab_size=9, dim=dim, n_outputs=3, depth=depth, heads=heads, max_len=max_len,
                            kind="anna", lsh=LSHConfig(family or Hyperplane(), z=z, ell=ell), causal=causal,
                            seed=seed, dtype=dtype)


def lowrank_model(causal=False, heads=1, dim=2, depth=2, seed=3, feature_map="elu+1", scale=1.0):
    """A small random low-rank attention transformer over a vocabulary of 7 tokens."""
    from anna.transformer import init_transformer
    return init_transformer(vocab_size=7, dim=dim, n_outputs=2, depth=depth, heads=heads, max_len=512,
                            kind="lowrank", causal=causal, seed=seed,
                            scale=scale).with_attention("lowrank", feature_map=feature_map)


def softmax_model(causal=False, heads=2, depth=2, seed=2):
    """A small random softmax transformer over a vocabulary of 7 tokens."""
    from anna.transformer import init_transformer
    return init_transformer(vocab_size=7, dim=4, n_outputs=2, depth=depth, heads=heads, max_len=64, kind="softmax",
                            causal=causal, temperature=1.5, seed=seed)


def _mixed_float32():
    from anna.lsh import E2LSH, CrossPolytope
    from anna.transformer import Transformer
    base = anna_model(dtype=np.float32, family=CrossPolytope())
    return Transformer(base.embedding, (base.layers[0], anna_model(dtype=np.float32, family=E2LSH(2.0),
                                                                    seed=1).layers[0]),
                       anna_model(dtype=np.float32).readout, seed=5)


def _mixed_layers():
    from anna.transformer import Transformer
    base = anna_model(dim=6, heads=2, ell=3)
    second = anna_model(dim=6, heads=1, ell=9, seed=2, causal=True)
    return Transformer(base.embedding, (base.layers[0], second.layers[0]), anna_model(dim=6).readout, seed=7)


def _ema_causal():
    from anna.transformer import init_transformer
    return init_transformer(vocab_size=5, dim=4, n_outputs=2, depth=2, max_len=64, kind="ema", causal=True,
                            normalize=False, seed=1)


def _match2_model():
    from reductions.decompile.examples import example_model
    return example_model("match2", 48)


def _match2_tokens():
    from anna.tasks import generate_match2
    return tuple(float(w) for w in generate_match2(48, 37, seed=0)[0])


_TIGHT = {"tokens_per_machine": 4, "max_failure": 1e-6}
ANNA = {  # name: (model, n, compile_anna options, inputs)
    "one layer, hyperplane": (anna_model, 40, {}, (0,)),
    "two layers, two heads, causal, deep trees": (
        lambda: anna_model(depth=2, heads=2, dim=6, ell=5, causal=True, seed=3), 50, _TIGHT, (0,)),
    "ema heads, causal": (_ema_causal, 30, {"tokens_per_machine": 8, "max_failure": 1e-6}, (0,)),
    "float32, cross-polytope, E2LSH": (_mixed_float32, 33, _TIGHT, (0,)),
    "layers with different heads, widths and tables": (_mixed_layers, 60, {"tokens_per_machine": 8,
                                                                            "max_failure": 1e-6}, (0,)),
    "one machine holds every token": (lambda: anna_model(depth=2), 5, {}, (0,)),
    "match2 task model": (_match2_model, 48, {}, None),
}
LOWRANK = {  # name: (model, n, fan-out cap, compiled too)
    "one machine": (lowrank_model, 5, None, False),
    "two heads, fan-out uncapped": (lambda: lowrank_model(heads=2, dim=4), 40, None, True),
    "binary tree, capped fan-out": (lowrank_model, 64, 2, True),
    "causal, fan-out 3": (lambda: lowrank_model(causal=True, heads=2, dim=4), 100, 3, True),
    "causal, deep": (lambda: lowrank_model(causal=True), 200, 2, False),
    "queries and keys scaled by 3": (lambda: lowrank_model(causal=True, dim=4, scale=3.0), 60, 2, False),
    "callable feature map of rank 3": (lambda: lowrank_model(feature_map=lambda x: np.exp(np.c_[x, -x[:, :1]])), 50,
                                       2, False),
}
_MODEL_TIME = {"dask": "time: Dask runs the library's instances"}


def _anna_protocol(factory, options):
    def make():
        from reductions.decompile import compile_anna
        return compile_anna(factory(), **options)
    return make


def _lowrank_protocol(factory, fanout):
    def make():
        from reductions.decompile.lowrank_protocol import LowRankProtocol
        return LowRankProtocol(factory(), fanout=fanout)
    return make


def _softmax_protocol(causal):
    def make():
        from reductions.decompile.softmax_protocol import SoftmaxProtocol
        return SoftmaxProtocol(softmax_model(causal))
    return make


def _model_cases():
    for name, (factory, n, options, inputs) in ANNA.items():
        yield Case(f"anna/{name}", "anna-model", _anna_protocol(factory, options), n,
                   inputs=inputs or (_match2_tokens(),), seed=0, skip=_MODEL_TIME)
    for name, (factory, n, fanout, compiled) in LOWRANK.items():
        skip = dict(_MODEL_TIME)
        if not compiled:
            skip["compile"] = "time: three low-rank cases compile"
        skip["dense"] = "time: the lean engine reproduces the simulator; dense runs the library's instances"
        yield Case(f"lowrank/{name}", "lowrank-model", _lowrank_protocol(factory, fanout), n, inputs=(n,), seed=0,
                   skip=skip)
    for causal in (False, True):
        for n in (1, 2, 9, 30):
            yield Case(f"softmax/n={n}{', causal' if causal else ''}", "softmax-model", _softmax_protocol(causal), n,
                       inputs=(n,), seed=0, skip=_MODEL_TIME)


CASES: tuple[Case, ...] = (*_basic_cases(), *_word_cases(), *_instance_cases(), *_model_cases())
BY_NAME = MappingProxyType({case.name: case for case in CASES})
if len(BY_NAME) != len(CASES):
    raise ValueError("case names must be unique")


def select(*protocols: str, stage: str | None = None, name: str = "") -> list:
    """``pytest.param`` of every case of these protocol kinds (all when none is given) whose name
    contains ``name`` and, with ``stage``, that runs there; ids are the case names; a case marked
    slow in ``stage`` carries the slow mark."""
    unknown = set(protocols) - set(LIBRARY + MODELS)
    if unknown:
        raise ValueError(f"unknown protocol kinds {sorted(unknown)}")
    out = []
    for case in CASES:
        if protocols and case.protocol not in protocols or name not in case.name:
            continue
        if stage is not None and not case.runs(stage):
            continue
        marks = [pytest.mark.slow] if stage in case.slow else []
        out.append(pytest.param(case, id=case.name, marks=marks))
    return out


def cases(stage: str) -> list:
    """``pytest.param`` of every case that runs in ``stage``."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")
    return select(stage=stage)
