"""Plain torch Algorithm 1: hashing by matmul, bucket sums by sort, for any device torch runs on.

Two roles:

* the **baseline** the Triton kernels are timed against (:func:`torch_algorithm1`: hash with
  :func:`torch_codes`, then :func:`attention_from_codes`), and
* the **general path** of :func:`anna.gpu.anna_attention_gpu` for code spaces too large for the
  dense kernels (E2LSH, the cross-polytope with ``z >= 2``, many hyperplanes per table):
  Triton hashes (:func:`anna.gpu.triton_path.triton_codes`), this module buckets.

Codes are exactly :mod:`anna.lsh`'s: ``sum_t h_t m_t mod 2**64`` with the multipliers of
``family.sample(dim, z, ell, seed)``, held as ``int64`` bit patterns (the numpy ``uint64`` codes
viewed as ``int64``). Projections run in float32 (the numba kernels' precision for float32
rows), so a code can differ from numba's only where a projection is within rounding of a
hyperplane, a cell boundary or a cross-polytope tie (:func:`anna.gpu.check.fragile_codes`).

Bucketing (per chunk of tables, all tables of a chunk at once): sort each table's key codes,
number the distinct codes, sum values per bucket (``index_add_`` in float32), find each query's
bucket by binary search. Causal: keys sorted by (code, index), float64 prefix sums within the
sort order, and a second binary search for the last key ``j <= i`` of the query's bucket.
Duplicates across tables count once per table and a query with no colliding key gets the zero
row and count 0, exactly as :func:`anna.anna_attention`.

Examples
--------
>>> import numpy as np, torch
>>> from anna import Hyperplane, LSHConfig, anna_attention
>>> rng = np.random.default_rng(0)
>>> q, k, v = (rng.standard_normal((50, 8)).astype(np.float32) for _ in range(3))
>>> lsh = LSHConfig(Hyperplane(), z=3, ell=4)
>>> out, counts = torch_algorithm1(torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v), lsh, seed=1)
>>> ref_out, ref_counts = anna_attention(q, k, v, lsh, seed=1)
>>> bool((counts.numpy() == ref_counts).all()), bool(np.allclose(out.numpy(), ref_out, atol=1e-5))
(True, True)
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ParameterError
from ..lsh import CrossPolytope, E2LSH, Hyperplane, LSHConfig

__all__ = ["torch_codes", "attention_from_codes", "torch_algorithm1", "code_multipliers", "linear_projection",
           "rotation_stack", "CLAMP"]

CLAMP = 4.0e18
"""E2LSH cells are clamped to +-CLAMP before the int64 cast (as in :mod:`anna.kernels`)."""

_CHUNK_ELEMENTS = 2**25  # (tables x rows) handled at once by the bucketing (bounds its memory)


def code_multipliers(params) -> np.ndarray:
    """The odd multipliers (ell, z) of sampled parameters as int64 bit patterns."""
    return np.ascontiguousarray(params.multipliers).view(np.int64)


def linear_projection(family, params) -> tuple[np.ndarray, np.ndarray]:
    """Projection (dim, ell*z) float32 and offsets (ell*z,) float64 of a hyperplane / E2LSH sample.

    Column ``u*z + t`` is function t of table u, scaled as the numba kernels scale it
    (``directions / width`` and ``offsets / width`` for E2LSH; offsets 0 for hyperplanes).
    """
    ell, z, dim = params.directions.shape
    scale = family.width if isinstance(family, E2LSH) else 1.0
    proj = (params.directions.reshape(ell * z, dim).T / scale).astype(np.float32)
    if isinstance(family, E2LSH):
        offsets = params.offsets.reshape(-1) / family.width
    else:
        offsets = np.zeros(ell * z)
    return np.ascontiguousarray(proj), offsets.astype(np.float64)


def rotation_stack(family: CrossPolytope, params) -> np.ndarray:
    """Dense rotations of a cross-polytope sample as (ell*z, D, D) float32 (integer entries, exact)."""
    mats = family.rotation_matrices(params)
    return np.ascontiguousarray(mats.reshape(-1, mats.shape[2], mats.shape[3]).astype(np.float32))


def _check_family(family) -> None:
    if not isinstance(family, (Hyperplane, E2LSH, CrossPolytope)):
        raise ParameterError(f"anna.gpu hashes Hyperplane, E2LSH and CrossPolytope families, got {family!r}")


def torch_codes(x: torch.Tensor, lsh: LSHConfig, params, tables: tuple[int, int] | None = None) -> torch.Tensor:
    """Codes (T, N) int64 of rows ``x`` (any float dtype, computed in float32) for tables ``[u0, u1)``.

    Plain torch: one matmul per chunk, sign / floor / argmax, and the multiply-add combination.
    """
    family = lsh.family
    _check_family(family)
    u0, u1 = tables if tables is not None else (0, params.ell)
    z = params.z
    x32 = x.to(torch.float32)
    mult = torch.tensor(code_multipliers(params)[u0:u1], device=x.device)  # (T, z)
    if isinstance(family, CrossPolytope):
        mats = torch.tensor(rotation_stack(family, params)[u0 * z:u1 * z], device=x.device)  # (F, D, D)
        padded = mats.shape[1]
        xp = torch.nn.functional.pad(x32, (0, padded - x.shape[1]))
        values = torch.empty((x.shape[0], (u1 - u0) * z), dtype=torch.int64, device=x.device)
        for f in range(mats.shape[0]):
            y = xp @ mats[f].T
            index = torch.argmax(torch.abs(y), dim=1)  # first maximum on ties, as the numba kernel
            negative = torch.gather(y, 1, index[:, None])[:, 0] < 0
            values[:, f] = 2 * index + negative.to(torch.int64)
    else:
        proj_np, offsets_np = linear_projection(family, params)
        proj = torch.tensor(proj_np[:, u0 * z:u1 * z], device=x.device)
        y = x32 @ proj
        if isinstance(family, E2LSH):
            offsets = torch.tensor(offsets_np[u0 * z:u1 * z], device=x.device)
            cells = torch.clamp(y.to(torch.float64) + offsets, -CLAMP, CLAMP)
            values = torch.floor(cells).to(torch.int64)
        else:
            values = (y >= 0).to(torch.int64)
    values = values.reshape(x.shape[0], u1 - u0, z)
    return (values * mult[None]).sum(dim=2).T.contiguous()  # int64 arithmetic wraps: mod 2**64


def _chunk_tables(n_tables: int, n_rows: int) -> list[tuple[int, int]]:
    step = max(1, _CHUNK_ELEMENTS // max(1, n_rows))
    return [(u, min(n_tables, u + step)) for u in range(0, n_tables, step)]


def attention_from_codes(key_codes: torch.Tensor, query_codes: torch.Tensor, v: torch.Tensor, causal: bool,
                         acc: torch.Tensor | None = None,
                         counts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Bucket sums and counts of each query over the tables of the given codes.

    ``key_codes`` (T, N_k), ``query_codes`` (T, N_q) int64; ``v`` (N_k, d_v). Returns the running
    sums (N_q, d_v) -- float32, or float64 when causal (prefix sums are differenced) -- and int64
    counts (N_q,), added into ``acc`` / ``counts`` when given (Algorithm 2's running sums across
    table chunks). Divide with :func:`finish` to get the output.
    """
    n_tables, n_keys = key_codes.shape
    n_queries = query_codes.shape[1]
    device = v.device
    dtype = torch.float64 if causal else torch.float32
    if acc is None:
        acc = torch.zeros((n_queries, v.shape[1]), dtype=dtype, device=device)
    if counts is None:
        counts = torch.zeros(n_queries, dtype=torch.int64, device=device)
    if n_keys == 0 or n_queries == 0:
        return acc, counts
    v64 = v.to(dtype)
    for u0, u1 in _chunk_tables(n_tables, max(n_keys, n_queries)):
        _add_chunk(key_codes[u0:u1], query_codes[u0:u1], v64, causal, acc, counts)
    return acc, counts


def _add_chunk(key_codes, query_codes, v64, causal, acc, counts) -> None:
    n_tables, n_keys = key_codes.shape
    device = v64.device
    sorted_codes, order = torch.sort(key_codes, dim=1, stable=True)  # equal codes keep index order
    new = torch.ones_like(sorted_codes, dtype=torch.bool)
    new[:, 1:] = sorted_codes[:, 1:] != sorted_codes[:, :-1]
    local = torch.cumsum(new.to(torch.int64), dim=1) - 1  # bucket number within the table (sorted pos)
    per_table = local[:, -1] + 1
    base = torch.cumsum(per_table, 0) - per_table  # first global bucket of each table
    bucket = local + base[:, None]  # global bucket of each sorted key
    n_buckets = int(per_table.sum())
    size = torch.zeros(n_buckets, dtype=torch.int64, device=device)
    size.index_add_(0, bucket.reshape(-1), torch.ones(bucket.numel(), dtype=torch.int64, device=device))
    pos = torch.searchsorted(sorted_codes, query_codes).clamp_(max=n_keys - 1)
    hit = torch.gather(sorted_codes, 1, pos) == query_codes  # (T, N_q)
    qbucket = torch.gather(bucket, 1, pos)
    if not causal:
        sums = torch.zeros((n_buckets, v64.shape[1]), dtype=v64.dtype, device=device)
        sums.index_add_(0, bucket.reshape(-1), v64[order.reshape(-1)])
        for u in range(n_tables):  # tables in order, as the numba kernel adds them
            b = qbucket[u]
            acc += torch.where(hit[u, :, None], sums[b], 0.0)
            counts += torch.where(hit[u], size[b], 0)
        return
    # causal: query i reads the keys j <= i of its bucket, a prefix of the bucket's sorted keys
    first = torch.cumsum(size, 0) - size  # first sorted position (global) of each bucket
    offsets = torch.arange(n_tables, device=device, dtype=torch.int64)[:, None] * n_keys
    combined = local * (n_keys + 1) + order  # sorted ascending within each table
    queries = torch.arange(query_codes.shape[1], device=device, dtype=torch.int64)
    qlocal = qbucket - base[:, None]
    end = torch.searchsorted(combined, qlocal * (n_keys + 1) + queries[None], right=True)  # (T, N_q) sorted pos
    for u in range(n_tables):
        prefix = torch.zeros((n_keys + 1, v64.shape[1]), dtype=torch.float64, device=device)
        torch.cumsum(v64[order[u]], dim=0, out=prefix[1:])
        start = first[qbucket[u]] - offsets[u, 0]
        seen = torch.where(hit[u], end[u] - start, 0).clamp_(min=0)
        acc += torch.where((seen > 0)[:, None], prefix[end[u]] - prefix[start], 0.0)
        counts += seen


def finish(acc: torch.Tensor, counts: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``acc / counts`` in ``dtype`` (zero rows where the count is 0)."""
    safe = torch.where(counts > 0, counts, 1).to(acc.dtype)
    return torch.where((counts > 0)[:, None], acc / safe[:, None], 0.0).to(dtype)


def torch_algorithm1(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lsh: LSHConfig, seed: int = 0,
                     causal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """ANNA attention in plain torch (the baseline): returns ``(out, counts)`` on ``v``'s device.

    Hash parameters are ``lsh.family.sample(m, z, ell, seed)``, drawn on the CPU as everywhere
    in :mod:`anna`; the output has ``v``'s dtype, counts are int64.
    """
    params = lsh.family.sample(q.shape[1], lsh.z, lsh.ell, seed)
    acc = counts = None
    step = max(1, _CHUNK_ELEMENTS // max(1, q.shape[0], k.shape[0]))
    for u0 in range(0, lsh.ell, step):
        u1 = min(lsh.ell, u0 + step)
        acc, counts = attention_from_codes(torch_codes(k, lsh, params, (u0, u1)),
                                           torch_codes(q, lsh, params, (u0, u1)), v, causal, acc, counts)
    if acc is None:
        acc = torch.zeros((q.shape[0], v.shape[1]), dtype=torch.float64, device=v.device)
        counts = torch.zeros(q.shape[0], dtype=torch.int64, device=v.device)
    return finish(acc, counts, v.dtype), counts
