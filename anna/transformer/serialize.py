"""Save and load trained-mode transformers: ``.npz`` arrays + ``.json`` metadata, never pickle.

The ``.json`` file holds the format name and version, the mode, the model seed and dimension, and
for every layer its causal flag and for every head its kind, dimensions, LSH parameters, own seed,
temperature, normalize flag, feature-map name, lowrank scale and collision exponent ``z``, plus
the name, shape and dtype of every array.
The ``.npz`` file holds the arrays, read back with ``np.load(..., allow_pickle=False)``, so loading
cannot run code. Theory-mode models (callable maps) are refused both ways.
"""
from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np

from ..errors import LoadError, ModelError
from ..lsh import FAMILIES, LSHConfig, family_class
from .maps import MLP, Linear
from .model import Head, Layer, TokenEmbedding, Transformer

__all__ = ["save_transformer", "load_transformer", "FORMAT", "VERSION", "LoadError"]

FORMAT = "anna-mpc/transformer"
VERSION = 1


def _paths(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    if path.suffix in (".npz", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".npz"), path.with_name(path.name + ".json")


def _saved_families() -> tuple[str, ...]:
    """What an LSH family is saved as: its class name, for every family in anna.lsh.FAMILIES."""
    return tuple(cls.__name__ for cls in FAMILIES.values())


def _lsh_to_json(config: LSHConfig) -> dict:
    family = config.family
    name = type(family).__name__
    if name not in _saved_families() or type(family) is not family_class(name):
        raise ModelError(f"cannot save LSH family {family!r}: expected one of {_saved_families()} "
                         f"(a family is saved once registered in anna.lsh.FAMILIES)")
    params = {f.name: getattr(family, f.name) for f in dataclasses.fields(family)}
    for key, value in params.items():
        if not isinstance(value, (int, float, str, bool, type(None))):
            raise ModelError(f"cannot save LSH family parameter {key}={value!r}: not a JSON scalar")
    return {"family": name, "params": params, "z": int(config.z), "ell": int(config.ell)}


def _lsh_from_json(data: dict, meta: "_Fields", where: str) -> LSHConfig:
    family = meta.get(data, "family", str, where)
    if family not in _saved_families():
        raise meta.fail(where + "family", f"is {family!r}; expected one of {_saved_families()}")
    params = meta.get(data, "params", dict, where)
    try:
        instance = family_class(family)(**params)
    except (TypeError, ValueError) as exc:
        raise meta.fail(where + "params", f"are refused by {family}: {exc}") from exc
    try:
        return LSHConfig(instance, meta.integer(data, "z", where), meta.integer(data, "ell", where))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, LoadError):
            raise
        raise meta.fail(where.rstrip("."), f"is refused: {exc}") from exc


def save_transformer(model: Transformer, path: str | Path) -> tuple[Path, Path]:
    """Write ``model`` to ``<path>.npz`` and ``<path>.json`` (a ``.npz``/``.json`` suffix is dropped).

    Returns
    -------
    (npz_path, json_path)

    Raises
    ------
    ModelError
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
        raise ModelError("only trained-mode models (weight matrices, TokenEmbedding, named feature maps) "
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
                "feature_map": head.feature_map, "scale": head.scale, "z": head.z, "bias": biases,
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

    Every field is checked before it is used: a missing file, a truncated or mis-shaped JSON or
    ``.npz``, a field missing or of the wrong type, non-finite weights, arrays that disagree with
    the metadata are a :class:`~anna.errors.LoadError` (a ValueError) naming the file and the field.

    Raises
    ------
    LoadError
        On another format or version, a theory-mode file, or any of the problems above.

    Examples
    --------
    >>> load_transformer("no/such/model.npz")
    Traceback (most recent call last):
    ...
    anna.errors.LoadError: no/such/model.npz: no such file (a saved model is a .json and a .npz file side by side)
    """
    npz_path, json_path = _paths(path)
    for file in (json_path, npz_path) if Path(path).suffix == ".json" else (npz_path, json_path):   # the named one first
        if not file.is_file():
            raise LoadError(f"{file}: no such file (a saved model is a .json and a .npz file side by side)")
    try:
        metadata = json.loads(json_path.read_text(), parse_constant=_refuse_constant)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise LoadError(f"{json_path}: not a readable JSON file (truncated?): {type(exc).__name__}: {exc}") from exc
    meta = _Fields(json_path)
    meta.object(metadata, "the file")
    if metadata.get("format") != FORMAT or metadata.get("version") != VERSION:
        raise LoadError(f"{json_path} is not a {FORMAT} version {VERSION} file "
                        f"(format {metadata.get('format')!r}, version {metadata.get('version')!r})")
    if metadata.get("mode") != "trained":
        raise LoadError(f"{json_path} describes a {metadata.get('mode')!r}-mode model; only trained-mode "
                        "models can be loaded (callables are never unpickled)")
    try:
        with np.load(npz_path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise LoadError(f"{npz_path}: not a readable .npz archive (truncated?): {type(exc).__name__}: {exc}") from exc
    expected = meta.get(metadata, "arrays", dict)
    if sorted(arrays) != sorted(expected):
        raise LoadError(f"{npz_path} holds arrays {sorted(arrays)}, {json_path} field 'arrays' lists {sorted(expected)}")
    for name, info in expected.items():
        shape, dtype = meta.get(info, "shape", list, f"arrays.{name}."), meta.get(info, "dtype", str, f"arrays.{name}.")
        if list(arrays[name].shape) != shape or str(arrays[name].dtype) != dtype:
            raise LoadError(f"{npz_path}: array {name} has shape {arrays[name].shape} and dtype {arrays[name].dtype}, "
                            f"{json_path} says {tuple(shape)} and {dtype}")
        if arrays[name].dtype.kind != "f":
            raise LoadError(f"{npz_path}: array {name} must hold floats, got {arrays[name].dtype}")
        if not np.isfinite(arrays[name]).all():
            raise LoadError(f"{npz_path}: array {name} holds NaN or inf")

    def linear(prefix: str, has_bias: object, field: str) -> Linear:
        if not isinstance(has_bias, bool):
            raise LoadError(f"{json_path}: field {field!r} must be true or false, got {has_bias!r}")
        for name in [f"{prefix}.weight"] + ([f"{prefix}.bias"] if has_bias else []):
            if name not in arrays:
                raise LoadError(f"{npz_path}: array {name} is missing ({json_path} field {field!r} needs it)")
        return Linear(arrays[f"{prefix}.weight"], arrays[f"{prefix}.bias"] if has_bias else None)

    try:
        layers = []
        for l, layer in enumerate(meta.get(metadata, "layers", list)):
            where = f"layers[{l}]."
            meta.object(layer, where[:-1])
            heads = []
            for h, head in enumerate(meta.get(layer, "heads", list, where)):
                at = f"{where}heads[{h}]."
                meta.object(head, at[:-1])
                bias = meta.get(head, "bias", dict, at)
                maps = {name: linear(f"layers.{l}.heads.{h}.{name}", meta.get(bias, name, bool, f"{at}bias."),
                                     f"{at}bias.{name}") for name in ("query", "key", "value", "output")}
                lsh = meta.get(head, "lsh", (dict, type(None)), at)
                heads.append(_build(json_path, at[:-1], lambda: Head(
                    meta.get(head, "kind", str, at), maps["query"], maps["key"], maps["value"], maps["output"],
                    dim=meta.integer(head, "dim", at, optional=True),
                    value_dim=meta.integer(head, "value_dim", at, optional=True),
                    lsh=None if lsh is None else _lsh_from_json(lsh, meta, f"{at}lsh."),
                    seed=meta.integer(head, "seed", at, optional=True), temperature=meta.number(head, "temperature", at),
                    normalize=meta.get(head, "normalize", bool, at),
                    feature_map=meta.get(head, "feature_map", (str, type(None)), at),
                    scale=meta.number(head, "scale", at) if "scale" in head else 1.0,
                    z=meta.integer(head, "z", at) if "z" in head else 1)))
            mlp = None
            mlp_data = meta.get(layer, "mlp", (dict, type(None)), where)
            if mlp_data is not None:
                mlp_bias = meta.get(mlp_data, "bias", dict, f"{where}mlp.")
                mlp = MLP(linear(f"layers.{l}.mlp.hidden", meta.get(mlp_bias, "hidden", bool, f"{where}mlp.bias."),
                                 f"{where}mlp.bias.hidden"),
                          linear(f"layers.{l}.mlp.output", meta.get(mlp_bias, "output", bool, f"{where}mlp.bias."),
                                 f"{where}mlp.bias.output"))
            layers.append(_build(json_path, where[:-1], lambda: Layer(tuple(heads), mlp,
                                                                       causal=meta.get(layer, "causal", bool, where))))
        if "embedding.tokens" not in arrays:
            raise LoadError(f"{npz_path}: array embedding.tokens is missing")
        embedding = TokenEmbedding(arrays["embedding.tokens"], arrays.get("embedding.positions"))
        readout = linear("readout", meta.get(meta.get(metadata, "readout", dict), "bias", bool, "readout."),
                         "readout.bias")
        return _build(json_path, "the model", lambda: Transformer(
            embedding, tuple(layers), readout, seed=meta.integer(metadata, "seed", ""),
            dim=meta.integer(metadata, "dim", "", optional=True)))
    except LoadError:
        raise
    except (ValueError, TypeError) as exc:
        raise LoadError(f"{json_path} and {npz_path} do not make a model: {type(exc).__name__}: {exc}") from exc


def _refuse_constant(name: str):
    raise LoadError(f"{name} is not a number JSON allows")


def _build(json_path: Path, what: str, make):
    """``make()``; its ValueError (a model the constructors refuse) as a LoadError naming ``what``."""
    try:
        return make()
    except LoadError:
        raise
    except (ValueError, TypeError) as exc:
        raise LoadError(f"{json_path}: {what} is refused by the model: {exc}") from exc


class _Fields:
    """Reads fields of a model's JSON metadata, raising LoadError naming the file and the field."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, field: str, why: str) -> LoadError:
        return LoadError(f"{self.path}: field {field!r} {why}")

    def object(self, value: object, field: str) -> None:
        if not isinstance(value, dict):
            raise self.fail(field, f"must be a JSON object, got {type(value).__name__}")

    def get(self, record: dict, key: str, kind, where: str = ""):
        if not isinstance(record, dict):
            raise self.fail(where.rstrip(".") or key, f"must be a JSON object, got {type(record).__name__}")
        if key not in record:
            raise self.fail(where + key, "is missing")
        value = record[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise self.fail(where + key, f"must be {names}, got {value!r}")
        return value

    def integer(self, record: dict, key: str, where: str, optional: bool = False) -> int | None:
        return self.get(record, key, (int, type(None)) if optional else int, where)

    def number(self, record: dict, key: str, where: str) -> float:
        value = self.get(record, key, (int, float), where)
        if not np.isfinite(value):
            raise self.fail(where + key, f"must be finite, got {value!r}")
        return value
