"""The torch softmax surrogate: the forward pass of :class:`anna.transformer.Transformer`, batched.

:class:`TorchSurrogate` holds one torch tensor per weight array of a trained-mode transformer
(same names as :mod:`anna.transformer.serialize` uses) and computes, for a batch of token rows
``inputs`` of shape ``(B, N)``, exactly the forward pass of the package docstring of
:mod:`anna.transformer` with every head a softmax head::

    x = tokens[inputs] + positions[:N]
    per layer:  x = x + Σ_h  softmax(β q̂ k̂ᵀ [+ causal mask]) v  W_h ,   q̂ = q / max(‖q‖, 1e-12)
                x = x + GeLU(x W1 + b1) W2 + b2
    logits = x W_ψ + b_ψ

(``F.normalize(eps=1e-12)`` is :func:`anna.reference.normalize_rows`, ``F.gelu`` is the exact erf
GeLU of :func:`anna.transformer.gelu`.) :meth:`TorchSurrogate.to_transformer` copies the trained
tensors back into the template's structure unchanged, so the numpy model computes the same logits
(tested to float tolerance); ``with_attention("anna", ...)`` then swaps the attention.

torch is imported when a surrogate is built, not when this module is imported.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ..errors import InputError, ModelError, ShapeError
from ..reference import COSINE_CLAMP
from ..transformer import MLP, Linear, TokenEmbedding, Transformer
from ._torch import require_torch
from .hashed import HashedTraining, hashed_attention, noise_seed

__all__ = ["TorchSurrogate", "weight_arrays"]


def _linear_arrays(prefix: str, f: Linear, out: dict[str, np.ndarray]) -> None:
    out[f"{prefix}.weight"] = f.weight
    if f.bias is not None:
        out[f"{prefix}.bias"] = f.bias


def weight_arrays(model: Transformer) -> dict[str, np.ndarray]:
    """Every weight array of a trained-mode model, by the names :mod:`anna.transformer.serialize` uses.

    Examples
    --------
    >>> from anna.transformer import init_transformer
    >>> model = init_transformer(vocab_size=3, dim=4, n_outputs=2, depth=1, max_len=5)
    >>> sorted(weight_arrays(model))[:3]
    ['embedding.positions', 'embedding.tokens', 'layers.0.heads.0.key.weight']
    """
    if model.mode != "trained":
        raise ModelError("a surrogate needs a trained-mode transformer (weight matrices only), got a theory-mode one")
    arrays: dict[str, np.ndarray] = {"embedding.tokens": model.embedding.tokens}
    if model.embedding.positions is not None:
        arrays["embedding.positions"] = model.embedding.positions
    for l, layer in enumerate(model.layers):
        for h, head in enumerate(layer.heads):
            for name, f in head.maps.items():
                _linear_arrays(f"layers.{l}.heads.{h}.{name}", f, arrays)
        if layer.mlp is not None:
            _linear_arrays(f"layers.{l}.mlp.hidden", layer.mlp.hidden, arrays)
            _linear_arrays(f"layers.{l}.mlp.output", layer.mlp.output, arrays)
    _linear_arrays("readout", model.readout, arrays)
    return arrays


def _elu_plus_one(x):
    return require_torch().nn.functional.elu(x) + 1.0


_FEATURE_MAPS = {"elu+1": _elu_plus_one, "identity": lambda x: x}
"""Feature maps of lowrank heads, by the names :data:`anna.transformer.FEATURE_MAPS` uses."""


def _collision(q, k, v, z: int, causal_mask):
    """``Σ_j p_ij v_j / Σ_j p_ij`` with ``p_ij = (1 − arccos(q̂_i·k̂_j)/π)^z``
    (:func:`anna.reference.collision_attention`, the same cosine clamp)."""
    torch = require_torch()
    functional = torch.nn.functional
    cosines = functional.normalize(q, dim=-1, eps=1e-12) @ functional.normalize(k, dim=-1, eps=1e-12).transpose(-1, -2)
    cosines = cosines.clamp(-1.0 + COSINE_CLAMP, 1.0 - COSINE_CLAMP)
    weights = (1.0 - torch.arccos(cosines) / math.pi) ** z
    if causal_mask is not None:
        weights = weights.masked_fill(causal_mask, 0.0)
    return (weights @ v) / weights.sum(dim=-1, keepdim=True)


def _lowrank(fq, fk, v, causal_mask):
    """``φ(Q)(φ(K)ᵀ V) / φ(Q)(φ(K)ᵀ 1)`` (:func:`anna.reference.lowrank_attention`); causal as a
    masked ``N × N`` product, which for training lengths (``N ≈ 100``) is cheaper than a scan."""
    weights = fq @ fk.transpose(-1, -2)
    if causal_mask is not None:
        weights = weights.masked_fill(causal_mask, 0.0)
    return (weights @ v) / weights.sum(dim=-1, keepdim=True)


class TorchSurrogate:
    """A trainable torch copy of a trained-mode :class:`Transformer` with softmax, lowrank or collision heads.

    Parameters
    ----------
    template : Transformer
        Trained mode, every head ``kind="softmax"`` (the surrogate's ``β`` and ``normalize`` are
        the heads'), ``kind="lowrank"`` with feature map ``"elu+1"`` or ``"identity"``, or
        ``kind="collision"`` (``w_ij ∝ (1 − θ_ij/π)^z``, the head's ``z``). Its
        weights are the initial values.
    dtype : torch dtype, optional
        Default: the template's weight dtype.
    device : str or torch.device
        Where the weights live and the forward pass runs (``"cpu"`` or ``"cuda"``).
    hashing : HashedTraining, optional
        Compute every head's attention through sampled hyperplane tables instead
        (:mod:`anna.train.hashed`); the hyperplanes are read from :attr:`noise`, which
        :meth:`draw_noise` (or the trainer, once per step) fills. The template's heads keep their
        kind for the export.

    Attributes
    ----------
    params : dict of str to torch.Tensor
        Leaf tensors with ``requires_grad=True``, keyed as :func:`weight_arrays`.
    """

    def __init__(self, template: Transformer, dtype: Any = None, device: Any = "cpu",
                 hashing: HashedTraining | None = None) -> None:
        torch = require_torch()
        arrays = weight_arrays(template)
        kinds = {head.kind for layer in template.layers for head in layer.heads}
        if kinds - {"softmax", "lowrank", "collision"}:
            raise ModelError(f"the surrogate trains softmax, lowrank and collision heads only; the template has "
                             f"heads of kind "
                             f"{sorted(kinds)} (use template.with_attention('softmax') first)")
        maps = {head.feature_map for layer in template.layers for head in layer.heads if head.kind == "lowrank"}
        if maps - set(_FEATURE_MAPS):
            raise ModelError(f"lowrank heads of the surrogate take the feature maps {sorted(_FEATURE_MAPS)}, "
                             f"got {sorted(map(str, maps))}")
        if any(layer.mlp is not None and not isinstance(layer.mlp, MLP) for layer in template.layers):
            raise ModelError("every layer's MLP must be a trained MLP (or None)")
        self.template = template
        self.device = torch.device(device)
        dtype = dtype if dtype is not None else getattr(torch, str(template.embedding.tokens.dtype))
        self.params = {name: torch.tensor(np.array(a), dtype=dtype, device=self.device, requires_grad=True)
                       for name, a in arrays.items()}
        self._masks: dict[int, Any] = {}
        self.hashing = hashing
        self.noise = None
        self._planes: dict[tuple[int, int], tuple[int, int]] = {}
        if hashing is not None:
            if not isinstance(hashing, HashedTraining):
                raise ModelError(f"hashing must be a HashedTraining, got {type(hashing).__name__}")
            if len(hashing.tables) != len(template.layers):
                raise ModelError(f"hashing.tables gives {len(hashing.tables)} layers, the model has "
                                 f"{len(template.layers)}")
            offset = 0
            for l, layer in enumerate(template.layers):
                for h in range(len(layer.heads)):
                    width = self.params[f"layers.{l}.heads.{h}.query.weight"].shape[1]
                    self._planes[(l, h)] = (offset, width)
                    offset += hashing.planes(l, width)
            self.noise = torch.zeros(offset, dtype=dtype, device=self.device)

    @property
    def noise_size(self) -> int:
        """Random numbers per step of a hashed surrogate (0 without ``hashing``)."""
        return 0 if self.noise is None else int(self.noise.numel())

    def draw_noise(self, seed: int, step: int = 0, generator: Any = None) -> None:
        """Fill :attr:`noise` with the hyperplanes of ``(seed, step)`` (:func:`anna.train.hashed.noise_seed`).

        Without ``generator`` they are drawn on the CPU and copied, so an evaluation draws the same
        tables on every device; the trainer passes a generator on its device (no copy per step).
        """
        torch = require_torch()
        if self.noise is None:
            return
        if generator is None:
            cpu = torch.Generator().manual_seed(noise_seed(seed, step))
            self.noise.copy_(torch.randn(self.noise.shape, generator=cpu, dtype=self.noise.dtype))
            return
        generator.manual_seed(noise_seed(seed, step))
        self.noise.normal_(generator=generator)

    def _head_planes(self, l: int, h: int):
        offset, width = self._planes[(l, h)]
        ell = self.hashing.tables[l]
        return self.noise[offset:offset + width * ell * self.hashing.z].view(width, ell * self.hashing.z)

    # -- forward ------------------------------------------------------------------------------
    def _linear(self, prefix: str, x):
        y = x @ self.params[f"{prefix}.weight"]
        bias = self.params.get(f"{prefix}.bias")
        return y if bias is None else y + bias

    def forward(self, inputs):
        """Logits ``(B, N, n_outputs)`` of the token rows ``inputs`` (``(B, N)`` integer tensor or array)."""
        torch = require_torch()
        inputs = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs)
        if inputs.ndim != 2 or inputs.dtype not in (torch.int64, torch.int32):
            raise ShapeError(f"inputs must be a (B, N) integer array, got {tuple(inputs.shape)} {inputs.dtype}")
        vocab = self.params["embedding.tokens"].shape[0]
        if inputs.numel() and (int(inputs.min()) < 0 or int(inputs.max()) >= vocab):
            raise InputError(f"inputs must be token ids in [0, {vocab}), got values in "
                             f"[{int(inputs.min())}, {int(inputs.max())}]")
        positions = self.params.get("embedding.positions")
        if positions is not None and inputs.shape[1] > positions.shape[0]:
            raise InputError(f"inputs has length {inputs.shape[1]}, longer than max_len {positions.shape[0]}")
        return self.logits(inputs.to(self.device))

    __call__ = forward

    def _causal_mask(self, n: int):
        """``True`` above the diagonal, built once per length on the surrogate's device."""
        torch = require_torch()
        if n not in self._masks:
            self._masks[n] = torch.ones(n, n, dtype=torch.bool, device=self.device).triu(1)
        return self._masks[n]

    def logits(self, inputs):
        """:meth:`forward` without the input checks (they read values back from the device, which a
        captured CUDA graph cannot do): ``inputs`` must be a valid ``(B, N)`` int64 tensor on the device.

        The token embedding is a one-hot product rather than an index: its gradient is then a
        plain matrix product, deterministic on CUDA (an index's backward adds with atomics).
        """
        torch = require_torch()
        functional = torch.nn.functional
        tokens = self.params["embedding.tokens"]
        n = inputs.shape[1]
        x = functional.one_hot(inputs, tokens.shape[0]).to(tokens.dtype) @ tokens
        positions = self.params.get("embedding.positions")
        if positions is not None:
            x = x + positions[:n]
        causal_mask = self._causal_mask(n)
        for l, layer in enumerate(self.template.layers):
            update = torch.zeros_like(x)
            for h, head in enumerate(layer.heads):
                prefix = f"layers.{l}.heads.{h}"
                q, k, v = (self._linear(f"{prefix}.{name}", x) for name in ("query", "key", "value"))
                if head.normalize:
                    q, k = functional.normalize(q, dim=-1, eps=1e-12), functional.normalize(k, dim=-1, eps=1e-12)
                if self.hashing is not None:
                    attended = hashed_attention(q, k, v, self._head_planes(l, h), self.hashing.z, self.hashing.tau,
                                                self.hashing.straight_through, causal_mask if layer.causal else None,
                                                normalized=head.normalize)
                elif head.kind == "collision":
                    attended = _collision(q, k, v, head.z, causal_mask if layer.causal else None)
                elif head.kind == "lowrank":
                    if head.scale != 1.0:
                        q, k = head.scale * q, head.scale * k
                    attended = _lowrank(_FEATURE_MAPS[head.feature_map](q), _FEATURE_MAPS[head.feature_map](k), v,
                                        causal_mask if layer.causal else None)
                else:
                    scores = head.temperature * (q @ k.transpose(-1, -2))
                    if layer.causal:
                        scores = scores.masked_fill(causal_mask, float("-inf"))
                    attended = torch.softmax(scores, dim=-1) @ v
                update = update + self._linear(f"{prefix}.output", attended)
            x = x + update
            if layer.mlp is not None:
                x = x + self._linear(f"layers.{l}.mlp.output",
                                     functional.gelu(self._linear(f"layers.{l}.mlp.hidden", x)))
        return self._linear("readout", x)

    # -- export -------------------------------------------------------------------------------
    def numpy_arrays(self) -> dict[str, np.ndarray]:
        """The current weights as numpy arrays (copies)."""
        return {name: p.detach().cpu().numpy().copy() for name, p in self.params.items()}

    def to_transformer(self) -> Transformer:
        """The template with the trained weights, unchanged (same dtype, same structure)."""
        arrays = self.numpy_arrays()

        def linear(prefix: str) -> Linear:
            return Linear(arrays[f"{prefix}.weight"], arrays.get(f"{prefix}.bias"))

        model = self.template
        layers = []
        for l, layer in enumerate(model.layers):
            heads = tuple(dataclasses.replace(head, **{name: linear(f"layers.{l}.heads.{h}.{name}")
                                                        for name in ("query", "key", "value", "output")})
                          for h, head in enumerate(layer.heads))
            mlp = None if layer.mlp is None else MLP(linear(f"layers.{l}.mlp.hidden"), linear(f"layers.{l}.mlp.output"))
            layers.append(dataclasses.replace(layer, heads=heads, mlp=mlp))
        embedding = TokenEmbedding(arrays["embedding.tokens"], arrays.get("embedding.positions"))
        return dataclasses.replace(model, embedding=embedding, layers=tuple(layers), readout=linear("readout"))

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Overwrite the weights in place (names and shapes must match)."""
        torch = require_torch()
        if sorted(arrays) != sorted(self.params):
            raise ShapeError(f"arrays {sorted(arrays)} do not match the surrogate's {sorted(self.params)}")
        with torch.no_grad():
            for name, p in self.params.items():
                if tuple(arrays[name].shape) != tuple(p.shape):
                    raise ShapeError(f"array {name} has shape {arrays[name].shape}, expected {tuple(p.shape)}")
                p.copy_(torch.as_tensor(np.asarray(arrays[name]), dtype=p.dtype, device=p.device))
