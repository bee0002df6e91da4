"""Hypothesis strategies for random attention inputs and LSH configurations (public; needs
``hypothesis``): :func:`attention_inputs`, :func:`lsh_families`, :func:`lsh_configs`.

Examples
--------
>>> from hypothesis import given
>>> from anna.reference import ema_attention
>>> @given(attention_inputs(min_rows=1))
... def test_ema_output_shape(case):
...     out, _ = ema_attention(case.q, case.k, case.v)
...     assert out.shape == (case.q.shape[0], case.v.shape[1])
>>> test_ema_output_shape()

Array contents come from a numpy generator seeded by hypothesis (fast, and still shrinkable in the
structural parameters: shapes, dtype, scale, duplication). Inputs mix the situations the kernels
must get right: empty query or key sets, one column, float32 and float64, keys repeated exactly,
queries equal to keys, integer-valued coordinates (exact ties on hash boundaries) and scales from
tiny to large.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from anna.lsh import FAMILIES, LSHConfig

__all__ = ["AttentionInputs", "attention_inputs", "lsh_families", "lsh_configs", "FLOAT_DTYPES"]

FLOAT_DTYPES = (np.float32, np.float64)


@dataclass(frozen=True, eq=False)
class AttentionInputs:
    """Queries (N_q, m), keys (N_k, m), values (N_k, d_v), C-contiguous, one float dtype."""

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray

    def __repr__(self) -> str:  # hypothesis prints this on failure
        return (f"AttentionInputs(q={self.q.shape} {self.q.dtype}, k={self.k.shape}, v={self.v.shape}, "
                f"q={self.q.tolist()!r}, k={self.k.tolist()!r}, v={self.v.tolist()!r})")


@st.composite
def attention_inputs(draw, *, max_queries: int = 24, max_keys: int = 24, max_dim: int = 9, max_value_dim: int = 4,
                     square: bool = False, min_rows: int = 0, unit_norm: bool = False) -> AttentionInputs:
    """Random (q, k, v); ``square`` gives N_q == N_k (causal), ``unit_norm`` unit rows (angular LSH)."""
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    n_keys = draw(st.integers(min_rows, max_keys))
    n_queries = n_keys if square else draw(st.integers(min_rows, max_queries))
    dim = draw(st.integers(1, max_dim))
    value_dim = draw(st.integers(1, max_value_dim))
    scale = draw(st.sampled_from([1e-3, 0.3, 1.0, 4.0, 100.0]))
    integer_valued = draw(st.booleans())
    duplicate_keys = draw(st.booleans())
    queries_from_keys = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def rows(n: int) -> np.ndarray:
        if integer_valued:
            return rng.integers(-2, 3, size=(n, dim)).astype(np.float64) * scale
        return rng.standard_normal((n, dim)) * scale

    k = rows(n_keys)
    q = rows(n_queries)
    if duplicate_keys and n_keys > 1:
        k[rng.integers(0, n_keys, size=n_keys // 2)] = k[rng.integers(0, n_keys, size=n_keys // 2)]
    if queries_from_keys and n_keys and n_queries:
        picked = rng.integers(0, n_queries, size=max(1, n_queries // 2))
        q[picked] = k[rng.integers(0, n_keys, size=picked.size)]
    if unit_norm:
        for x in (q, k):
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            x /= np.where(norms > 0, norms, 1.0)
            x[norms[:, 0] == 0, 0] = 1.0
    v = rng.standard_normal((n_keys, value_dim)) * draw(st.sampled_from([1.0, 1e3]))
    return AttentionInputs(np.ascontiguousarray(q, dtype=dtype), np.ascontiguousarray(k, dtype=dtype),
                           np.ascontiguousarray(v, dtype=dtype))


def lsh_families(*, angular_only: bool = False) -> st.SearchStrategy:
    """The ``examples()`` of every family registered in :data:`anna.lsh.FAMILIES` (when called).

    Examples
    --------
    >>> lsh_families(angular_only=True)
    sampled_from([Hyperplane(), CrossPolytope(rotations=3), CrossPolytope(rotations=1)])
    """
    return st.sampled_from([family for cls in FAMILIES.values() if cls.angular or not angular_only
                            for family in cls.examples()])


@st.composite
def lsh_configs(draw, *, max_z: int = 4, max_ell: int = 6, angular_only: bool = False) -> LSHConfig:
    """An LSHConfig with small z and ell."""
    family = draw(lsh_families(angular_only=angular_only))
    return LSHConfig(family, draw(st.integers(1, max_z)), draw(st.integers(1, max_ell)))
