"""Save and load trained-mode transformers: ``.npz`` arrays + ``.json`` metadata, never pickle.

The ``.json`` file holds the format name and version, the mode, the model seed and dimension, and
for every layer its causal flag and for every head its kind, dimensions, LSH parameters, own seed,
temperature, normalize flag and feature-map name, plus the name, shape and dtype of every array.
The ``.npz`` file holds the arrays, read back with ``np.load(..., allow_pickle=False)``, so loading
cannot run code. Theory-mode models (callable maps) are refused both ways.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from .. import lsh as lsh_module
from ..lsh import LSHConfig
from .maps import MLP, Linear
from .model import Head, Layer, TokenEmbedding, Transformer

__all__ = ["save_transformer", "load_transformer", "FORMAT", "VERSION"]

FORMAT = "anna-mpc/transformer"
VERSION = 1
_LSH_FAMILIES = ("E2LSH", "Hyperplane", "CrossPolytope")


def _paths(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    if path.suffix in (".npz", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".npz"), path.with_name(path.name + ".json")


def _lsh_to_json(config: LSHConfig) -> dict:
    family = config.family
    name = type(family).__name__
    if name not in _LSH_FAMILIES or not dataclasses.is_dataclass(family):
        raise ValueError(f"cannot save LSH family {family!r}: expected one of {_LSH_FAMILIES}")
    params = {f.name: getattr(family, f.name) for f in dataclasses.fields(family)}
    for key, value in params.items():
        if not isinstance(value, (int, float, str, bool, type(None))):
            raise ValueError(f"cannot save LSH family parameter {key}={value!r}: not a JSON scalar")
    return {"family": name, "params": params, "z": int(config.z), "ell": int(config.ell)}


def _lsh_from_json(data: dict) -> LSHConfig:
    if data["family"] not in _LSH_FAMILIES:
        raise ValueError(f"unknown LSH family {data['family']!r} in model file; expected one of {_LSH_FAMILIES}")
    family = getattr(lsh_module, data["family"])(**data["params"])
    return LSHConfig(family, data["z"], data["ell"])


def save_transformer(model: Transformer, path: str | Path) -> tuple[Path, Path]:
    """Write ``model`` to ``<path>.npz`` and ``<path>.json`` (a ``.npz``/``.json`` suffix is dropped).

    Returns
    -------
    (npz_path, json_path)

    Raises
    ------
    ValueError
        If the model is in theory mode (holds callables): callables cannot be saved without pickle.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from anna.transformer import init_transformer
    >>> model = init_transformer(vocab_size=4, dim=4, n_outputs=2, depth=1, max_len=6)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = save_transformer(model, tmp + "/model")
    ...     again = load_transformer(tmp + "/model")
    >>> bool((again(np.array([0, 1, 2])) == model(np.array([0, 1, 2]))).all())
    True
    """
    if model.mode != "trained":
        raise ValueError("only trained-mode models (weight matrices, TokenEmbedding, named feature maps) "
                         "can be saved; this model holds callables (theory mode)")
    arrays: dict[str, np.ndarray] = {"embedding.tokens": model.embedding.tokens}
    if model.embedding.positions is not None:
        arrays["embedding.positions"] = model.embedding.positions

    def add_linear(prefix: str, f: Linear) -> bool:
        arrays[f"{prefix}.weight"] = f.weight
        if f.bias is not None:
            arrays[f"{prefix}.bias"] = f.bias
        return f.bias is not None

    layers = []
    for l, layer in enumerate(model.layers):
        heads = []
        for h, head in enumerate(layer.heads):
            biases = {name: add_linear(f"layers.{l}.heads.{h}.{name}", f) for name, f in head.maps.items()}
            heads.append({
                "kind": head.kind, "dim": head.dim, "value_dim": head.value_dim,
                "lsh": None if head.lsh is None else _lsh_to_json(head.lsh), "seed": head.seed,
                "temperature": head.temperature, "normalize": head.normalize,
                "feature_map": head.feature_map, "bias": biases,
            })
        mlp = None
        if layer.mlp is not None:
            mlp = {"bias": {"hidden": add_linear(f"layers.{l}.mlp.hidden", layer.mlp.hidden),
                            "output": add_linear(f"layers.{l}.mlp.output", layer.mlp.output)}}
        layers.append({"causal": layer.causal, "mlp": mlp, "heads": heads})
    readout_bias = add_linear("readout", model.readout)
    metadata = {
        "format": FORMAT, "version": VERSION, "mode": "trained", "seed": model.seed, "dim": model.dim,
        "layers": layers, "readout": {"bias": readout_bias},
        "arrays": {name: {"shape": list(a.shape), "dtype": str(a.dtype)} for name, a in sorted(arrays.items())},
    }
    npz_path, json_path = _paths(path)
    np.savez(npz_path, **arrays)
    json_path.write_text(json.dumps(metadata, indent=1))
    return npz_path, json_path


def load_transformer(path: str | Path) -> Transformer:
    """Read a model written by :func:`save_transformer` (``path`` with or without suffix).

    Raises
    ------
    ValueError
        On another format or version, a theory-mode file, or arrays that disagree with the metadata.
    """
    npz_path, json_path = _paths(path)
    metadata = json.loads(json_path.read_text())
    if metadata.get("format") != FORMAT or metadata.get("version") != VERSION:
        raise ValueError(f"{json_path} is not a {FORMAT} version {VERSION} file "
                         f"(format {metadata.get('format')!r}, version {metadata.get('version')!r})")
    if metadata.get("mode") != "trained":
        raise ValueError(f"{json_path} describes a {metadata.get('mode')!r}-mode model; only trained-mode "
                         "models can be loaded (callables are never unpickled)")
    with np.load(npz_path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    expected = metadata["arrays"]
    if sorted(arrays) != sorted(expected):
        raise ValueError(f"{npz_path} holds arrays {sorted(arrays)}, metadata lists {sorted(expected)}")
    for name, info in expected.items():
        if list(arrays[name].shape) != info["shape"] or str(arrays[name].dtype) != info["dtype"]:
            raise ValueError(f"array {name} has shape {arrays[name].shape} and dtype {arrays[name].dtype}, "
                             f"metadata says {tuple(info['shape'])} and {info['dtype']}")

    def linear(prefix: str, has_bias: bool) -> Linear:
        return Linear(arrays[f"{prefix}.weight"], arrays[f"{prefix}.bias"] if has_bias else None)

    layers = []
    for l, layer in enumerate(metadata["layers"]):
        heads = []
        for h, head in enumerate(layer["heads"]):
            maps = {name: linear(f"layers.{l}.heads.{h}.{name}", head["bias"][name])
                    for name in ("query", "key", "value", "output")}
            heads.append(Head(head["kind"], maps["query"], maps["key"], maps["value"], maps["output"],
                              dim=head["dim"], value_dim=head["value_dim"],
                              lsh=None if head["lsh"] is None else _lsh_from_json(head["lsh"]),
                              seed=head["seed"], temperature=head["temperature"],
                              normalize=head["normalize"], feature_map=head["feature_map"]))
        mlp = None
        if layer["mlp"] is not None:
            mlp = MLP(linear(f"layers.{l}.mlp.hidden", layer["mlp"]["bias"]["hidden"]),
                      linear(f"layers.{l}.mlp.output", layer["mlp"]["bias"]["output"]))
        layers.append(Layer(tuple(heads), mlp, causal=layer["causal"]))
    embedding = TokenEmbedding(arrays["embedding.tokens"], arrays.get("embedding.positions"))
    return Transformer(embedding, tuple(layers), linear("readout", metadata["readout"]["bias"]),
                       seed=metadata["seed"], dim=metadata["dim"])
