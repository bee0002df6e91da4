"""Locality-sensitive hash families as plug-ins, (z, ell) from Theorem 3.4, and measured collision rates.

A family samples ``ell`` tables of ``z`` functions each (``sample``) and hashes rows into one
``uint64`` code per table (``hash``): two rows share a table's code exactly when all ``z``
functions of the table agree on them (up to a false match of probability about ``2**-64``, see
:mod:`anna.lsh.base`). Each family is one module with its parameters, its draw and its numba
kernel, registered by name in :data:`FAMILIES` (docs/theory.md §3):

* :class:`E2LSH` (``"e2lsh"``, :mod:`anna.lsh.e2lsh`) -- p-stable (Datar et al. 2004),
  ``h(x) = floor((a.x + b) / w)``; for Euclidean distance, ``rho ~ 1/c``.
* :class:`Hyperplane` (``"hyperplane"``, :mod:`anna.lsh.hyperplane`) -- ``h(x) = [a.x >= 0]``
  (Charikar 2002); angular, collision ``1 - theta/pi``.
* :class:`CrossPolytope` (``"cross_polytope"``, :mod:`anna.lsh.crosspolytope`) -- rotate by
  ``H D_3 H D_2 H D_1`` (Andoni et al. 2015), then take the nearest of ``+-e_i``; angular.

A new family is a module defining a frozen dataclass deriving from :class:`FamilyBase`, decorated
with :func:`register_family` (the interface is in :mod:`anna.lsh.base`). :mod:`anna.lsh.sizing`
holds Theorem 3.4's sizing and the Monte Carlo collision rates.

Examples
--------
>>> import numpy as np
>>> fam = FAMILIES["e2lsh"](width=4.0)
>>> params = fam.sample(dim=8, z=2, ell=3, seed=0)
>>> codes = fam.hash(np.random.default_rng(0).standard_normal((5, 8)), params)
>>> codes.shape, codes.dtype
((5, 3), dtype('uint64'))
"""
from __future__ import annotations

from .base import (FAMILIES, FamilyBase, LSHConfig, LSHFamily, TableParams, combine_codes, family_class,
                   parameter_bytes, register_family, unregister_family)
# imported in this order, the built-ins register (and are listed in FAMILIES) in this order
from .e2lsh import E2LSH, E2LSHParams
from .hyperplane import Hyperplane, HyperplaneParams
from .crosspolytope import CrossPolytope, CrossPolytopeParams
from .sizing import MeasuredRho, TheoryParameters, measure_collision_rates, theory_parameters

__all__ = [
    "E2LSH",
    "Hyperplane",
    "CrossPolytope",
    "E2LSHParams",
    "HyperplaneParams",
    "CrossPolytopeParams",
    "LSHFamily",
    "LSHConfig",
    "TheoryParameters",
    "MeasuredRho",
    "combine_codes",
    "theory_parameters",
    "measure_collision_rates",
    "FamilyBase",
    "TableParams",
    "FAMILIES",
    "register_family",
    "unregister_family",
    "family_class",
]

MAX_PARAMETER_BYTES = 4 * 2**30
"""Sampling refuses tables whose parameters would take more bytes than this (raise it to sample more)."""
