"""What every transformer-running protocol shares: input words, the reference forward pass, the
agreement check, and :func:`run_model_protocol` returning a :class:`DecompiledRun`.

A protocol's input is one word per token: a token id for a trained model's
:class:`~anna.transformer.TokenEmbedding`, any real number for a
:class:`~reductions.decompile.tokens.TokenwiseEmbedding`. Its output is ψ's rows, token after
token (``n * output_dim`` words on the first machines).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from rich.table import Table

from anna.transformer import TokenEmbedding, Transformer
from mpc_sim import InputError, MPCConfig, Protocol, Simulator, Trace
from mpc_sim.protocols.toolkit import smallest_config

from .tokens import ModelSpec, inspect_model, tolerance

__all__ = ["ModelProtocol", "DecompiledRun", "run_model_protocol", "smallest_memory_config", "fitted_config"]


def smallest_memory_config(plan_for, n: int, eps: float, steps: int = 60) -> MPCConfig:
    """The config with the smallest ``memory_factor`` (1, 1.25, 1.25**2, ...) for which
    ``plan_for(n, s)`` succeeds, and exactly enough machines for that plan: the toolkit's
    :func:`~mpc_sim.protocols.toolkit.smallest_config` with ``machines_for``."""
    return smallest_config(None, n, eps, steps=steps, machines_for=lambda n_, s_: plan_for(n_, s_).machines)


def fitted_config(protocol: "ModelProtocol", n: int, eps: float, memory_factor: float) -> MPCConfig:
    """The config with ``s = ceil(memory_factor * n**eps)`` and exactly the machines the
    protocol's plan addresses there (ConfigError if no plan fits)."""
    probe = MPCConfig(n=n, eps=eps, memory_factor=memory_factor, machines_factor=float(n))
    machines = protocol.plan(probe).machines
    return MPCConfig(n=n, eps=eps, memory_factor=memory_factor, machines_factor=machines / n ** (1.0 - eps))


class ModelProtocol(Protocol):
    """Base of the protocols computing a transformer's forward pass (float64 words)."""

    word_dtype = np.dtype(np.float64)
    kinds: tuple[str, ...] = ()

    def __init__(self, model: Transformer, output_dim: int | None = None):
        self.model = model
        self.spec: ModelSpec = inspect_model(model, self.kinds, output_dim)

    def params(self) -> dict:
        return {"layers": self.spec.depth, "heads": [len(l.heads) for l in self.spec.layers],
                "dim": self.spec.dim, "output_dim": self.spec.output_dim, "model_seed": self.model.seed}

    def validate_input(self, config: MPCConfig, data: object) -> np.ndarray:
        words = super().validate_input(config, data)
        embedding = self.model.embedding
        if isinstance(embedding, TokenEmbedding) and words.size:
            bad = np.flatnonzero((words != np.round(words)) | (words < 0) | (words >= embedding.vocab_size))
            if bad.size:
                raise InputError(f"{self.name}: input word {int(bad[0])} is {words[bad[0]]}, not a token id in "
                                 f"[0, {embedding.vocab_size})")
            if embedding.max_len is not None and words.size > embedding.max_len:
                raise InputError(f"{self.name}: {words.size} tokens exceed the embedding's max_len {embedding.max_len}")
        return words

    def model_inputs(self, words: np.ndarray) -> np.ndarray:
        """What the transformer itself is called on for these input words."""
        if isinstance(self.model.embedding, TokenEmbedding):
            return np.asarray(words).astype(np.int64)
        return np.asarray(words, dtype=np.float64)

    def reference(self, data: np.ndarray) -> np.ndarray:
        """The model's own forward pass, flattened token after token."""
        return np.asarray(self.model(self.model_inputs(data)), dtype=np.float64).reshape(-1)

    @property
    def tolerance(self) -> float:
        return tolerance(self.spec.dtype)

    def verify(self, data: np.ndarray, output: np.ndarray) -> bool:
        """Agreement with the forward pass within ``tol * (1 + |expected|)`` element-wise."""
        expected = self.reference(data)
        output = np.asarray(output, dtype=np.float64)
        return expected.shape == output.shape and bool(
            np.all(np.abs(output - expected) <= self.tolerance * (1.0 + np.abs(expected))))

    def generate_input(self, config: MPCConfig, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        embedding = self.model.embedding
        if isinstance(embedding, TokenEmbedding):
            size = config.n if embedding.max_len is None else min(config.n, embedding.max_len)
            if size < config.n:
                raise InputError(f"{self.name}: the embedding's max_len {embedding.max_len} is below n = {config.n}")
            return rng.integers(0, embedding.vocab_size, size=config.n).astype(np.float64)
        return rng.standard_normal(config.n)


@dataclass(frozen=True, eq=False)
class DecompiledRun:
    """A protocol run beside the model's own forward pass on the same input."""

    output: np.ndarray          # (n, output_dim): the protocol's
    expected: np.ndarray        # (n, output_dim): the model's forward pass
    trace: Trace
    tolerance: float
    rounds_formula: int

    @property
    def max_abs_error(self) -> float:
        return float(np.max(np.abs(self.output - self.expected), initial=0.0))

    @property
    def max_scaled_error(self) -> float:
        """``max |output - expected| / (1 + |expected|)``: what :attr:`tolerance` bounds."""
        return float(np.max(np.abs(self.output - self.expected) / (1.0 + np.abs(self.expected)), initial=0.0))

    @property
    def agrees(self) -> bool:
        return self.output.shape == self.expected.shape and self.max_scaled_error <= self.tolerance

    def table(self) -> Table:
        trace, s = self.trace, self.trace.config.s
        table = Table(title=f"{trace.protocol}: the protocol beside the model's forward pass")
        table.add_column("quantity")
        table.add_column("value", justify="right")
        rows = [
            ("tokens n", str(trace.config.n)),
            ("rounds (trace)", str(trace.num_rounds)),
            ("rounds (formula)", str(self.rounds_formula)),
            ("local memory s", str(s)),
            ("max memory / s", f"{trace.max_memory / s:.2f}"),
            ("max sent / s", f"{trace.max_sent / s:.2f}"),
            ("max received / s", f"{trace.max_received / s:.2f}"),
            ("machines", str(trace.config.machines)),
            ("max |protocol - model|", f"{self.max_abs_error:.3g}"),
            ("max error / (1 + |model|)", f"{self.max_scaled_error:.3g} (tolerance {self.tolerance:g})"),
        ]
        for name, value in rows:
            table.add_row(name, value)
        verdict = "[green]agrees[/]" if self.agrees else "[bold red]DISAGREES[/]"
        table.add_row("output", verdict)
        return table


def run_model_protocol(protocol: ModelProtocol, data: object, config: MPCConfig | None = None, *,
                       eps: float = 0.5, seed: int = 0, strict: bool = True) -> DecompiledRun:
    """Run ``protocol`` on ``data`` (one word per token) under ``config`` (default
    ``protocol.default_config(n, eps)``) and compare with the model's forward pass."""
    words = np.asarray(data)
    if words.ndim != 1:
        raise InputError(f"input must be one word per token (1-D), got shape {words.shape}")
    config = protocol.default_config(int(words.shape[0]), eps) if config is None else config
    result = Simulator(config, strict=strict).run(protocol, words, seed=seed)
    width = protocol.spec.output_dim
    output = np.asarray(result.output, dtype=np.float64).reshape(-1, width)
    expected = protocol.reference(protocol.validate_input(config, words)).reshape(-1, width)
    run = DecompiledRun(output, expected, result.trace, protocol.tolerance, int(protocol.rounds_bound(config)))
    return dataclasses.replace(run, trace=result.trace.with_verified(run.agrees))
