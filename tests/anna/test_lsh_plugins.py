"""LSH families as plug-ins: the registry, and a family defined here working end to end."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pytest
from numba import types

from anna.attention import anna_attention, anna_weights, collision_counts
from anna.experiments.evaluate import FAMILIES as EXPERIMENT_FAMILIES
from anna.kernels.common import array, typed_kernel
from anna.lsh import (
    E2LSH,
    FAMILIES,
    CrossPolytope,
    FamilyBase,
    Hyperplane,
    LSHConfig,
    TableParams,
    combine_codes,
    family_class,
    register_family,
    unregister_family,
)
from anna.lsh.base import check_distance, check_positive_float, multipliers, stream
from anna.strategies import lsh_families
from anna.transformer import init_transformer, load_transformer, save_transformer


# ------------------------------------------------------------------ a family of the user's own
@dataclass(frozen=True, eq=False)
class GridParams(TableParams):
    """Per function a coordinate (ell, z) and an offset (ell, z) in [0, 1)."""

    coordinates: np.ndarray = field(default=None, repr=False)
    offsets: np.ndarray = field(default=None, repr=False)

    def check(self) -> None:
        self.check_shape("coordinates", (self.ell, self.z))
        self.check_shape("offsets", (self.ell, self.z))


@typed_kernel((array(types.float64, 2, readonly=True), array(types.int64, 2, readonly=True),
               array(types.float64, 2, readonly=True), array(types.uint64, 2, readonly=True), types.float64,
               array(types.uint64, 2)))
def grid_codes(x, coordinates, offsets, mult, width, codes):
    for u in range(codes.shape[0]):
        for i in range(x.shape[0]):
            acc = np.uint64(0)
            for t in range(coordinates.shape[1]):
                cell = np.floor(x[i, coordinates[u, t]] / width + offsets[u, t])
                acc += np.uint64(np.int64(cell)) * mult[u, t]
            codes[u, i] = acc


@dataclass(frozen=True)
class CoordinateGrid(FamilyBase):
    """``h(x) = floor(x_j / w + b)`` for a random coordinate ``j`` and offset ``b``."""

    width: float = 1.0
    key: ClassVar[str] = "coordinate_grid"
    angular: ClassVar[bool] = False
    params_type: ClassVar[type] = GridParams

    def __post_init__(self) -> None:
        object.__setattr__(self, "width", check_positive_float("width", self.width))

    def draw_params(self, dim, z, ell, seed):
        coordinates = stream(seed, 5).integers(0, dim, size=(ell, z))
        offsets = stream(seed, 6).uniform(0.0, 1.0, size=(ell, z))
        return GridParams(dim, z, ell, multipliers(seed, ell, z), coordinates, offsets)

    def table_codes(self, x, params):
        codes = np.empty((params.ell, x.shape[0]), dtype=np.uint64)
        grid_codes(x.astype(np.float64), params.coordinates, params.offsets, params.multipliers, self.width, codes)
        return codes

    def _cells(self, x, params):
        x = self.check_rows(x, params).astype(np.float64)
        return x[:, params.coordinates] / self.width + params.offsets[None]

    def hash_functions(self, x, params):
        return np.floor(self._cells(x, params)).astype(np.int64)

    def boundary_margins(self, x, params):
        cells = self._cells(x, params)
        return np.abs(cells - np.round(cells))

    def collision_probability(self, distance, *, dim=None):
        """For two points ``distance`` apart in every coordinate: ``max(0, 1 - distance / w)``."""
        return max(0.0, 1.0 - check_distance(distance, angular=False) / self.width)


@pytest.fixture
def grid():
    register_family(CoordinateGrid)
    yield CoordinateGrid(0.5)
    unregister_family(CoordinateGrid.key)


def integer_rows(n, dim, seed):
    """Rows on a lattice of step 1/8 (cells of width 0.5 never split rounding-level differences)."""
    return np.random.default_rng(seed).integers(-16, 17, size=(n, dim)) / 8.0


def test_a_registered_family_hashes_like_its_reference_and_is_looked_up_by_key_or_class_name(grid):
    assert FAMILIES["coordinate_grid"] is CoordinateGrid
    assert family_class("CoordinateGrid") is family_class("coordinate_grid") is CoordinateGrid
    assert grid.name == "coordinate_grid(width=0.5)"
    x = integer_rows(50, 6, seed=1) + 0.01                   # off the cell boundaries
    params = grid.sample(6, 3, 4, seed=2)
    codes = grid.hash(x, params)
    np.testing.assert_array_equal(codes, combine_codes(grid.hash_functions(x, params), params.multipliers))
    np.testing.assert_array_equal(grid.hash(x, params.select(1, 3)), codes[:, 1:3])
    assert len(np.unique(codes[:, 0])) > 1                   # not a constant


@pytest.mark.parametrize("causal", [False, True])
def test_a_registered_family_runs_in_anna_attention_as_its_explicit_weights_say(grid, causal):
    q, k = integer_rows(120, 5, seed=3), integer_rows(120, 5, seed=4)
    k[::3] = q[::3]
    v = np.random.default_rng(5).standard_normal((120, 3))
    lsh = LSHConfig(grid, z=2, ell=6)
    out, counts = anna_attention(q, k, v, lsh, seed=7, causal=causal)
    weights = anna_weights(q, k, lsh, seed=7, causal=causal)
    np.testing.assert_allclose(out, weights @ v, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(counts, collision_counts(q, k, lsh, seed=7, causal=causal).sum(axis=1))
    assert counts[::3].min() >= 1 if not causal else counts.max() > 0


def test_a_registered_family_round_trips_through_saved_models(grid, tmp_path):
    model = init_transformer(vocab_size=6, dim=4, n_outputs=2, depth=2, max_len=16, kind="anna",
                             lsh=LSHConfig(grid, z=2, ell=5), seed=3)
    tokens = np.array([0, 1, 2, 3, 4, 5, 1, 2])
    save_transformer(model, tmp_path / "grid")
    again = load_transformer(tmp_path / "grid")
    assert again.layers[0].heads[0].lsh == LSHConfig(grid, z=2, ell=5)
    np.testing.assert_array_equal(again(tokens), model(tokens))
    unregister_family(CoordinateGrid.key)
    try:
        with pytest.raises(ValueError, match="expected one of"):
            load_transformer(tmp_path / "grid")              # an unknown family is refused, by name
        with pytest.raises(ValueError, match="registered in anna.lsh.FAMILIES"):
            save_transformer(model, tmp_path / "again")
    finally:
        register_family(CoordinateGrid)


def test_registered_families_join_the_test_strategies_and_leave_with_unregistration(grid):
    assert CoordinateGrid() in lsh_families().elements              # its examples()
    assert CoordinateGrid() not in lsh_families(angular_only=True).elements
    unregister_family(CoordinateGrid.key)
    try:
        assert CoordinateGrid() not in lsh_families().elements
    finally:
        register_family(CoordinateGrid)


# ------------------------------------------------------------------------------- the registry
def test_the_built_in_families_are_registered_in_order_and_the_experiments_offer_the_angular_ones():
    assert list(FAMILIES)[:3] == ["e2lsh", "hyperplane", "cross_polytope"]
    assert [FAMILIES[key] for key in ("e2lsh", "hyperplane", "cross_polytope")] == [E2LSH, Hyperplane, CrossPolytope]
    assert EXPERIMENT_FAMILIES == {"hyperplane": Hyperplane(), "cross_polytope": CrossPolytope()}
    with pytest.raises(TypeError):
        FAMILIES["mine"] = E2LSH                              # read-only: register_family adds


def test_register_family_refuses_clashing_or_incomplete_classes():
    @dataclass(frozen=True)
    class Clash(CoordinateGrid):
        key: ClassVar[str] = "e2lsh"

    @dataclass(frozen=True)
    class Incomplete:
        key: ClassVar[str] = "incomplete"
        angular: ClassVar[bool] = False

    with pytest.raises(ValueError, match="clashes with registered E2LSH"):
        register_family(Clash)
    with pytest.raises(ValueError, match="lacks draw_params, table_codes"):
        register_family(Incomplete)
    with pytest.raises(ValueError, match="no LSH family is registered as 'nope'"):
        family_class("nope")
    with pytest.raises(ValueError, match="no LSH family is registered as 'nope'"):
        unregister_family("nope")
    assert "incomplete" not in FAMILIES and FAMILIES["e2lsh"] is E2LSH


def test_every_family_collision_probability_is_one_at_distance_zero():
    for cls in FAMILIES.values():
        for family in cls.examples():
            assert math.isclose(family.collision_probability(0.0, dim=8), 1.0)
