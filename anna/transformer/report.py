"""ResourceReport: the sizes of an ANNA-transformer that the theorems bound (docs/theory.md §2, §4)."""
from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table

from ..errors import ParameterError

__all__ = ["ResourceReport", "HEAD_KINDS"]

HEAD_KINDS = ("anna", "ema", "softmax", "lowrank", "collision")


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParameterError(f"{name} must be a non-negative int, got {value!r}")


@dataclass(frozen=True)
class ResourceReport:
    """Depth, heads, head dimension, width, LSH tables and parameters of a transformer.

    Parameters
    ----------
    depth : int
        Number of layers ``L``.
    heads_per_layer : tuple of int
        ``H_l`` for every layer.
    kinds : tuple of tuple of str
        The attention kind of every head, per layer.
    m : int
        Head dimension: the largest query/key or value dimension over all heads.
    model_dim : int
        Dimension ``d`` of the residual stream.
    tables : tuple of tuple of int
        LSH tables ``ℓ`` of every head (0 for heads that are not ``anna``).
    hash_functions : tuple of tuple of int
        LSH functions ``z·ℓ`` of every head (0 for heads that are not ``anna``).
    parameters : int
        Trained parameters (weights and biases); callable maps count 0.
    callable_maps : int
        Token-wise maps that are callables (theory mode); their parameters are not counted.

    Examples
    --------
    >>> r = ResourceReport(depth=1, heads_per_layer=(2,), kinds=(("anna", "ema"),), m=4, model_dim=8,
    ...                    tables=((3, 0),), hash_functions=((6, 0),), parameters=100, callable_maps=0)
    >>> r.width, r.total_tables, r.total_hash_functions
    (8, 3, 6)
    """

    depth: int
    heads_per_layer: tuple[int, ...]
    kinds: tuple[tuple[str, ...], ...]
    m: int
    model_dim: int
    tables: tuple[tuple[int, ...], ...]
    hash_functions: tuple[tuple[int, ...], ...]
    parameters: int
    callable_maps: int

    def __post_init__(self) -> None:
        for name in ("depth", "m", "model_dim", "parameters", "callable_maps"):
            _check_count(name, getattr(self, name))
        for name in ("heads_per_layer", "kinds", "tables", "hash_functions"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) != self.depth:
                raise ParameterError(f"{name} must be a tuple with one entry per layer ({self.depth}), got {value!r}")
        for layer, n_heads in enumerate(self.heads_per_layer):
            _check_count(f"heads_per_layer[{layer}]", n_heads)
            for name in ("kinds", "tables", "hash_functions"):
                row = getattr(self, name)[layer]
                if not isinstance(row, tuple) or len(row) != n_heads:
                    raise ParameterError(f"{name}[{layer}] must be a tuple of {n_heads} entries, got {row!r}")
            for head, (kind, ell, functions) in enumerate(zip(self.kinds[layer], self.tables[layer],
                                                              self.hash_functions[layer])):
                where = f"layer {layer} head {head}"
                if kind not in HEAD_KINDS:
                    raise ParameterError(f"{where}: kind must be one of {HEAD_KINDS}, got {kind!r}")
                _check_count(f"tables of {where}", ell)
                _check_count(f"hash_functions of {where}", functions)
                if kind == "anna" and (ell < 1 or functions < ell or functions % ell):
                    raise ParameterError(f"{where}: an anna head needs ell >= 1 tables and z*ell hash functions "
                                     f"(a multiple of ell), got {ell} and {functions}")
                if kind != "anna" and (ell or functions):
                    raise ParameterError(f"{where}: a {kind} head has no LSH tables, got {ell} and {functions}")

    @property
    def max_heads(self) -> int:
        return max(self.heads_per_layer, default=0)

    @property
    def width(self) -> int:
        """``m · H`` with ``H`` the largest number of heads in a layer (docs/theory.md §2)."""
        return self.m * self.max_heads

    @property
    def total_tables(self) -> int:
        return sum(sum(row) for row in self.tables)

    @property
    def total_hash_functions(self) -> int:
        return sum(sum(row) for row in self.hash_functions)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict, derived quantities included."""
        return {
            "depth": self.depth,
            "heads_per_layer": list(self.heads_per_layer),
            "kinds": [list(row) for row in self.kinds],
            "m": self.m,
            "model_dim": self.model_dim,
            "width": self.width,
            "tables": [list(row) for row in self.tables],
            "hash_functions": [list(row) for row in self.hash_functions],
            "total_tables": self.total_tables,
            "total_hash_functions": self.total_hash_functions,
            "parameters": self.parameters,
            "callable_maps": self.callable_maps,
        }

    def parameters_label(self) -> str:
        """``"1234"``, or ``"1234 + 5 callable maps"`` when callables are not counted."""
        if self.callable_maps:
            return f"{self.parameters} + {self.callable_maps} callable map{'s' * (self.callable_maps > 1)}"
        return str(self.parameters)

    def __rich__(self) -> Table:
        table = Table(title="Resources", show_header=True)
        table.add_column("quantity")
        table.add_column("value", justify="right")
        table.add_row("depth L", str(self.depth))
        table.add_row("heads per layer", ", ".join(map(str, self.heads_per_layer)) or "-")
        for layer, kinds in enumerate(self.kinds):
            heads = [f"{kind} ℓ={ell} z·ℓ={functions}" if kind == "anna" else kind
                     for kind, ell, functions in zip(kinds, self.tables[layer], self.hash_functions[layer])]
            table.add_row(f"  layer {layer}", ", ".join(heads) or "no heads")
        table.add_row("head dim m", str(self.m))
        table.add_row("model dim d", str(self.model_dim))
        table.add_row("width m·H", str(self.width))
        table.add_row("LSH tables ℓ (total)", str(self.total_tables))
        table.add_row("LSH functions z·ℓ (total)", str(self.total_hash_functions))
        table.add_row("parameters", self.parameters_label())
        return table
