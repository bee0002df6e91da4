"""Batched evaluation of a trained model with Algorithm 1 heads over an (ℓ per layer, z) grid.

For one hashing seed ``s`` and one ``z``, the model
``model.with_attention("anna", lsh=[LSHConfig(family, z, ℓ_1), ..., LSHConfig(family, z, ℓ_L)], seed=s)``
is run on every test row for every combination of the ℓ values of the grid. Done one row and one
cell at a time that is ``rows x cells x seeds`` forward passes; here it is done in one sweep:

- every row of a batch shares the head's hash functions (they depend on the seed only), so queries
  and keys of all rows are hashed at once, with the largest ℓ of the layer;
- the first ℓ' tables of a sample with ℓ tables are a sample with ℓ' tables
  (:mod:`anna.lsh`), so the collision counts ``c_ij`` for every ℓ of the grid are running sums over
  tables, built in increasing ℓ; ``w_ij = c_ij / Σ_j c_ij`` (``j <= i`` when causal; an all-zero
  row gives the zero output, the empty-neighbourhood convention of :mod:`anna.attention`) is the
  definition Algorithm 1 computes (:func:`anna.attention.anna_weights`);
- layer ``l`` runs once per combination of the ℓ values of layers ``1 .. l``, and later layers
  reuse its output.

:func:`anna_logits` is the same computation for a single cell; the tests check it against
``Transformer.with_attention("anna", ...)`` row by row, and the grid against single cells.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..errors import ModelError, ParameterError, ShapeError
from ..lsh import FAMILIES as LSH_FAMILIES
from ..lsh import LSHConfig
from ..reference import collision_attention
from ..train.loop import token_errors
from ..transformer import Head, Transformer, derive_head_seed
from ..transformer.forward import embed_tokens, finish_layer, head_qkv, tokenwise

__all__ = [
    "FAMILIES",
    "GridCell",
    "GridResult",
    "anna_logits",
    "evaluate_grid",
    "softmax_logits",
    "surrogate_logits",
]

FAMILIES = {key: cls() for key, cls in LSH_FAMILIES.items() if cls.angular}
"""The angular LSH families offered for the experiments, by CLI name (their key in
:data:`anna.lsh.FAMILIES`), with default parameters."""

Progress = Callable[[int, int], None]


# ------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class GridCell:
    """The test error of one grid cell, averaged over hashing seeds.

    Attributes
    ----------
    ells : tuple of int
        ℓ of every layer (``(ℓ,)`` for Match2, ``(ℓ_1, ℓ_2)`` for induction heads).
    z : int
    error : float
        Mean over seeds of the fraction of wrongly predicted tokens.
    seeds : int
    error_std : float
        Standard deviation of the per-seed errors.
    """

    ells: tuple[int, ...]
    z: int
    error: float
    seeds: int
    error_std: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ells", tuple(int(e) for e in self.ells))
        if not self.ells or min(self.ells) < 1 or self.z < 1 or self.seeds < 1:
            raise ParameterError(f"bad cell: ells={self.ells}, z={self.z}, seeds={self.seeds}")
        if not (0.0 <= self.error <= 1.0 and self.error_std >= 0.0):
            raise ParameterError(f"error must be in [0, 1] and std >= 0, got {self.error}, {self.error_std}")

    def to_json(self) -> dict:
        keys = ["ell"] if len(self.ells) == 1 else [f"ell{i + 1}" for i in range(len(self.ells))]
        return {**dict(zip(keys, self.ells)), "z": self.z, "error": self.error, "seeds": self.seeds,
                "error_std": self.error_std}

    @classmethod
    def from_json(cls, data: dict) -> GridCell:
        if "ell" in data:
            ells = (data["ell"],)
        else:
            ells = tuple(data[f"ell{i + 1}"] for i in range(sum(key.startswith("ell") for key in data)))
        return cls(ells, data["z"], data["error"], data["seeds"], data.get("error_std", 0.0))


@dataclass(frozen=True)
class GridResult:
    """An evaluated grid: cells, the surrogate's error, and the paper's numbers.

    ``surrogate_error`` is the test error of the model with its own attention, the surrogate the
    weights were trained as: its softmax or collision heads as they are (a model trained through
    hash tables has collision heads), other heads replaced by softmax. It is written to and read
    from JSON under the key ``"softmax_error"`` (the recorded grids' format);
    :attr:`softmax_error` is a read-only alias of the old attribute name.

    Examples
    --------
    >>> r = GridResult("match2", "hyperplane", (GridCell((8,), 1, 0.0, 10),), 0.01, 256, {"zero_from_ell": 8})
    >>> r.error((8,), 1), GridResult.from_json(r.to_json()) == r, r.to_json()["softmax_error"]
    (0.0, True, 0.01)
    """

    task: str
    family: str
    cells: tuple[GridCell, ...]
    surrogate_error: float
    test_rows: int
    paper: dict = field(default_factory=dict)
    seconds: float = 0.0
    weights: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "cells", tuple(self.cells))
        keys = [(c.ells, c.z) for c in self.cells]
        if len(set(keys)) != len(keys):
            raise ParameterError("grid cells must be distinct (ells, z) pairs")
        if not 0.0 <= self.surrogate_error <= 1.0 or self.test_rows < 1:
            raise ParameterError(f"surrogate_error must be in [0, 1] and test_rows >= 1, got "
                                 f"{self.surrogate_error}, {self.test_rows}")

    @property
    def softmax_error(self) -> float:
        """The old name of :attr:`surrogate_error` (read-only; kept for compatibility)."""
        return self.surrogate_error

    def error(self, ells: Sequence[int], z: int) -> float:
        """The error of cell ``(ells, z)``; KeyError if it is not in the grid."""
        ells = tuple(int(e) for e in ells)
        for cell in self.cells:
            if cell.ells == ells and cell.z == z:
                return cell.error
        raise KeyError(f"no cell ells={ells}, z={z} in the grid")

    @property
    def zs(self) -> tuple[int, ...]:
        return tuple(sorted({c.z for c in self.cells}))

    def layer_ells(self, layer: int) -> tuple[int, ...]:
        return tuple(sorted({c.ells[layer] for c in self.cells}))

    def to_json(self) -> dict:
        return {"task": self.task, "family": self.family, "grid": [c.to_json() for c in self.cells],
                "paper": self.paper, "softmax_error": self.surrogate_error, "test_rows": self.test_rows,
                "seconds": self.seconds, "weights": self.weights}

    @classmethod
    def from_json(cls, data: dict) -> GridResult:
        return cls(data["task"], data["family"], tuple(GridCell.from_json(c) for c in data["grid"]),
                   data["softmax_error"], data["test_rows"], data.get("paper", {}), data.get("seconds", 0.0),
                   data.get("weights", ""))


# ------------------------------------------------------------------------------ forward pieces
def _check_model(model: Transformer) -> None:
    if model.mode != "trained":  # weight matrices and trained MLPs only
        raise ModelError("batched evaluation needs a trained-mode transformer (weight matrices only)")


def _check_rows(inputs: np.ndarray, targets: np.ndarray | None = None) -> np.ndarray:
    inputs = np.asarray(inputs)
    if inputs.ndim != 2 or not np.issubdtype(inputs.dtype, np.integer) or inputs.shape[0] < 1:
        raise ShapeError(f"inputs must be a non-empty (rows, N) integer array, got {inputs.shape} {inputs.dtype}")
    if targets is not None and np.shape(targets) != inputs.shape:
        raise ShapeError(f"targets must have the inputs' shape {inputs.shape}, got {np.shape(targets)}")
    return inputs


def _weighted(weights: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.matmul(weights, v.astype(np.float64)).astype(v.dtype)


def _count_average(counts: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``Σ_j c_ij v_j / Σ_j c_ij`` per row (zero where no key collides); ``counts`` already causal."""
    totals = counts.sum(axis=2, keepdims=True)
    weights = counts / np.maximum(totals, 1)
    return _weighted(weights, v)


def _softmax_average(head: Head, q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool) -> np.ndarray:
    scores = head.temperature * np.matmul(q.astype(np.float64), k.astype(np.float64).transpose(0, 2, 1))
    if causal:
        scores = np.where(np.tril(np.ones(scores.shape[1:], dtype=bool)), scores, -np.inf)
    scores -= scores.max(axis=2, keepdims=True)
    weights = np.exp(scores)
    weights /= weights.sum(axis=2, keepdims=True)
    return _weighted(weights, v)


def _collision_average(head: Head, q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool) -> np.ndarray:
    return np.stack([collision_attention(q[r], k[r], v[r], z=head.z, causal=causal) for r in range(q.shape[0])])


_SURROGATE_AVERAGES = {"softmax": _softmax_average, "collision": _collision_average}


def _readout(model: Transformer, x: np.ndarray) -> np.ndarray:
    return tokenwise("readout", model.readout, x, checked=False)


def _codes(family, q: np.ndarray, k: np.ndarray, z: int, ell: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rows, n, m = q.shape
    if q.dtype != k.dtype:
        q, k = q.astype(np.float64), k.astype(np.float64)
    params = family.sample(m, z, ell, seed)
    qc = family.hash(np.ascontiguousarray(q.reshape(rows * n, m)), params).reshape(rows, n, ell)
    kc = family.hash(np.ascontiguousarray(k.reshape(rows * n, m)), params).reshape(rows, n, ell)
    return qc, kc


def _add_collisions(counts: np.ndarray, qc: np.ndarray, kc: np.ndarray, lo: int, hi: int, causal: bool,
                    chunk: int = 16) -> None:
    """``counts[r, i, j] += #{u in [lo, hi) : qc[r, i, u] == kc[r, j, u]}`` (``j <= i`` when causal)."""
    for a in range(lo, hi, chunk):
        b = min(hi, a + chunk)
        counts += (qc[:, :, None, a:b] == kc[:, None, :, a:b]).sum(axis=3, dtype=counts.dtype)
    if causal:
        counts *= np.tril(np.ones(counts.shape[1:], dtype=counts.dtype))


# ------------------------------------------------------------------------------ public API
def _dense_logits(model: Transformer, inputs: np.ndarray, kinds: tuple[str, ...], caller: str) -> np.ndarray:
    _check_model(model)
    inputs = _check_rows(inputs)
    x = embed_tokens(model.embedding, inputs)
    for l, layer in enumerate(model.layers):
        attended = []
        for head in layer.heads:
            if head.kind not in kinds:
                raise ModelError(f"{caller} needs {' or '.join(kinds)} heads, layer {l} has a {head.kind} head")
            q, k, v = head_qkv(head, x, checked=False)
            attended.append(_SURROGATE_AVERAGES[head.kind](head, q, k, v, layer.causal))
        x = finish_layer(model, l, x, attended, checked=False)
    return _readout(model, x)


def softmax_logits(model: Transformer, inputs: np.ndarray) -> np.ndarray:
    """Logits ``(rows, N, outputs)`` of a trained-mode model whose heads are all softmax, batched.

    Equals ``np.stack([model(row) for row in inputs])`` up to float rounding (tested).
    """
    return _dense_logits(model, inputs, ("softmax",), "softmax_logits")


def surrogate_logits(model: Transformer, inputs: np.ndarray) -> np.ndarray:
    """Logits ``(rows, N, outputs)`` of a trained-mode model whose heads are softmax or collision
    heads (a trained surrogate), batched; equals ``np.stack([model(row) for row in inputs])`` up to
    float rounding (tested)."""
    return _dense_logits(model, inputs, tuple(_SURROGATE_AVERAGES), "surrogate_logits")


def anna_logits(model: Transformer, inputs: np.ndarray, lsh: Sequence[LSHConfig], seed: int) -> np.ndarray:
    """Logits of ``model.with_attention("anna", lsh=lsh, seed=seed)`` on every row, batched.

    ``lsh`` holds one LSHConfig per layer; head ``h`` of layer ``l`` hashes with
    ``derive_head_seed(seed, l, h)``, as :meth:`~anna.transformer.Transformer.with_attention` sets.
    """
    _check_model(model)
    inputs = _check_rows(inputs)
    if len(lsh) != len(model.layers) or not all(isinstance(c, LSHConfig) for c in lsh):
        raise ParameterError(f"lsh must hold one LSHConfig per layer ({len(model.layers)}), got {lsh!r}")
    x = embed_tokens(model.embedding, inputs)
    for l, (layer, config) in enumerate(zip(model.layers, lsh)):
        attended = []
        for h, head in enumerate(layer.heads):
            q, k, v = head_qkv(head, x, checked=False)
            qc, kc = _codes(config.family, q, k, config.z, config.ell, derive_head_seed(seed, l, h))
            counts = np.zeros((x.shape[0], x.shape[1], x.shape[1]), dtype=np.int32)
            _add_collisions(counts, qc, kc, 0, config.ell, layer.causal)
            attended.append(_count_average(counts, v))
        x = finish_layer(model, l, x, attended, checked=False)
    return _readout(model, x)


def _sweep(model: Transformer, x: np.ndarray, targets: np.ndarray, ells: Sequence[Sequence[int]], family, z: int,
           seed: int, l: int, prefix: tuple[int, ...], out: dict) -> None:
    layer = model.layers[l]
    layer_ells = sorted(ells[l])
    per_head = []
    for h, head in enumerate(layer.heads):
        q, k, v = head_qkv(head, x, checked=False)
        qc, kc = _codes(family, q, k, z, layer_ells[-1], derive_head_seed(seed, l, h))
        per_head.append((qc, kc, v, np.zeros((x.shape[0], x.shape[1], x.shape[1]), dtype=np.int32)))
    done = 0
    for ell in layer_ells:
        attended = []
        for qc, kc, v, counts in per_head:
            _add_collisions(counts, qc, kc, done, ell, layer.causal)
            attended.append(_count_average(counts, v))
        done = ell
        y = finish_layer(model, l, x, attended, checked=False)
        if l + 1 == len(model.layers):
            out[prefix + (ell,)] = token_errors(_readout(model, y), targets)
        else:
            _sweep(model, y, targets, ells, family, z, seed, l + 1, prefix + (ell,), out)


def evaluate_grid(model: Transformer, inputs: np.ndarray, targets: np.ndarray, ells: Sequence[Sequence[int]],
                  zs: Sequence[int], *, family: str = "hyperplane", seeds: int = 10, task: str = "",
                  paper: dict | None = None, weights: str = "", batch_rows: int = 64,
                  progress: Progress | None = None) -> GridResult:
    """Test error of ``model`` with Algorithm 1 heads on every cell of the grid.

    Parameters
    ----------
    model : Transformer
        Trained mode (its heads' kind does not matter: the grid swaps them all).
    inputs, targets : ndarray (rows, N)
        Token ids and class ids; targets equal to :data:`anna.train.IGNORE` are not counted.
    ells : sequence of sequences of int
        The ℓ values of every layer; the grid is their product with ``zs``.
    zs : sequence of int
    family : str
        A key of :data:`FAMILIES` ("hyperplane", "cross_polytope").
    seeds : int
        Hashing seeds ``0 .. seeds-1`` (model seeds of ``with_attention``).
    batch_rows : int
        Rows per batch (memory: ``batch_rows * N**2 * 16`` bytes of collision counts).
    progress : callable ``(done, total)``, optional
        Called after every (z, seed, batch) unit of work.
    """
    _check_model(model)
    inputs = _check_rows(inputs, targets)
    targets = np.asarray(targets)
    if family not in FAMILIES:
        raise ParameterError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    if len(ells) != len(model.layers) or any(len(e) == 0 or min(e) < 1 for e in ells):
        raise ParameterError(f"ells must give positive ℓ values for each of the {len(model.layers)} layers, got {ells!r}")
    if not zs or min(zs) < 1 or seeds < 1 or batch_rows < 1:
        raise ParameterError(f"need z >= 1, seeds >= 1, batch_rows >= 1; got zs={zs!r}, seeds={seeds}, "
                         f"batch_rows={batch_rows}")
    began = time.perf_counter()
    fam = FAMILIES[family]
    batches = [(a, min(inputs.shape[0], a + batch_rows)) for a in range(0, inputs.shape[0], batch_rows)]
    embedded = [embed_tokens(model.embedding, inputs[a:b]) for a, b in batches]
    total, done = len(zs) * seeds * len(batches), 0
    per_seed: dict[tuple[tuple[int, ...], int], list[float]] = {}
    for z in zs:
        for seed in range(seeds):
            tallies: dict[tuple[int, ...], list[int]] = {}
            for (a, b), x in zip(batches, embedded):
                out: dict[tuple[int, ...], tuple[int, int]] = {}
                _sweep(model, x, targets[a:b], ells, fam, int(z), seed, 0, (), out)
                for key, (wrong, counted) in out.items():
                    tally = tallies.setdefault(key, [0, 0])
                    tally[0] += wrong
                    tally[1] += counted
                done += 1
                if progress is not None:
                    progress(done, total)
            for key, (wrong, counted) in tallies.items():
                per_seed.setdefault((key, int(z)), []).append(wrong / counted)
    cells = tuple(GridCell(key, z, float(np.mean(errors)), len(errors), float(np.std(errors)))
                  for (key, z), errors in sorted(per_seed.items(), key=lambda item: (item[0][1], item[0][0])))
    trained_kinds = {head.kind for layer in model.layers for head in layer.heads}
    surrogate = model if trained_kinds <= set(_SURROGATE_AVERAGES) else model.with_attention("softmax")
    logits = np.concatenate([surrogate_logits(surrogate, inputs[a:b]) for a, b in batches])
    wrong, counted = token_errors(logits, targets)
    return GridResult(task, family, cells, wrong / counted, int(inputs.shape[0]), dict(paper or {}),
                      time.perf_counter() - began, weights)
