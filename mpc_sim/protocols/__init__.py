"""The protocol library: one module per algorithm, each declaring its round bound as data.

Protocols are looked up by their CLI name; modules are imported on first use.

Examples
--------
>>> sorted(CATALOG)[:3]
['aggregate', 'broadcast', 'connectivity']
"""
from __future__ import annotations

import importlib

from ..protocol import Protocol

__all__ = ["CATALOG", "protocol_class", "make_protocol"]

# CLI name -> (module, class name)
CATALOG: dict[str, tuple[str, str]] = {
    "broadcast": ("mpc_sim.protocols.broadcast", "Broadcast"),
    "aggregate": ("mpc_sim.protocols.aggregate", "Aggregate"),
    "prefix-sum": ("mpc_sim.protocols.prefix_sum", "PrefixSum"),
    "sort": ("mpc_sim.protocols.sample_sort", "SampleSort"),
    "khop": ("mpc_sim.protocols.khop", "KHop"),
    "match2": ("mpc_sim.protocols.match2", "Match2"),
    "connectivity": ("mpc_sim.protocols.connectivity", "Connectivity"),
    "threesum": ("mpc_sim.protocols.threesum", "ThreeSum"),
}


def protocol_class(name: str) -> type[Protocol]:
    """The protocol class registered under ``name``; ValueError listing the names otherwise."""
    if name not in CATALOG:
        raise ValueError(f"unknown protocol {name!r}; known: {', '.join(sorted(CATALOG))}")
    module, cls = CATALOG[name]
    return getattr(importlib.import_module(module), cls)


def make_protocol(name: str, **params: object) -> Protocol:
    """Instantiate the protocol ``name`` with its parameters (e.g. ``k=4`` for ``khop``)."""
    return protocol_class(name)(**params)
