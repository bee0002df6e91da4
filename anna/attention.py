"""ANNA attention: Algorithm 1 (LSH buckets) with the memory of Algorithm 2, and its weights.

:func:`anna_attention` is the fast path (numba kernels of :mod:`anna.kernels`);
:func:`collision_counts` / :func:`anna_weights` are the plain-numpy definition it is tested
against: ``c_ij`` = number of tables where query ``i`` and key ``j`` share a code, and
``w_ij = c_ij / sum_j c_ij``, so that ``out = W @ v`` (docs/theory.md §3). Both share the hashing of
:mod:`anna.lsh` (same seed, same codes).

How the fast path runs (per chunk of at most 64 tables):

1. hash keys and queries into table-major codes (``uint64``, one per table);
2. per table, number the distinct key codes (buckets), find every query's bucket, and keep sums
   only for buckets some query lands in and that hold two keys or more (keys elsewhere cannot
   reach any output; a query in a one-key bucket reads that key's value directly);
3. split the tables into *runs* whose kept buckets total at most ``max(N_k, 2**16)`` (divided by
   ``S`` when causal, with ``S <= 8`` position segments), so bucket sums never take more memory
   than one table's could (or a constant); a run: add every key's value into its bucket in each
   table (float64), then
   give every query the sum of its buckets' sums and counts. Queries keep running sums across
   runs (Algorithm 2), and the last run divides.

Memory: the inputs and output, codes and bucket ids for one chunk (16 bytes per row and table,
at most 64 tables), bucket sums of at most ``max(N_k, 2**16)`` rows (``S`` copies of a ``1/S``
share when causal) and, when there is more than one run, a float64 running sum per query:
``O((N_q + N_k)(m + min(ell, 64)))``, Algorithm 2's ``O((N_q + N_k) m)`` when ``ell <= m``.

Numerics: bucket sums and counts are float64 / int64; for float32 values the query side reads
the bucket sums rounded once to float32 and adds its (at most ``ell`` per run) terms in float32,
so float32 outputs are within about ``(ell + 1) * 2**-24`` of ``W @ v`` relative to ``max |v|``.
Results do not depend on the number of threads.

Empty neighbourhood (docs/theory.md §2, [open]): a query colliding with no key gets the zero row
and count 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from . import kernels
from ._validate import check_bool, check_finite_output, check_float_matrix, check_same_rows, normalize_seed
from .errors import DeviceError, ParameterError, ShapeError
from .lsh import LSHConfig

__all__ = [
    "AnnaStats",
    "anna_attention",
    "anna_weights",
    "collision_counts",
    "MAX_DENSE_ENTRIES",
]

MAX_DENSE_ENTRIES = 2**24
"""Largest ``N_q * N_k`` that :func:`anna_weights` / :func:`collision_counts` will materialise."""

_TABLE_CHUNK = 64
_MIN_BUDGET = 2**16  # bucket-sum rows always allowed (small inputs: one run, constant memory)
_CAUSAL_SEGMENT = 4096
_MAX_SEGMENTS = 8
_MAX_ROWS = 2**31 - 1  # bucket ids and first members are int32


# ------------------------------------------------------------------------------- checking
def _check_finite(name: str, x: np.ndarray) -> None:
    # A finite sum proves every entry finite (inf and NaN propagate); only an overflowing or
    # non-finite sum pays for the element-wise check, which raises with the first bad index.
    if not x.size:
        return
    with kernels.threads_for(x.size):
        total = kernels.finite_sum(x.reshape(-1))
    if not np.isfinite(total):
        check_float_matrix(name, x)


def _check_matrix(name: str, x: object) -> np.ndarray:
    x = check_float_matrix(name, x, finite=False)
    if x.shape[0] > _MAX_ROWS:
        raise ShapeError(f"{name} has {x.shape[0]} rows; at most {_MAX_ROWS} are supported")
    _check_finite(name, x)
    return x


def _check_qk(q: object, k: object, lsh: object, causal: object) -> tuple[np.ndarray, np.ndarray, bool]:
    q = _check_matrix("q", q)
    k = _check_matrix("k", k)
    if q.shape[1] != k.shape[1]:
        raise ShapeError(f"q and k must have the same number of columns, got q {q.shape} and k {k.shape}")
    if q.shape[1] == 0:
        raise ShapeError("q and k must have at least one column")
    if not isinstance(lsh, LSHConfig):
        raise ParameterError(f"lsh must be an LSHConfig, got {type(lsh).__name__}")
    causal = check_bool("causal", causal)
    if causal and q.shape[0] != k.shape[0]:
        raise ShapeError(f"causal attention needs as many queries as keys (N_q == N_k), "
                         f"got q {q.shape} and k {k.shape}")
    return q, k, causal


def _hash_pair(q: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hash queries and keys in one precision, so equal rows always get equal codes."""
    if q.dtype == k.dtype:
        return q, k
    return q.astype(np.float64), k.astype(np.float64)


def _codes(family, x: np.ndarray, params) -> np.ndarray:
    """Table-major codes (ell, N) of already-validated rows."""
    table_codes = getattr(family, "table_codes", None)  # FamilyBase's; other LSHFamily objects: hash
    if table_codes is not None:
        return table_codes(x, params)
    return np.ascontiguousarray(family.hash(x, params, table_major=True))


# ------------------------------------------------------------------------------- buckets
@dataclass(frozen=True, eq=False)
class _Buckets:
    """Key buckets of a chunk of tables and where each query lands (ids are per table)."""

    bucket_of: np.ndarray        # (T, N_k) int32
    n_buckets: np.ndarray        # (T,) int64
    bucket_of_query: np.ndarray  # (T, N_q) int32, -1 = no key shares the code


def _build_buckets(key_codes: np.ndarray, query_codes: np.ndarray) -> _Buckets:
    bucket_of = np.empty(key_codes.shape, dtype=np.int32)
    bucket_of_query = np.empty(query_codes.shape, dtype=np.int32)
    n_buckets = np.empty(key_codes.shape[0], dtype=np.int64)
    kernels.build_buckets(key_codes, query_codes, bucket_of, bucket_of_query, n_buckets)
    return _Buckets(bucket_of, n_buckets, bucket_of_query)


def _runs(n_buckets: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Split tables into consecutive runs whose bucket counts total at most ``budget``."""
    runs, start, total = [], 0, 0
    for u, nb in enumerate(n_buckets):
        if u > start and total + nb > budget:
            runs.append((start, u))
            start, total = u, 0
        total += int(nb)
    runs.append((start, len(n_buckets)))
    return runs


def _offsets(n_buckets: np.ndarray) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(n_buckets)[:-1])).astype(np.int64)


def _split(n: int, parts: int) -> np.ndarray:
    return (np.arange(parts + 1, dtype=np.int64) * n) // parts


# ---------------------------------------------------------------------------- Algorithm 1
def _algorithm1(q: np.ndarray, k: np.ndarray, v: np.ndarray, lsh: LSHConfig, seed: int, causal: bool,
                out: np.ndarray, counts: np.ndarray) -> None:
    family = lsh.family
    params = family.sample(q.shape[1], lsh.z, lsh.ell, seed)
    n_q, n_k, dim_v = q.shape[0], k.shape[0], v.shape[1]
    n_threads = numba.get_num_threads()
    segments = min(_MAX_SEGMENTS, -(-n_k // _CAUSAL_SEGMENT)) if causal else 1
    budget = max(1, max(n_k, _MIN_BUDGET) // segments)
    chunks = [(u0, min(lsh.ell, u0 + _TABLE_CHUNK)) for u0 in range(0, lsh.ell, _TABLE_CHUNK)]
    acc = np.empty((0, 0), dtype=np.float64)
    first = True
    for chunk_index, (u0, u1) in enumerate(chunks):
        chunk_params = params if len(chunks) == 1 else params.select(u0, u1)
        buckets = _build_buckets(_codes(family, k, chunk_params), _codes(family, q, chunk_params))
        n_hit = np.empty_like(buckets.n_buckets)
        kernels.compact_hit_buckets(buckets.bucket_of, buckets.bucket_of_query, buckets.n_buckets, n_hit)
        runs = _runs(n_hit, budget)
        for run_index, (a, b) in enumerate(runs):
            last = chunk_index == len(chunks) - 1 and run_index == len(runs) - 1
            if not (first and last) and acc.shape[0] != n_q:
                acc = np.empty((n_q, dim_v), dtype=np.float64)
            n_buckets = n_hit[a:b]
            start = _offsets(n_buckets)
            total = int(n_buckets.sum())
            if causal:
                bounds = _split(n_k, segments)
                seg_vsum = np.zeros((segments, total, dim_v), dtype=np.float64)
                seg_count = np.zeros((segments, total), dtype=np.int64)
                kernels.causal_segment_sums(v, buckets.bucket_of[a:b], start, bounds, seg_vsum, seg_count)
                _exclusive_prefix(seg_vsum)
                _exclusive_prefix(seg_count)
                kernels.causal_scan(v, buckets.bucket_of[a:b], buckets.bucket_of_query[a:b], start, bounds,
                                    seg_vsum, seg_count, acc, counts, out, first, last)
            else:
                vsum = np.zeros((total, dim_v), dtype=np.float64)
                bcount = np.zeros(total, dtype=np.int64)
                lanes = _split(b - a, min(n_threads, b - a))
                kernels.bucket_sums(v, buckets.bucket_of[a:b], start, lanes, vsum, bcount)
                # float32 values: gather from the bucket sums rounded once to float32 (half the
                # cache footprint; the error is one rounding of each bucket sum)
                gathered = vsum.astype(np.float32) if v.dtype == np.float32 else vsum
                kernels.gather_sums(v, buckets.bucket_of_query[a:b], start, gathered, bcount, acc, counts, out,
                                    first, last, n_threads)
            first = False


def _exclusive_prefix(per_segment: np.ndarray) -> None:
    """In place over axis 0: segment s gets the sum of segments 0..s-1 (in order)."""
    running = np.zeros_like(per_segment[0])
    for s in range(per_segment.shape[0]):
        here = per_segment[s].copy()
        per_segment[s] = running
        running += here


# ----------------------------------------------------------------------------------- stats
@dataclass(frozen=True, eq=False)
class AnnaStats:
    """Diagnostics of one :func:`anna_attention` call.

    Attributes
    ----------
    candidates : ndarray (N_q,) int64
        Distinct keys sharing a bucket with the query in at least one table (keys ``j <= i``
        only when causal): the support of row i of the weights.
    buckets_per_table : ndarray (ell,) int64
        Distinct key codes per table.
    max_bucket_load : ndarray (ell,) int64
        Largest bucket (keys) per table.
    mean_bucket_load : ndarray (ell,) float64
        Average, over keys, of the size of the key's bucket (``sum |B|**2 / N_k``).
    empty_queries : int
        Queries colliding with no (visible) key: zero output row, count 0.
    """

    candidates: np.ndarray
    buckets_per_table: np.ndarray
    max_bucket_load: np.ndarray
    mean_bucket_load: np.ndarray
    empty_queries: int

    def __post_init__(self) -> None:
        ell = self.buckets_per_table.shape
        if self.max_bucket_load.shape != ell or self.mean_bucket_load.shape != ell:
            raise ParameterError("per-table statistics must have one entry per table")
        if self.candidates.ndim != 1 or not (0 <= self.empty_queries <= self.candidates.shape[0]):
            raise ParameterError(f"inconsistent stats: {self.candidates.shape[0]} queries, "
                             f"{self.empty_queries} empty")

    @property
    def mean_candidates(self) -> float:
        return float(self.candidates.mean()) if self.candidates.size else 0.0

    @property
    def max_candidates(self) -> int:
        return int(self.candidates.max()) if self.candidates.size else 0

    def __rich__(self):
        from rich.table import Table

        table = Table(title="ANNA statistics")
        table.add_column("quantity")
        table.add_column("value", justify="right")
        table.add_row("queries", str(self.candidates.shape[0]))
        table.add_row("empty queries", str(self.empty_queries))
        table.add_row("candidates per query (mean / max)", f"{self.mean_candidates:.2f} / {self.max_candidates}")
        table.add_row("tables", str(self.buckets_per_table.shape[0]))
        if self.buckets_per_table.size:
            table.add_row("buckets per table (mean)", f"{self.buckets_per_table.mean():.1f}")
            table.add_row("max bucket load", str(int(self.max_bucket_load.max())))
            table.add_row("mean bucket load seen by a key", f"{self.mean_bucket_load.mean():.2f}")
        return table


def _stats(q: np.ndarray, k: np.ndarray, lsh: LSHConfig, seed: int, causal: bool, counts: np.ndarray) -> AnnaStats:
    n_q, n_k, ell = q.shape[0], k.shape[0], lsh.ell
    empty = int(np.count_nonzero(counts == 0))
    if n_q == 0 or n_k == 0:
        zeros = np.zeros(ell, dtype=np.int64)
        return AnnaStats(np.zeros(n_q, dtype=np.int64), zeros, zeros.copy(), np.zeros(ell), empty)
    params = lsh.family.sample(q.shape[1], lsh.z, ell, seed)
    buckets = _build_buckets(_codes(lsh.family, k, params), _codes(lsh.family, q, params))
    candidates = np.empty(n_q, dtype=np.int64)
    kernels.candidate_counts(buckets.bucket_of, buckets.bucket_of_query, buckets.n_buckets, causal, candidates,
                             numba.get_num_threads())
    max_load = np.empty(ell, dtype=np.int64)
    mean_load = np.empty(ell, dtype=np.float64)
    for u in range(ell):
        loads = np.bincount(buckets.bucket_of[u], minlength=int(buckets.n_buckets[u]))
        max_load[u] = loads.max()
        mean_load[u] = float(np.dot(loads, loads)) / n_k
    return AnnaStats(candidates, buckets.n_buckets.copy(), max_load, mean_load, empty)


# ------------------------------------------------------------------------------ public API
def anna_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, lsh: LSHConfig, seed: int | None = 0,
                   causal: bool = False, return_stats: bool = False, device: object = None):
    """ANNA attention by Algorithm 1: ``out_i = sum of bucket sums / sum of bucket counts``.

    Parameters
    ----------
    q : ndarray (N_q, m)
    k : ndarray (N_k, m)
    v : ndarray (N_k, d_v)
        float32 or float64, C-contiguous, finite. Queries and keys are hashed in their common
        dtype (float64 if they differ).
    lsh : LSHConfig
        Family, functions per table ``z`` and tables ``ell``.
    seed : int
        Seeds the hash functions: same seed, same output.
    causal : bool
        Query i sees keys ``j <= i`` only (needs ``N_q == N_k``); linear time.
    return_stats : bool
        Also return :class:`AnnaStats` (costs a second hashing pass and a scan of the candidates).
    device : None, "cpu", "cuda" or a torch.device
        ``None`` / ``"cpu"``: these numba kernels. Anything else runs
        :func:`anna.gpu.anna_attention_gpu` there (needs torch and triton; numpy or torch
        inputs, the same kind returned, tensors on their device); ``return_stats`` is then
        refused. Without CUDA, ``device="cuda"`` raises :class:`~anna.errors.DeviceError`.

    Returns
    -------
    out : ndarray (N_q, d_v), dtype of ``v``
    counts : ndarray (N_q,) int64
        ``sum_j c_ij``, the collisions of query i over all tables; 0 means the zero row.
    stats : AnnaStats, only with ``return_stats``

    Examples
    --------
    >>> import numpy as np
    >>> from anna.lsh import E2LSH, LSHConfig
    >>> k = np.array([[0.0, 0.0], [10.0, 10.0]])
    >>> v = np.array([[1.0], [2.0]])
    >>> out, counts = anna_attention(k.copy(), k, v, LSHConfig(E2LSH(), z=2, ell=4), seed=0)
    >>> out[:, 0], counts
    (array([1., 2.]), array([4, 4]))
    >>> out, counts = anna_attention(k.copy(), k, v, LSHConfig(E2LSH(), z=2, ell=4), device="cuda")  # doctest: +SKIP
    """
    if device is not None and not (isinstance(device, str) and device == "cpu"):
        return _on_device(q, k, v, lsh, seed, causal, return_stats, device)
    q, k, causal = _check_qk(q, k, lsh, causal)
    v = _check_matrix("v", v)
    check_same_rows("k", k, "v", v)
    seed = normalize_seed(seed)
    return_stats = check_bool("return_stats", return_stats)
    out = np.zeros((q.shape[0], v.shape[1]), dtype=v.dtype)
    counts = np.zeros(q.shape[0], dtype=np.int64)
    hq, hk = _hash_pair(q, k)
    with kernels.threads_for((q.shape[0] + k.shape[0]) * lsh.ell * (v.shape[1] + 8)):
        if q.shape[0] and k.shape[0]:
            _algorithm1(hq, hk, v, lsh, seed, causal, out, counts)
        check_finite_output("anna_attention", out)
        if return_stats:
            return out, counts, _stats(hq, hk, lsh, seed, causal, counts)
    return out, counts


def _on_device(q, k, v, lsh, seed, causal, return_stats, device):
    if return_stats:
        raise ParameterError(f"return_stats is computed by the CPU kernels only; got device={device!r}")
    try:
        from .gpu import anna_attention_gpu
    except ImportError as error:  # torch missing: anna.gpu raises DeviceError itself, this is a fallback
        raise DeviceError(f"device={device!r} needs anna.gpu (torch and triton): {error}") from error
    return anna_attention_gpu(q, k, v, lsh, seed, causal, device=device)


def collision_counts(q: np.ndarray, k: np.ndarray, lsh: LSHConfig, seed: int | None = 0,
                     causal: bool = False) -> np.ndarray:
    """Dense ``c_ij`` (N_q, N_k) int64: the tables in which query i and key j share a code.

    Plain numpy over the codes of :mod:`anna.lsh`; refuses ``N_q * N_k > MAX_DENSE_ENTRIES``.
    With ``causal``, entries ``j > i`` are 0.

    Examples
    --------
    >>> import numpy as np
    >>> from anna.lsh import Hyperplane, LSHConfig
    >>> x = np.array([[1.0, 0.0], [-1.0, 0.0]])
    >>> collision_counts(x, x, LSHConfig(Hyperplane(), z=1, ell=3))
    array([[3, 0],
           [0, 3]])
    """
    q, k, causal = _check_qk(q, k, lsh, causal)
    seed = normalize_seed(seed)
    if q.shape[0] * k.shape[0] > MAX_DENSE_ENTRIES:
        raise ShapeError(f"dense weights of {q.shape[0]} x {k.shape[0]} exceed MAX_DENSE_ENTRIES "
                         f"= {MAX_DENSE_ENTRIES}; use anna_attention")
    hq, hk = _hash_pair(q, k)
    params = lsh.family.sample(q.shape[1], lsh.z, lsh.ell, seed)
    query_codes, key_codes = lsh.family.hash(hq, params), lsh.family.hash(hk, params)
    c = np.zeros((q.shape[0], k.shape[0]), dtype=np.int64)
    for u in range(lsh.ell):
        c += query_codes[:, u, None] == key_codes[None, :, u]
    return np.tril(c) if causal else c


def anna_weights(q: np.ndarray, k: np.ndarray, lsh: LSHConfig, seed: int | None = 0,
                 causal: bool = False) -> np.ndarray:
    """Explicit ANNA weights (N_q, N_k) float64: ``w_ij = c_ij / sum_j c_ij`` (0 rows if empty).

    ``anna_attention(q, k, v, lsh, seed)[0]`` equals ``anna_weights(q, k, lsh, seed) @ v`` up to
    rounding. Refuses ``N_q * N_k > MAX_DENSE_ENTRIES`` with ShapeError.

    Examples
    --------
    >>> import numpy as np
    >>> from anna.lsh import Hyperplane, LSHConfig
    >>> x = np.array([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])   # a hyperplane never splits equal rows
    >>> anna_weights(x[:1], x, LSHConfig(Hyperplane(), z=1, ell=2), seed=3)
    array([[0.5, 0.5, 0. ]])
    """
    c = collision_counts(q, k, lsh, seed, causal)
    rows = c.sum(axis=1, keepdims=True)
    return np.divide(c, rows, out=np.zeros(c.shape, dtype=np.float64), where=rows > 0)
