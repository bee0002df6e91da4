"""Heads, layers and the ANNA-transformer (see the package docstring for the exact forward pass)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from rich.console import Group
from rich.tree import Tree

from .._validate import check_bool, check_float, check_float_matrix, check_int, normalize_seed
from ..errors import ModelError, ParameterError, ShapeError
from ..attention import anna_attention
from ..lsh import LSHConfig
from ..reference import (
    collision_attention,
    elu_feature_map,
    ema_attention,
    lowrank_attention,
    softmax_attention,
)
from .forward import embed_tokens, finish_layer, head_qkv, tokenwise
from .maps import MLP, Linear, Placement, TokenMap, as_token_map, describe_map
from .report import HEAD_KINDS, ResourceReport

__all__ = ["Head", "Layer", "TokenEmbedding", "Transformer", "ForwardTrace", "derive_head_seed",
           "init_transformer", "FEATURE_MAPS"]

FEATURE_MAPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "elu+1": elu_feature_map,
    "identity": lambda x: x,
}


def derive_head_seed(model_seed: int, layer: int, head: int) -> int:
    """The hashing seed of head ``head`` of layer ``layer`` when the head does not fix its own.

    ``np.random.SeedSequence([model_seed, layer, head]).generate_state(1)[0]``: a 32-bit integer,
    deterministic, and different across heads and layers.

    Examples
    --------
    >>> derive_head_seed(0, 0, 0) == derive_head_seed(0, 0, 0) != derive_head_seed(0, 0, 1)
    True
    """
    model_seed = normalize_seed(model_seed)
    state = np.random.SeedSequence([model_seed, int(layer), int(head)]).generate_state(1, dtype=np.uint32)
    return int(state[0])


def _check_dim(name: str, value: object) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _infer_dim(name: str, declared: int | None, *candidates: tuple[str, int | None]) -> int:
    """A head dimension: the one the Linear maps imply, checked against ``declared``."""
    known = [(source, dim) for source, dim in candidates if dim is not None]
    if declared is not None:
        known.append((name, _check_dim(name, declared)))
    if not known:
        raise ModelError(f"{name} is required when the maps that fix it are callables")
    for source, dim in known[1:]:
        if dim != known[0][1]:
            raise ModelError(f"{name} disagrees: {known[0][0]} gives {known[0][1]}, {source} gives {dim}")
    return known[0][1]


def _linear_dim(f: TokenMap, side: str) -> int | None:
    if isinstance(f, Linear):
        return f.in_dim if side == "in" else f.out_dim
    if isinstance(f, Placement):
        return f.width if side == "in" else f.dim
    return None


@dataclass(frozen=True, eq=False)
class Head:
    """One attention head: token-wise maps Q, K, V, the output projection W_h, and its attention.

    Parameters
    ----------
    kind : {"anna", "ema", "softmax", "lowrank", "collision"}
        ``collision``: the attention hyperplane ANNA computes in expectation,
        ``w_ij ∝ (1 − θ_ij/π)^z`` (:func:`anna.reference.collision_attention`).
    query, key, value : Linear, weight matrix or callable ``f(x, positions)``
        ``Q, K : (N, d) → (N, m)``, ``V : (N, d) → (N, m_v)``.
    output : Linear, weight matrix or callable ``f(a, positions)``
        ``W_h : (N, m_v) → (N, d)``, applied to the head's attention output.
    dim, value_dim : int, optional
        ``m`` and ``m_v``; inferred from Linear maps, required when the maps fixing them are callables.
    lsh : LSHConfig, optional
        Family, ``z`` and ``ℓ`` of an ``anna`` head (required for it, refused for other kinds).
    seed : int, optional
        Hashing seed of an ``anna`` head; ``None``: derived from the model seed, layer and head
        index by :func:`derive_head_seed`.
    temperature : float
        ``β`` of a ``softmax`` head: ``softmax(β q kᵀ)``.
    normalize : bool
        Scale queries and keys to unit norm before attending (the paper's trained surrogate; an
        ``anna`` head then hashes the normalised vectors, as with angular LSH).
    feature_map : {"elu+1", "identity"} or callable
        ``φ`` of a ``lowrank`` head, used for queries and keys: ``φ(Q)(φ(K)ᵀ V) / φ(Q)(φ(K)ᵀ 1)``.
    scale : float
        A ``lowrank`` head's queries and keys are multiplied by ``scale`` (after ``normalize``)
        before ``φ``; other kinds take only ``scale = 1``.
    z : int
        The exponent of a ``collision`` head: the hash functions per table of the hyperplane
        tables it stands for; other kinds take only ``z = 1`` (an ``anna`` head's ``z`` is its lsh's).

    Examples
    --------
    >>> import numpy as np
    >>> h = Head("softmax", np.eye(2), np.eye(2), np.eye(2), np.eye(2), temperature=0.5)
    >>> h.dim, h.value_dim, h.n_parameters
    (2, 2, 16)
    """

    kind: str
    query: TokenMap
    key: TokenMap
    value: TokenMap
    output: TokenMap
    dim: int | None = None
    value_dim: int | None = None
    lsh: LSHConfig | None = None
    seed: int | None = None
    temperature: float = 1.0
    normalize: bool = False
    feature_map: str | Callable[[np.ndarray], np.ndarray] = "elu+1"
    scale: float = 1.0
    z: int = 1

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ParameterError(f"kind must be one of {HEAD_KINDS}, got {self.kind!r}")
        for name in ("query", "key", "value", "output"):
            object.__setattr__(self, name, as_token_map(name, getattr(self, name)))
        object.__setattr__(self, "dim", _infer_dim(
            "dim", self.dim, ("query", _linear_dim(self.query, "out")), ("key", _linear_dim(self.key, "out"))))
        object.__setattr__(self, "value_dim", _infer_dim(
            "value_dim", self.value_dim, ("value", _linear_dim(self.value, "out")),
            ("output", _linear_dim(self.output, "in"))))
        if self.kind == "anna":
            if not isinstance(self.lsh, LSHConfig):
                raise ModelError(f"an anna head needs lsh=LSHConfig(...), got {self.lsh!r}")
            if self.seed is not None:
                object.__setattr__(self, "seed", normalize_seed(self.seed))
        else:
            if self.lsh is not None or self.seed is not None:
                raise ModelError(f"a {self.kind} head takes no lsh or seed, got lsh={self.lsh!r}, seed={self.seed!r}")
        temperature = self.temperature
        if isinstance(temperature, (bool, np.bool_)) or not isinstance(temperature, (int, float, np.floating)) \
                or not np.isfinite(temperature) or temperature < 0:
            raise ParameterError(f"temperature must be a finite number >= 0, got {temperature!r}")
        object.__setattr__(self, "temperature", float(temperature))
        object.__setattr__(self, "normalize", check_bool("normalize", self.normalize))
        object.__setattr__(self, "scale", check_float("scale", self.scale, low=0.0, low_open=True))
        if self.kind != "lowrank" and self.scale != 1.0:
            raise ModelError(f"only a lowrank head takes scale != 1; got scale={self.scale!r} for a {self.kind} head")
        object.__setattr__(self, "z", check_int("z", self.z, low=1))
        if self.kind != "collision" and self.z != 1:
            raise ModelError(f"only a collision head takes z != 1; got z={self.z!r} for a {self.kind} head")
        if not callable(self.feature_map) and self.feature_map not in FEATURE_MAPS:
            raise ParameterError(f"feature_map must be one of {sorted(FEATURE_MAPS)} or a callable, "
                             f"got {self.feature_map!r}")

    @property
    def maps(self) -> dict[str, TokenMap]:
        return {"query": self.query, "key": self.key, "value": self.value, "output": self.output}

    @property
    def n_parameters(self) -> int:
        return sum(f.n_parameters for f in self.maps.values() if isinstance(f, Linear))

    @property
    def n_callables(self) -> int:
        return sum(not isinstance(f, Linear) for f in self.maps.values())

    def attend(self, x: np.ndarray, positions: np.ndarray, causal: bool,
               seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``head(x) W_h`` of shape ``(N, d)`` and the collision counts (anna/ema heads, else None)."""
        attended, counts = self.attention(x, positions, causal, seed)
        return tokenwise("output", self.output, attended, positions), counts

    def attention(self, x: np.ndarray, positions: np.ndarray, causal: bool,
                  seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``attn(Q(x), K(x), V(x))`` of shape ``(N, m_v)`` (before ``W_h``) and the collision counts."""
        q, k, v = head_qkv(self, x, positions)
        counts = None
        if self.kind == "anna":
            attended, counts = anna_attention(q, k, v, self.lsh, seed=seed, causal=causal)
        elif self.kind == "ema":
            attended, counts = ema_attention(q, k, v, causal=causal)
        elif self.kind == "softmax":
            attended = softmax_attention(q, k, v, temperature=self.temperature, causal=causal)
        elif self.kind == "collision":
            attended = collision_attention(q, k, v, z=self.z, causal=causal)
        else:
            phi = self.feature_map if callable(self.feature_map) else FEATURE_MAPS[self.feature_map]
            attended = lowrank_attention(q, k, v, phi, phi, causal=causal)
        return attended, counts

    def label(self, seed: int | None = None) -> str:
        """One line: kind, sizes, attention parameters (``seed``: the hashing seed) and the maps."""
        details = [f"m={self.dim}", f"m_v={self.value_dim}"]
        if self.kind == "anna":
            details.append(f"{self.lsh.family.name} z={self.lsh.z} ℓ={self.lsh.ell}")
            details.append(f"seed={self.seed if seed is None else seed}")
        elif self.kind == "softmax":
            details.append(f"β={self.temperature:g}")
        elif self.kind == "collision":
            details.append(f"hyperplane z={self.z}")
        elif self.kind == "lowrank":
            details.append(f"φ={self.feature_map if isinstance(self.feature_map, str) else 'callable'}")
            if self.scale != 1.0:
                details.append(f"q, k scaled by {self.scale:g}")
        if self.normalize:
            details.append("unit-norm q, k")
        maps = ", ".join(sorted({describe_map(f) for f in self.maps.values()}))
        return f"{self.kind} ({', '.join(details)}) · maps {maps}"


@dataclass(frozen=True, eq=False)
class Layer:
    """Heads, an optional token-wise MLP, and the causal flag of one layer.

    ``x ← x + Σ_h head_h(x) W_h``, then ``x ← x + MLP(x)`` when ``mlp`` is set.

    Parameters
    ----------
    heads : sequence of Head
    mlp : MLP or callable ``f(x, positions)``, optional
    causal : bool
        Every head of the layer attends to positions ``j <= i`` only.
    """

    heads: tuple[Head, ...]
    mlp: MLP | Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    causal: bool = False

    def __post_init__(self) -> None:
        heads = tuple(self.heads) if isinstance(self.heads, (list, tuple)) else self.heads
        if not isinstance(heads, tuple) or not all(isinstance(h, Head) for h in heads):
            raise ParameterError(f"heads must be a sequence of Head, got {self.heads!r}")
        object.__setattr__(self, "heads", heads)
        if self.mlp is not None and not isinstance(self.mlp, MLP) and not callable(self.mlp):
            raise ParameterError(f"mlp must be an MLP, a callable f(x, positions) or None, got {self.mlp!r}")
        object.__setattr__(self, "causal", check_bool("causal", self.causal))

    @property
    def n_parameters(self) -> int:
        return sum(h.n_parameters for h in self.heads) + (self.mlp.n_parameters if isinstance(self.mlp, MLP) else 0)

    @property
    def n_callables(self) -> int:
        mlp_callables = int(self.mlp is not None and not isinstance(self.mlp, MLP))
        return sum(h.n_callables for h in self.heads) + mlp_callables


@dataclass(frozen=True, eq=False)
class TokenEmbedding:
    """Trained embedding ``x_i = tokens[input_i] + positions[i]``.

    Parameters
    ----------
    tokens : ndarray, shape (vocab_size, d)
    positions : ndarray, shape (max_len, d), optional
        Learned positional embedding; without it sequences of any length are accepted.

    Examples
    --------
    >>> import numpy as np
    >>> e = TokenEmbedding(np.eye(3), np.zeros((4, 3)))
    >>> e(np.array([2, 0])).tolist(), e.n_parameters
    ([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], 21)
    """

    tokens: np.ndarray
    positions: np.ndarray | None = None

    def __post_init__(self) -> None:
        tokens = Linear(self.tokens).weight  # validated read-only copy
        object.__setattr__(self, "tokens", tokens)
        if self.positions is not None:
            positions = Linear(self.positions).weight
            if positions.shape[1] != tokens.shape[1] or positions.dtype != tokens.dtype:
                raise ShapeError(f"positions must be (max_len, {tokens.shape[1]}) of dtype {tokens.dtype}, "
                                 f"got {positions.shape} of dtype {positions.dtype}")
            object.__setattr__(self, "positions", positions)

    @property
    def vocab_size(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def dim(self) -> int:
        return int(self.tokens.shape[1])

    @property
    def max_len(self) -> int | None:
        return None if self.positions is None else int(self.positions.shape[0])

    @property
    def n_parameters(self) -> int:
        return int(self.tokens.size + (0 if self.positions is None else self.positions.size))

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        if not isinstance(inputs, np.ndarray) or inputs.ndim != 1 or not np.issubdtype(inputs.dtype, np.integer):
            raise ShapeError(f"inputs must be a 1-D integer array of token ids, got "
                             f"{type(inputs).__name__} {getattr(inputs, 'shape', '')} {getattr(inputs, 'dtype', '')}")
        return embed_tokens(self, inputs)

    def __repr__(self) -> str:
        return f"TokenEmbedding(vocab {self.vocab_size}, d={self.dim}, max_len {self.max_len})"


@dataclass(frozen=True, eq=False)
class ForwardTrace:
    """Everything :meth:`Transformer.run` computes.

    Attributes
    ----------
    outputs : Any
        ``ψ(x)`` after the last layer.
    states : tuple of ndarray
        ``L + 1`` residual streams: ``states[0]`` after the embedding, ``states[l]`` after layer ``l``.
    counts : tuple of tuple
        ``counts[l][h]``: int64 collision counts per query of head ``h`` of layer ``l`` (the number
        of matching keys for ``ema``, of (table, key) collisions for ``anna``); None for ``softmax``
        and ``lowrank`` heads.
    """

    outputs: Any
    states: tuple[np.ndarray, ...]
    counts: tuple[tuple[np.ndarray | None, ...], ...]


@dataclass(frozen=True, eq=False)
class Transformer:
    """An ANNA-transformer: embedding, layers, token-wise output map ψ.

    Parameters
    ----------
    embedding : TokenEmbedding or callable ``f(inputs) -> (N, d)``
        Trained token + positional embedding, or any map of the raw input (theory mode).
    layers : sequence of Layer
    readout : Linear, weight matrix or callable ``f(x, positions)``
        ψ. A Linear map gives logits; a callable may return anything (it is not checked).
    seed : int
        Model seed; ``anna`` heads without their own seed use :func:`derive_head_seed`.
    dim : int, optional
        Residual-stream dimension ``d``; inferred from a TokenEmbedding, required otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> model = init_transformer(vocab_size=5, dim=4, n_outputs=2, depth=1, max_len=8, seed=0)
    >>> model(np.array([1, 2, 3])).shape
    (3, 2)
    >>> model.mode, model.report().parameters
    ('trained', 274)
    """

    embedding: TokenEmbedding | Callable[[Any], np.ndarray]
    layers: tuple[Layer, ...]
    readout: TokenMap
    seed: int = 0
    dim: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.embedding, TokenEmbedding) and not callable(self.embedding):
            raise ParameterError(f"embedding must be a TokenEmbedding or a callable, got {self.embedding!r}")
        layers = tuple(self.layers) if isinstance(self.layers, (list, tuple)) else self.layers
        if not isinstance(layers, tuple) or not all(isinstance(layer, Layer) for layer in layers):
            raise ParameterError(f"layers must be a sequence of Layer, got {self.layers!r}")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "readout", as_token_map("readout", self.readout))
        object.__setattr__(self, "seed", normalize_seed(self.seed))
        embedded = self.embedding.dim if isinstance(self.embedding, TokenEmbedding) else None
        object.__setattr__(self, "dim", _infer_dim("dim", self.dim, ("embedding", embedded)))
        self._check_dims()

    def _check_dims(self) -> None:
        d = self.dim
        checks = [("readout", _linear_dim(self.readout, "in"))]
        seen: set[int] = set()  # a compiled model shares one Head object across its rounds: check it once
        for l, layer in enumerate(self.layers):
            for h, head in enumerate(layer.heads):
                if id(head) in seen:
                    continue
                seen.add(id(head))
                for name in ("query", "key", "value"):
                    checks.append((f"layer {l} head {h} {name} input", _linear_dim(head.maps[name], "in")))
                checks.append((f"layer {l} head {h} output", _linear_dim(head.output, "out")))
            if isinstance(layer.mlp, MLP):
                checks.append((f"layer {l} mlp", layer.mlp.dim))
        for where, dim in checks:
            if dim is not None and dim != d:
                raise ModelError(f"{where} dimension is {dim}, but the model dimension d is {d}")

    # -- semantics ----------------------------------------------------------------------------

    def head_seed(self, layer: int, head: int) -> int:
        """The hashing seed head ``head`` of layer ``layer`` uses (its own, or derived)."""
        own = self.layers[layer].heads[head].seed
        return derive_head_seed(self.seed, layer, head) if own is None else own

    def run(self, inputs: Any) -> ForwardTrace:
        """Forward pass keeping the residual stream after every layer and the collision counts.

        Each head attends (:meth:`Head.attention`); :func:`~.forward.finish_layer` adds the heads'
        ``W_h`` outputs and the MLP, as the batched evaluator and the decompiler do.
        """
        x = self.embedding(inputs)
        if isinstance(x, np.ndarray):
            x = np.ascontiguousarray(x)
        x = check_float_matrix("embedding output", x)
        if x.shape[1] != self.dim:
            raise ShapeError(f"embedding output must have d = {self.dim} columns, got shape {x.shape}")
        positions = np.arange(x.shape[0], dtype=np.int64)
        states, counts = [x], []
        for l, layer in enumerate(self.layers):
            attended, layer_counts = [], []
            for h, head in enumerate(layer.heads):
                out, head_counts = head.attention(x, positions, layer.causal, self.head_seed(l, h))
                attended.append(out)
                layer_counts.append(head_counts)
            x = finish_layer(self, l, x, attended, positions)
            states.append(x)
            counts.append(tuple(layer_counts))
        outputs = self.readout(x, positions)
        return ForwardTrace(outputs=outputs, states=tuple(states), counts=tuple(counts))

    def forward(self, inputs: Any, return_states: bool = False):
        """``ψ`` of the last residual stream; with ``return_states`` also the ``L + 1`` streams.

        Returns ``outputs`` or ``(outputs, states)``; see :class:`ForwardTrace` for ``states``.
        """
        trace = self.run(inputs)
        return (trace.outputs, trace.states) if return_states else trace.outputs

    __call__ = forward

    # -- derived models -----------------------------------------------------------------------

    def with_attention(self, kind: str, *, lsh: LSHConfig | Sequence[LSHConfig] | None = None,
                       seed: int | None = None, temperature: float | None = None,
                       normalize: bool | None = None,
                       feature_map: str | Callable[[np.ndarray], np.ndarray] | None = None,
                       z: int | None = None) -> Transformer:
        """A copy with every head's attention replaced by ``kind``; all maps and weights are kept.

        Parameters
        ----------
        kind : {"anna", "ema", "softmax", "lowrank", "collision"}
        lsh : LSHConfig or one LSHConfig per layer
            Required when switching to ``anna`` (unless every head already is one: then kept).
        seed : int, optional
            New model seed; every head seed is then re-derived from it (own head seeds dropped).
        temperature, normalize, feature_map : optional
            Override the heads' values; ``None`` keeps them.
        z : int, optional
            Only for ``collision``: its exponent; ``None`` keeps a collision head's and takes an
            ``anna`` head's ``lsh.z`` (so ``anna → collision`` is the expectation of the tables).

        This is docs/theory.md §6: ``trained_softmax.with_attention("anna", lsh=LSHConfig(...), seed=s)``.
        """
        if kind not in HEAD_KINDS:
            raise ParameterError(f"kind must be one of {HEAD_KINDS}, got {kind!r}")
        if lsh is not None and kind != "anna":
            raise ParameterError(f"lsh is only for kind='anna', got kind={kind!r}")
        if z is not None and kind != "collision":
            raise ParameterError(f"z is only for kind='collision', got kind={kind!r}")
        if z is not None:
            z = check_int("z", z, low=1)
        if isinstance(lsh, LSHConfig) or lsh is None:
            per_layer = [lsh] * len(self.layers)
        else:
            per_layer = list(lsh)
            if len(per_layer) != len(self.layers):
                raise ParameterError(f"lsh must be one LSHConfig or one per layer ({len(self.layers)}), "
                                 f"got {len(per_layer)}")
        layers = []
        for l, (layer, layer_lsh) in enumerate(zip(self.layers, per_layer)):
            heads = []
            for h, head in enumerate(layer.heads):
                changes: dict[str, Any] = {"kind": kind}
                if kind == "anna":
                    changes["lsh"] = layer_lsh if layer_lsh is not None else head.lsh
                    if changes["lsh"] is None:
                        raise ParameterError(f"lsh is required to turn layer {l} head {h} ({head.kind}) into anna")
                    changes["seed"] = None if seed is not None else head.seed
                else:
                    changes["lsh"], changes["seed"] = None, None
                if kind != "lowrank":
                    changes["scale"] = 1.0
                if kind == "collision":
                    changes["z"] = z if z is not None else head.lsh.z if head.kind == "anna" else head.z
                else:
                    changes["z"] = 1
                for name, value in (("temperature", temperature), ("normalize", normalize),
                                    ("feature_map", feature_map)):
                    if value is not None:
                        changes[name] = value
                heads.append(dataclasses.replace(head, **changes))
            layers.append(dataclasses.replace(layer, heads=tuple(heads)))
        return dataclasses.replace(self, layers=tuple(layers), seed=self.seed if seed is None else seed)

    # -- description --------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """``"trained"`` when every map is a weight matrix (the model can be saved), else ``"theory"``."""
        trained = isinstance(self.embedding, TokenEmbedding) and isinstance(self.readout, Linear) and all(
            layer.n_callables == 0 and all(isinstance(h.feature_map, str) for h in layer.heads)
            for layer in self.layers)
        return "trained" if trained else "theory"

    def report(self) -> ResourceReport:
        """Depth, heads, ``m``, width, LSH tables and parameters (see :class:`ResourceReport`)."""
        parameters = sum(layer.n_parameters for layer in self.layers)
        callables = sum(layer.n_callables for layer in self.layers)
        for f in (self.embedding, self.readout):
            if isinstance(f, (TokenEmbedding, Linear)):
                parameters += f.n_parameters
            else:
                callables += 1
        heads = [layer.heads for layer in self.layers]
        return ResourceReport(
            depth=len(self.layers),
            heads_per_layer=tuple(len(row) for row in heads),
            kinds=tuple(tuple(h.kind for h in row) for row in heads),
            m=max((max(h.dim, h.value_dim) for row in heads for h in row), default=0),
            model_dim=self.dim,
            tables=tuple(tuple(h.lsh.ell if h.kind == "anna" else 0 for h in row) for row in heads),
            hash_functions=tuple(tuple(h.lsh.z * h.lsh.ell if h.kind == "anna" else 0 for h in row)
                                 for row in heads),
            parameters=int(parameters),
            callable_maps=int(callables),
        )

    def __rich__(self) -> Group:
        tree = Tree(f"[bold]Transformer[/bold] ({self.mode} mode, d={self.dim}, seed {self.seed})")
        embedding = self.embedding
        tree.add(f"embedding: {embedding!r}" if isinstance(embedding, TokenEmbedding)
                 else f"embedding: {describe_map(embedding)}")
        for l, layer in enumerate(self.layers):
            branch = tree.add(f"layer {l}{' (causal)' if layer.causal else ''}: {len(layer.heads)} head(s)")
            for h, head in enumerate(layer.heads):
                branch.add(f"head {h}: {head.label(self.head_seed(l, h) if head.kind == 'anna' else None)}")
            if layer.mlp is not None:
                branch.add(f"mlp: {describe_map(layer.mlp)}")
        tree.add(f"readout ψ: {describe_map(self.readout)}")
        return Group(tree, self.report())

    # -- persistence --------------------------------------------------------------------------

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write a trained-mode model as ``<path>.npz`` + ``<path>.json`` (see :mod:`.serialize`)."""
        from .serialize import save_transformer  # serialize imports this module

        return save_transformer(self, path)

    @classmethod
    def load(cls, path: str | Path) -> Transformer:
        """Read a model written by :meth:`save`; bit-exact round trip."""
        from .serialize import load_transformer

        return load_transformer(path)


def init_transformer(*, vocab_size: int, dim: int, n_outputs: int, depth: int, max_len: int | None,
                     heads: int = 1, head_dim: int | None = None, kind: str = "softmax",
                     temperature: float = 1.0, normalize: bool = True, lsh: LSHConfig | None = None,
                     mlp: bool = True, mlp_ratio: int = 4, causal: bool = False, seed: int = 0,
                     dtype: type = np.float64, scale: float = 1.0, z: int = 1) -> Transformer:
    """A trained-mode transformer with random weights (normal, variance ``1 / fan_in``).

    Q, K, V and W_h have no bias; the MLP (hidden ``mlp_ratio · dim``, GeLU) and the readout do.
    ``normalize=True`` is the paper's surrogate (unit-norm queries and keys); ``scale`` is a lowrank
    head's and ``z`` a collision head's (see :class:`Head`). ``head_dim``
    defaults to ``dim // heads``. Weights come from ``np.random.default_rng(seed)``, which is also
    the model seed.
    """
    vocab_size, dim, n_outputs = (check_int(name, value, low=1) for name, value in
                                  (("vocab_size", vocab_size), ("dim", dim), ("n_outputs", n_outputs)))
    depth, heads, mlp_ratio = (check_int(name, value, low=low) for name, value, low in
                               (("depth", depth, 0), ("heads", heads, 1), ("mlp_ratio", mlp_ratio, 1)))
    max_len = None if max_len is None else check_int("max_len", max_len, low=1)
    temperature = check_float("temperature", temperature, low=0.0)
    normalize, mlp, causal = (check_bool(name, value) for name, value in
                              (("normalize", normalize), ("mlp", mlp), ("causal", causal)))
    if head_dim is None and dim < heads:
        raise ParameterError(f"dim = {dim} leaves no head dimension for {heads} heads (dim // heads = 0): "
                             f"give head_dim or a larger dim")
    rng = np.random.default_rng(normalize_seed(seed))
    head_dim = dim // heads if head_dim is None else check_int("head_dim", head_dim, low=1)

    def weight(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(rows)).astype(dtype)

    def bias(size: int) -> np.ndarray:
        return (0.1 * rng.standard_normal(size)).astype(dtype)

    layers = []
    for _ in range(depth):
        layer_heads = tuple(
            Head(kind, weight(dim, head_dim), weight(dim, head_dim), weight(dim, head_dim), weight(head_dim, dim),
                 lsh=lsh, temperature=temperature, normalize=normalize, scale=scale, z=z)
            for _ in range(heads))
        block = MLP(Linear(weight(dim, mlp_ratio * dim), bias(mlp_ratio * dim)),
                    Linear(weight(mlp_ratio * dim, dim), bias(dim))) if mlp else None
        layers.append(Layer(layer_heads, block, causal=causal))
    embedding = TokenEmbedding(rng.standard_normal((vocab_size, dim)).astype(dtype),
                               None if max_len is None else rng.standard_normal((max_len, dim)).astype(dtype))
    return Transformer(embedding, tuple(layers), Linear(weight(dim, n_outputs), bias(n_outputs)), seed=seed)
