"""Exact attention references: exact-match, softmax, low-rank (kernel) and collision attention.

Plain numpy, written to be obviously correct and to run in bounded memory; the fast kernels
(:mod:`anna.attention`) and the transformer's heads are tested against these.

Conventions (docs/theory.md §2)
--------------------------
- Queries ``q`` are ``(N_q, m)``, keys ``k`` are ``(N_k, m)``, values ``v`` are ``(N_k, d_v)``;
  float32 or float64, C-contiguous, finite. Outputs have ``v``'s dtype; sums run in float64.
- Exact-match attention (EMA): ``w_ij > 0`` iff ``q_i == k_j`` (vector equality, so ``-0.0 == 0.0``),
  uniform over the matches. A query without a match gets the zero row and collision count 0, so a
  caller can tell "no neighbour" from a real zero output.
- Softmax: ``w_ij ∝ exp(β ⟨q_i, k_j⟩)`` with no ``1/√m``; ``β`` is the argument ``temperature``
  (the paper's name: a small β flattens the weights).
- Collision attention: ``w_ij ∝ (1 − θ_ij/π)^z`` with ``θ_ij`` the angle between ``q_i`` and ``k_j``,
  the probability that ``z`` random hyperplanes put both on the same side: what Algorithm 1 with
  hyperplane tables computes in expectation (:func:`collision_attention`).
- Causal variants (``causal=True``) let query ``i`` see keys ``j <= i`` only and need ``N_q == N_k``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ._validate import (check_bool, check_finite_output, check_float, check_float_matrix, check_int,
                        check_same_rows)
from .errors import NonFiniteError, ParameterError, ShapeError

__all__ = [
    "ema_attention",
    "softmax_attention",
    "lowrank_attention",
    "collision_attention",
    "collision_weights",
    "COSINE_CLAMP",
    "normalize_rows",
    "elu_feature_map",
]

FeatureMap = Callable[[np.ndarray], np.ndarray]

# A row whose norm is below this is left as (almost) zero by normalize_rows, as torch's
# F.normalize(eps=1e-12) does; the paper's surrogate was trained with that convention.
_NORM_FLOOR = 1e-12


def _check_qkv(q: object, k: object, v: object, causal: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q = check_float_matrix("q", q)
    k = check_float_matrix("k", k)
    v = check_float_matrix("v", v)
    if q.shape[1] != k.shape[1]:
        raise ShapeError(f"q and k must have the same number of columns, got q {q.shape} and k {k.shape}")
    check_same_rows("k", k, "v", v)
    if check_bool("causal", causal):
        check_same_rows("q", q, "k", k)
    return q, k, v


def _check_chunk(chunk: object) -> int:
    if isinstance(chunk, (bool, np.bool_)) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ParameterError(f"chunk must be a positive integer, got {chunk!r}")
    return int(chunk)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Scale every row of ``x`` to unit Euclidean norm (the paper's surrogate queries and keys).

    Rows of norm below ``1e-12`` are divided by ``1e-12`` instead (so a zero row stays zero), as
    ``torch.nn.functional.normalize`` does. The result has ``x``'s dtype.

    Examples
    --------
    >>> import numpy as np
    >>> normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    array([[0.6, 0.8],
           [0. , 0. ]])
    """
    x = check_float_matrix("x", x)
    norms = np.sqrt(np.einsum("ij,ij->i", x.astype(np.float64), x.astype(np.float64)))
    return (x / np.maximum(norms, _NORM_FLOOR)[:, None]).astype(x.dtype, copy=False)


def _exact_groups(q: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label rows of ``q`` and ``k`` so that equal labels mean equal vectors (across both)."""
    # float32 -> float64 is exact; adding 0.0 turns -0.0 into +0.0 so that == and labels agree.
    rows = np.concatenate([q.astype(np.float64), k.astype(np.float64)]) + 0.0
    if rows.shape[1] == 0:  # every empty vector equals every other
        labels = np.zeros(rows.shape[0], dtype=np.int64)
    else:
        _, labels = np.unique(rows, axis=0, return_inverse=True)
        labels = labels.reshape(-1).astype(np.int64)
    return labels[: q.shape[0]], labels[q.shape[0]:]


def _segmented_cumsum(x: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Inclusive prefix sums of the rows of ``x`` restarting wherever ``segment`` changes.

    Hillis–Steele doubling: after the step with shift ``s`` row ``t`` holds the sum of rows
    ``max(start, t - 2s + 1) .. t`` of its segment; segments are contiguous, so ``segment[t] ==
    segment[t - s]`` means row ``t - s`` belongs to the same segment. No value ever crosses a
    segment boundary, so there is no cancellation between groups (unlike global cumsum minus offset).
    """
    out = x.copy()
    shift = 1
    while shift < out.shape[0]:
        same = segment[shift:] == segment[:-shift]
        out[shift:] = out[shift:] + np.where(same[:, None], out[:-shift], 0.0)
        shift *= 2
    return out


def ema_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray,
                  causal: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact-match attention: average of the values whose key equals the query.

    Keys are grouped by their exact row (``np.unique`` over queries and keys together), so the
    cost is ``O((N_q + N_k) m log(N_q + N_k) + (N_q + N_k) d_v)``, never ``N_q · N_k``. The causal
    variant sorts keys by (group, position), takes segmented prefix sums, and finds for query ``i``
    the last key of its group at a position ``<= i`` by binary search.

    Parameters
    ----------
    q : ndarray, shape (N_q, m)
    k : ndarray, shape (N_k, m)
    v : ndarray, shape (N_k, d_v)
    causal : bool
        Query ``i`` sees keys ``j <= i`` only (requires ``N_q == N_k``).

    Returns
    -------
    out : ndarray, shape (N_q, d_v), dtype of ``v``
        ``out_i`` is the mean of ``v_j`` over the matching keys; the zero row if there is none.
    counts : ndarray of int64, shape (N_q,)
        Number of matching keys of every query (0: no neighbour).

    Examples
    --------
    >>> import numpy as np
    >>> q = np.array([[1.0], [2.0], [5.0]])
    >>> k = np.array([[1.0], [2.0], [1.0]])
    >>> v = np.array([[10.0], [20.0], [30.0]])
    >>> out, counts = ema_attention(q, k, v)
    >>> out.ravel().tolist(), counts.tolist()
    ([20.0, 20.0, 0.0], [2, 1, 0])
    >>> ema_attention(q, k, v, causal=True)[0].ravel().tolist()
    [10.0, 20.0, 0.0]
    """
    q, k, v = _check_qkv(q, k, v, causal)
    n_q, n_k = q.shape[0], k.shape[0]
    out = np.zeros((n_q, v.shape[1]), dtype=np.float64)
    counts = np.zeros(n_q, dtype=np.int64)
    if n_q == 0 or n_k == 0:
        return out.astype(v.dtype), counts
    query_group, key_group = _exact_groups(q, k)
    values = v.astype(np.float64)
    if not causal:
        n_groups = int(max(query_group.max(), key_group.max())) + 1
        group_count = np.bincount(key_group, minlength=n_groups)
        group_sum = np.zeros((n_groups, v.shape[1]), dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):     # an overflow is reported below, by name
            np.add.at(group_sum, key_group, values)
        counts = group_count[query_group].astype(np.int64)
        hit = counts > 0
        out[hit] = group_sum[query_group[hit]] / counts[hit, None]
        return check_finite_output("ema_attention", out.astype(v.dtype)), counts
    # Causal: keys sorted by (group, position); the stable sort keeps positions ascending per group.
    order = np.argsort(key_group, kind="stable")
    sorted_group = key_group[order]
    composite = sorted_group * n_k + order  # strictly increasing, one entry per key
    prefix_sum = _segmented_cumsum(values[order], sorted_group)
    group_start = np.searchsorted(sorted_group, sorted_group, side="left")
    last = np.searchsorted(composite, query_group * n_k + np.arange(n_q), side="right") - 1
    clipped = np.maximum(last, 0)
    hit = (last >= 0) & (sorted_group[clipped] == query_group)
    counts[hit] = clipped[hit] - group_start[clipped[hit]] + 1
    out[hit] = prefix_sum[clipped[hit]] / counts[hit, None]
    return check_finite_output("ema_attention", out.astype(v.dtype)), counts


def softmax_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, temperature: float = 1.0,
                      normalize: bool = False, causal: bool = False, chunk: int = 1024) -> np.ndarray:
    """Softmax attention ``softmax(β q kᵀ) v``, chunked over queries.

    Scores are computed ``chunk`` queries at a time with the row maximum subtracted before
    ``exp`` (numerically stable), so memory is ``O(chunk · N_k)`` besides inputs and output.

    Parameters
    ----------
    q, k, v : ndarray
        Shapes ``(N_q, m)``, ``(N_k, m)``, ``(N_k, d_v)``; ``N_k >= 1``.
    temperature : float
        The multiplier ``β`` of the scores (finite, ``>= 0``; 0 gives the plain mean).
    normalize : bool
        Scale queries and keys to unit norm first (:func:`normalize_rows`): the paper's surrogate.
    causal : bool
        Query ``i`` sees keys ``j <= i`` only (requires ``N_q == N_k``).
    chunk : int
        Queries per block; the result does not depend on it.

    Returns
    -------
    ndarray, shape (N_q, d_v), dtype of ``v``

    Examples
    --------
    >>> import numpy as np
    >>> q = np.array([[0.0], [1.0]]); k = np.array([[0.0], [1.0]]); v = np.array([[1.0], [3.0]])
    >>> softmax_attention(q, k, v, temperature=0.0).ravel().tolist()
    [2.0, 2.0]
    >>> softmax_attention(q, k, v, causal=True)[0].tolist()
    [1.0]
    """
    q, k, v = _check_qkv(q, k, v, causal)
    chunk = _check_chunk(chunk)
    beta = check_float("temperature", temperature, low=0.0)
    if k.shape[0] == 0:
        raise ShapeError("softmax attention needs at least one key, got k of shape "
                         f"{k.shape}")
    if normalize:
        q, k = normalize_rows(q), normalize_rows(k)
    q64, k64, v64 = q.astype(np.float64), k.astype(np.float64), v.astype(np.float64)
    out = np.empty((q.shape[0], v.shape[1]), dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):     # an overflow is reported below, by name
        _softmax_chunks(q64, k64, v64, beta, causal, chunk, out)
    return check_finite_output("softmax_attention", out.astype(v.dtype))


def _softmax_chunks(q64: np.ndarray, k64: np.ndarray, v64: np.ndarray, beta: float, causal: bool, chunk: int,
                    out: np.ndarray) -> None:
    """The chunked softmax of :func:`softmax_attention` into ``out`` (float64 inputs)."""
    for start in range(0, q64.shape[0], chunk):
        stop = min(start + chunk, q64.shape[0])
        # Causal: query i < stop never sees a key j >= stop, so only keys[:stop] are scored.
        n_keys = stop if causal else k64.shape[0]
        scores = beta * (q64[start:stop] @ k64[:n_keys].T)
        if causal:
            scores[np.arange(n_keys)[None, :] > np.arange(start, stop)[:, None]] = -np.inf
        scores -= scores.max(axis=1, keepdims=True)
        weights = np.exp(scores)
        weights /= weights.sum(axis=1, keepdims=True)
        out[start:stop] = weights @ v64[:n_keys]


def elu_feature_map(x: np.ndarray) -> np.ndarray:
    """The default positive feature map of :func:`lowrank_attention`: ``elu(x) + 1``.

    Equals ``x + 1`` for ``x > 0`` and ``exp(x)`` otherwise, so every feature is positive (the
    linear-transformer map of Katharopoulos et al. 2020); rank ``r = m``.

    Examples
    --------
    >>> import numpy as np
    >>> elu_feature_map(np.array([[-1.0, 0.0, 2.0]])).round(4).tolist()
    [[0.3679, 1.0, 3.0]]
    """
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))


def _features(name: str, phi: FeatureMap, x: np.ndarray) -> np.ndarray:
    features = phi(x)
    if isinstance(features, np.ndarray):
        features = np.ascontiguousarray(features)
    features = check_float_matrix(f"{name}(x)", features)
    if features.shape[0] != x.shape[0]:
        raise ShapeError(f"{name} must map {x.shape[0]} rows to {x.shape[0]} rows, got shape {features.shape}")
    return features.astype(np.float64)


def _check_normalizer(denominator: np.ndarray, scale: np.ndarray, first_query: int = 0) -> None:
    # ~0 means zero or lost to cancellation: below a few hundred ulps of Σ |φ_q||φ_k|.
    tiny = (np.abs(denominator) <= 256 * np.finfo(np.float64).eps * scale) | (denominator == 0)
    if tiny.any():
        i = int(np.flatnonzero(tiny)[0])
        raise NonFiniteError(f"low-rank normaliser phi_q(q_i)·Σ_j phi_k(k_j) is ~0 for {int(tiny.sum())} "
                         f"queries (first i = {first_query + i}: {float(denominator[i])!r}); "
                         "use a positive feature map")


def lowrank_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, phi_q: FeatureMap | None = None,
                      phi_k: FeatureMap | None = None, causal: bool = False,
                      chunk: int = 1024) -> np.ndarray:
    """Low-rank (kernel) attention ``φ_q(Q) (φ_k(K)ᵀ V)`` normalised by ``φ_q(Q) (φ_k(K)ᵀ 1)``.

    Non-causal: ``O(N r d_v)`` time and ``O(r d_v)`` extra memory. Causal: the running state
    ``Σ_{j < chunk start} φ_k(k_j) v_jᵀ`` is carried across chunks of ``chunk`` queries and the
    keys inside a chunk are added through a masked ``chunk × chunk`` block (prefix sums without
    materialising ``N`` states).

    Parameters
    ----------
    q, k, v : ndarray
        Shapes ``(N_q, m)``, ``(N_k, m)``, ``(N_k, d_v)``.
    phi_q, phi_k : callable, optional
        Feature maps from ``(N, m)`` to ``(N, r)`` float arrays (the same ``r`` for both);
        default :func:`elu_feature_map` for both.
    causal : bool
        Query ``i`` sees keys ``j <= i`` only (requires ``N_q == N_k``).
    chunk : int
        Block size of the causal scan; the result does not depend on it.

    Returns
    -------
    ndarray, shape (N_q, d_v), dtype of ``v``

    Raises
    ------
    ShapeError, ParameterError, NonFiniteError
        On bad inputs (ShapeError, ParameterError), feature maps returning bad shapes
        (ShapeError), or a normaliser that is ~0 (NonFiniteError) (exactly 0,
        or below ``256 ε`` times ``|φ_q(q_i)| · Σ_j |φ_k(k_j)|``: lost to cancellation).

    Examples
    --------
    >>> import numpy as np
    >>> ones = lambda x: np.ones((x.shape[0], 1))
    >>> q = np.zeros((2, 1)); k = np.zeros((2, 1)); v = np.array([[1.0], [3.0]])
    >>> lowrank_attention(q, k, v, ones, ones).ravel().tolist()
    [2.0, 2.0]
    >>> lowrank_attention(q, k, v, ones, ones, causal=True).ravel().tolist()
    [1.0, 2.0]
    """
    q, k, v = _check_qkv(q, k, v, causal)
    chunk = _check_chunk(chunk)
    phi_q = elu_feature_map if phi_q is None else phi_q
    phi_k = elu_feature_map if phi_k is None else phi_k
    if not callable(phi_q) or not callable(phi_k):
        raise ParameterError(f"phi_q and phi_k must be callables, got {phi_q!r} and {phi_k!r}")
    fq = _features("phi_q", phi_q, q)
    fk = _features("phi_k", phi_k, k)
    if fq.shape[1] != fk.shape[1]:
        raise ShapeError(f"phi_q and phi_k must have the same rank, got {fq.shape[1]} and {fk.shape[1]}")
    v64 = v.astype(np.float64)
    if not causal:
        numerator = fq @ (fk.T @ v64)
        denominator = fq @ fk.sum(axis=0)
        _check_normalizer(denominator, np.abs(fq) @ np.abs(fk).sum(axis=0))
        return check_finite_output("lowrank_attention", (numerator / denominator[:, None]).astype(v.dtype))
    n = q.shape[0]
    out = np.empty((n, v.shape[1]), dtype=np.float64)
    state = np.zeros((fk.shape[1], v.shape[1]))  # Σ_{j < start} φ_k(k_j) v_jᵀ
    state_norm = np.zeros(fk.shape[1])  # Σ_{j < start} φ_k(k_j)
    state_abs = np.zeros(fk.shape[1])  # Σ_{j < start} |φ_k(k_j)|
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        block_q, block_k = fq[start:stop], fk[start:stop]
        mask = np.tril(np.ones((stop - start, stop - start)))
        scores = (block_q @ block_k.T) * mask
        numerator = block_q @ state + scores @ v64[start:stop]
        denominator = block_q @ state_norm + scores.sum(axis=1)
        scale = np.abs(block_q) @ state_abs + ((np.abs(block_q) @ np.abs(block_k).T) * mask).sum(axis=1)
        _check_normalizer(denominator, scale, first_query=start)
        out[start:stop] = numerator / denominator[:, None]
        state += block_k.T @ v64[start:stop]
        state_norm += block_k.sum(axis=0)
        state_abs += np.abs(block_k).sum(axis=0)
    return check_finite_output("lowrank_attention", out.astype(v.dtype))


COSINE_CLAMP = 1e-6
"""Cosines enter ``arccos`` clamped to ``[−1 + COSINE_CLAMP, 1 − COSINE_CLAMP]`` (finite gradient in
training): a collision probability of 1 becomes ``1 − √(2·10⁻⁶)/π ≈ 1 − 4.5·10⁻⁴`` per hash function."""


def collision_weights(q: np.ndarray, k: np.ndarray, z: int = 1, causal: bool = False) -> np.ndarray:
    """Unnormalised collision weights ``p_ij = (1 − arccos(q̂_i · k̂_j)/π)^z`` (float64, ``(N_q, N_k)``).

    ``p_ij`` is the probability that query ``i`` and key ``j`` share a code in one table of ``z``
    random hyperplanes (:class:`anna.lsh.Hyperplane`); ``q̂, k̂`` are the rows scaled to unit norm
    (:func:`normalize_rows`: a zero row stays zero, cosine 0, ``p = 2^-z``), and the cosine is
    clamped by :data:`COSINE_CLAMP`. With ``causal``, entries ``j > i`` are 0.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])
    >>> collision_weights(x[:1], x, z=1).round(3).tolist()   # same, orthogonal, opposite
    [[1.0, 0.5, 0.0]]
    >>> collision_weights(x[:1], x, z=2).round(3).tolist()
    [[0.999, 0.25, 0.0]]
    """
    q = check_float_matrix("q", q)
    k = check_float_matrix("k", k)
    if q.shape[1] != k.shape[1]:
        raise ShapeError(f"q and k must have the same number of columns, got q {q.shape} and k {k.shape}")
    z = check_int("z", z, low=1)
    if check_bool("causal", causal):
        check_same_rows("q", q, "k", k)
    cosines = normalize_rows(q).astype(np.float64) @ normalize_rows(k).astype(np.float64).T
    np.clip(cosines, -1.0 + COSINE_CLAMP, 1.0 - COSINE_CLAMP, out=cosines)
    weights = (1.0 - np.arccos(cosines) / np.pi) ** z
    return np.tril(weights) if causal else weights


def collision_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, z: int = 1, causal: bool = False,
                        chunk: int = 1024) -> np.ndarray:
    """Collision attention ``Σ_j p_ij v_j / Σ_j p_ij`` with ``p_ij = (1 − θ_ij/π)^z``, chunked over queries.

    Algorithm 1 (:func:`anna.attention.anna_attention`) with ``ℓ`` hyperplane tables of ``z``
    functions each returns ``Σ_j c_ij v_j / Σ_j c_ij``, where ``c_ij ~ Binomial(ℓ, p_ij)`` counts the
    tables in which query ``i`` and key ``j`` collide (:func:`collision_weights`); as ``ℓ`` grows the
    ratio converges to this one (tested by Monte Carlo). It is the differentiable surrogate the
    ``collision`` heads of :mod:`anna.transformer` and :class:`anna.train.TorchSurrogate` train.
    Every ``p_ij > 0`` (the cosine clamp), so no row is empty, unlike a finite set of tables.

    Parameters
    ----------
    q, k, v : ndarray
        Shapes ``(N_q, m)``, ``(N_k, m)``, ``(N_k, d_v)``; ``N_k >= 1``. Only the directions of
        queries and keys matter.
    z : int
        Hash functions per table (the exponent), ``>= 1``.
    causal, chunk
        As in :func:`softmax_attention`; the result, of shape ``(N_q, d_v)`` and ``v``'s dtype,
        does not depend on ``chunk``.

    Examples
    --------
    >>> import numpy as np
    >>> q = np.array([[1.0, 0.0]]); k = np.array([[1.0, 0.0], [0.0, 1.0]]); v = np.array([[3.0], [0.0]])
    >>> collision_attention(q, k, v, z=1).round(3).tolist()          # weights 1 and 1/2
    [[2.0]]
    >>> collision_attention(q, k, v, z=3).round(2).tolist()          # weights 1 and 1/8
    [[2.67]]
    """
    q, k, v = _check_qkv(q, k, v, causal)
    chunk = _check_chunk(chunk)
    z = check_int("z", z, low=1)
    if k.shape[0] == 0:
        raise ShapeError(f"collision attention needs at least one key, got k of shape {k.shape}")
    v64 = v.astype(np.float64)
    out = np.empty((q.shape[0], v.shape[1]), dtype=np.float64)
    for start in range(0, q.shape[0], chunk):
        stop = min(start + chunk, q.shape[0])
        n_keys = stop if causal else k.shape[0]   # causal: query i < stop sees no key j >= stop
        weights = collision_weights(q[start:stop], k[:n_keys], z)
        if causal:
            weights[np.arange(n_keys)[None, :] > np.arange(start, stop)[:, None]] = 0.0
        out[start:stop] = (weights @ v64[:n_keys]) / weights.sum(axis=1, keepdims=True)
    return check_finite_output("collision_attention", out.astype(v.dtype))
