"""What a machine may compute about its own tokens: the model's token-wise maps, applied to rows.

Every protocol of :mod:`reductions.decompile` runs a transformer's token-wise maps (embedding,
Q, K, V, W_h, MLP, readout ψ) on the rows of the tokens a machine holds, with their positions,
exactly as :meth:`anna.transformer.Transformer.run` applies them to the whole sequence: with the same
functions, :mod:`anna.transformer.forward` (``head_qkv``, ``finish_layer``). This module adds what
machines need beyond them: :func:`inspect_model` reads the sizes a protocol plans with (refusing,
with every reason, what it cannot run), :func:`embed_rows` and :func:`readout_rows` read and write
machine words, and the bucket codes.

Embeddings. A :class:`~anna.transformer.TokenEmbedding` (trained mode: one token id per input word)
is token-wise by construction. A theory-mode embedding must say so: wrap ``f(values, positions)``
in :class:`TokenwiseEmbedding` (one input word per token). Any other callable ``f(inputs)`` may mix
tokens, so a machine holding a few tokens could not compute it: it is refused.

Numbers. Machines hold float64 words; a float32 model's rows are stored exactly and cast back to
float32 before every map, so the maps see what they see in the model's own forward pass. Outputs
then agree with the forward pass up to the order of floating-point additions in attention (tree
sums instead of the kernel's), within :func:`tolerance`.

Examples
--------
>>> emb = TokenwiseEmbedding(lambda v, p: np.stack([v, p], axis=1).astype(float), dim=2)
>>> emb(np.array([5.0, 7.0])).tolist()
[[5.0, 0.0], [7.0, 1.0]]
>>> embed_rows(emb, np.array([7.0]), np.array([1])).tolist()
[[7.0, 1.0]]
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from anna.lsh import LSHConfig
from anna.transformer import FEATURE_MAPS, Head, Linear, TokenEmbedding, Transformer
from anna.transformer.forward import embed_tokens
from mpc_sim import hash64

from .errors import UnsupportedModel

__all__ = [
    "TokenwiseEmbedding", "HeadSpec", "LayerSpec", "ModelSpec", "inspect_model", "tolerance",
    "embed_rows", "readout_rows", "table_codes", "split_codes", "join_codes",
    "feature_map",
]


@dataclass(frozen=True, eq=False)
class TokenwiseEmbedding:
    """A theory-mode embedding that promises to act token by token: ``x_i = fn(values_i, i)``.

    ``fn(values, positions) -> (len(values), dim)`` receives one input word per token (float64)
    and the tokens' 0-based positions; calling the object on a whole input is the transformer's
    ``embedding(inputs)``. ``dtype`` is the dtype of the rows it returns.
    """

    fn: Callable[[np.ndarray, np.ndarray], np.ndarray]
    dim: int
    dtype: type = np.float64

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ValueError(f"fn must be a callable f(values, positions), got {self.fn!r}")
        if isinstance(self.dim, bool) or not isinstance(self.dim, (int, np.integer)) or self.dim < 1:
            raise ValueError(f"dim must be a positive int, got {self.dim!r}")
        if np.dtype(self.dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")

    def rows(self, values: np.ndarray, positions: np.ndarray) -> np.ndarray:
        out = np.ascontiguousarray(np.asarray(self.fn(np.asarray(values, dtype=np.float64), positions)),
                                   dtype=self.dtype)
        if out.shape != (values.shape[0], self.dim):
            raise ValueError(f"tokenwise embedding returned shape {out.shape}, expected "
                             f"({values.shape[0]}, {self.dim})")
        return out

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        values = np.asarray(inputs, dtype=np.float64).reshape(-1)
        return self.rows(values, np.arange(values.shape[0], dtype=np.int64))


@dataclass(frozen=True)
class HeadSpec:
    """Sizes of one head: kind, ``m``, ``m_v``, tables (``ell`` for anna, 1 for ema) and, for
    lowrank heads, the feature rank ``r`` (else 0)."""

    kind: str
    dim: int
    value_dim: int
    tables: int
    rank: int = 0


@dataclass(frozen=True)
class LayerSpec:
    heads: tuple[HeadSpec, ...]
    causal: bool

    @property
    def qkv_words(self) -> int:
        """Words of ``(q, k, v)`` of one token over all heads: ``sum_h (2 m_h + m_v,h)``."""
        return sum(2 * h.dim + h.value_dim for h in self.heads)

    @property
    def partial_words(self) -> int:
        """Words of one token's attention partials over all heads: ``sum_h (m_v,h + 1)``."""
        return sum(h.value_dim + 1 for h in self.heads)


@dataclass(frozen=True)
class ModelSpec:
    """What a protocol plans with: residual dimension ``d``, the layers, ψ's output width, dtype."""

    dim: int
    layers: tuple[LayerSpec, ...]
    output_dim: int
    dtype: np.dtype

    @property
    def depth(self) -> int:
        return len(self.layers)


def tolerance(dtype: np.dtype) -> float:
    """The agreement promised between a protocol's output and the model's forward pass: outputs
    match within ``tol * (1 + |expected|)`` element-wise, ``tol = 1e-9`` for float64 models and
    ``1e-4`` for float32 ones (attention sums are added in another order; float32 rows are rounded
    from float64 sums, which can move them by one float32 ulp)."""
    return 1e-9 if np.dtype(dtype) == np.float64 else 1e-4


def _readout_width(model: Transformer, output_dim: int | None, reasons: list[str]) -> int:
    if isinstance(model.readout, Linear):
        width = model.readout.out_dim
        if output_dim is not None and output_dim != width:
            reasons.append(f"output_dim = {output_dim} disagrees with the readout's {width} columns")
        return width
    if output_dim is not None:
        return int(output_dim)
    try:   # a token-wise callable acts on a single zero row like on any row
        probe = np.asarray(model.readout(np.zeros((1, model.dim)), np.zeros(1, dtype=np.int64)))
    except Exception as exc:  # noqa: BLE001 - any failure means: say the width explicitly
        reasons.append(f"the readout is a callable that failed on a probe row ({exc!r}); pass output_dim=")
        return 1
    if probe.ndim != 2 or probe.shape[0] != 1:
        reasons.append(f"the readout must return one row per token, got shape {probe.shape} for one token")
        return 1
    return int(probe.shape[1])


def inspect_model(model: object, kinds: tuple[str, ...], output_dim: int | None = None) -> ModelSpec:
    """The sizes of ``model``, refusing (with every reason) what a protocol cannot run.

    ``kinds`` are the head kinds the caller supports. Raises :class:`UnsupportedModel`.
    """
    if not isinstance(model, Transformer):
        raise UnsupportedModel(type(model).__name__, [f"not an anna Transformer (got {type(model).__name__})"])
    reasons: list[str] = []
    if isinstance(model.embedding, TokenEmbedding):
        dtype = model.embedding.tokens.dtype
    elif isinstance(model.embedding, TokenwiseEmbedding):
        dtype = np.dtype(model.embedding.dtype)
    else:
        dtype = np.dtype(np.float64)
        reasons.append("the embedding is a callable of the whole input (it may mix tokens); wrap a token-wise "
                       "f(values, positions) in reductions.decompile.TokenwiseEmbedding")
    layers = []
    for l, layer in enumerate(model.layers):
        if not layer.heads:
            reasons.append(f"layer {l} has no heads (an MLP-only layer: fold it into the previous layer's MLP)")
        heads = []
        for h, head in enumerate(layer.heads):
            if head.kind not in kinds:
                reasons.append(f"layer {l} head {h} is a {head.kind} head; this protocol runs {', '.join(kinds)} heads")
                continue
            tables = head.lsh.ell if head.kind == "anna" else 1
            rank = 0
            if head.kind == "lowrank":
                rank = _feature_rank(head, l, h, reasons)
            heads.append(HeadSpec(head.kind, head.dim, head.value_dim, tables, rank))
        layers.append(LayerSpec(tuple(heads), layer.causal))
    width = _readout_width(model, output_dim, reasons)
    if reasons:
        raise UnsupportedModel("model", reasons)
    return ModelSpec(model.dim, tuple(layers), width, np.dtype(dtype))


def _feature_rank(head: Head, l: int, h: int, reasons: list[str]) -> int:
    try:
        features = np.asarray(feature_map(head)(np.zeros((1, head.dim))))
    except Exception as exc:  # noqa: BLE001
        reasons.append(f"layer {l} head {h}: the feature map failed on a probe row ({exc!r})")
        return 1
    if features.ndim != 2 or features.shape[0] != 1 or features.shape[1] < 1:
        reasons.append(f"layer {l} head {h}: the feature map must return one row per token, got {features.shape}")
        return 1
    return int(features.shape[1])


def feature_map(head: Head) -> Callable[[np.ndarray], np.ndarray]:
    """φ of a lowrank head (the same function for queries and keys, as the model uses)."""
    return head.feature_map if callable(head.feature_map) else FEATURE_MAPS[head.feature_map]


# --- token-wise computations ------------------------------------------------------------------
def embed_rows(embedding: object, values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The embedded rows of tokens with input words ``values`` at ``positions``.

    A :class:`TokenEmbedding` reads token ids (:func:`anna.transformer.forward.embed_tokens`):
    ``values`` must be integers in the vocabulary.
    """
    if isinstance(embedding, TokenEmbedding):
        ids = np.asarray(values)
        if ids.size and (not np.all(ids == np.round(ids)) or ids.min() < 0 or ids.max() >= embedding.vocab_size):
            raise ValueError(f"token ids must be integers in [0, {embedding.vocab_size}), got values in "
                             f"[{ids.min()}, {ids.max()}]")
        return np.ascontiguousarray(embed_tokens(embedding, ids.astype(np.int64), positions))
    return embedding.rows(values, positions)


def readout_rows(model: Transformer, x: np.ndarray, positions: np.ndarray, output_dim: int) -> np.ndarray:
    """ψ on rows ``x`` as float64 words, one row of ``output_dim`` per token."""
    out = np.asarray(model.readout(x, positions))
    if out.dtype == np.bool_ or np.issubdtype(out.dtype, np.integer):
        out = out.astype(np.float64)
    if out.shape != (x.shape[0], output_dim) or not np.issubdtype(out.dtype, np.floating):
        raise ValueError(f"the readout returned {out.dtype} of shape {out.shape}, expected ({x.shape[0]}, {output_dim}) "
                         "floats")
    if not np.isfinite(out).all():
        raise ValueError("the readout returned NaN or inf")
    return out.astype(np.float64)


# --- bucket codes -------------------------------------------------------------------------------
def table_codes(head: Head, seed: int, rows: np.ndarray, first: int, stop: int) -> np.ndarray:
    """Codes ``(len(rows), stop - first)`` uint64 of ``rows`` in tables ``first .. stop - 1``.

    anna heads: the head's LSH (family, z, seed) restricted to those tables, exactly the codes
    :func:`anna.attention.anna_attention` computes (hashing in the rows' dtype). ema heads (one
    table): a 64-bit fingerprint of the exact row (``-0.0`` counted as ``0.0``), so equal rows
    share a code and distinct rows collide with probability about ``2**-64``.
    """
    if head.kind == "anna":
        lsh: LSHConfig = head.lsh
        params = lsh.family.sample(head.dim, lsh.z, lsh.ell, seed)
        if (first, stop) != (0, lsh.ell):
            params = params.select(first, stop)
        return lsh.family.hash(np.ascontiguousarray(rows), params)
    canonical = np.ascontiguousarray(rows.astype(np.float64) + 0.0).view(np.int64)
    code = hash64(0x656D61, rows.shape[1])
    code = np.full(rows.shape[0], code, dtype=np.uint64)
    for column in range(rows.shape[1]):
        code = hash64(code, canonical[:, column])
    return code.reshape(-1, 1)


def split_codes(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint64 codes as two exact float64 words (high and low 32 bits).

    Examples
    --------
    >>> hi, lo = split_codes(np.array([2**40 + 3], dtype=np.uint64))
    >>> hi.tolist(), lo.tolist(), join_codes(hi, lo).tolist()
    ([256.0], [3.0], [1099511627779])
    """
    codes = np.asarray(codes, dtype=np.uint64)
    return (codes >> np.uint64(32)).astype(np.float64), (codes & np.uint64(0xFFFFFFFF)).astype(np.float64)


def join_codes(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Inverse of :func:`split_codes`."""
    return (np.asarray(hi).astype(np.uint64) << np.uint64(32)) | np.asarray(lo).astype(np.uint64)
