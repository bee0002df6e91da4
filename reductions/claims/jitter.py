"""Near (not equal) ANNA keys for the direct constructions: the ell-table recall half of Theorem 3.4.

The direct constructions' queries and keys are small integer vectors, so with Algorithm 1 at
distance 0 every equal pair collides in every table and the recall half of Theorem 3.4 (a near
pair is found in at least one of ``ell`` tables, each of ``z`` functions) never comes into play.
:func:`jittered` moves them apart within ``r``:

* ``keys="position"`` moves each query and each key by its own seeded random vector of norm at
  most ``r / 2`` (Theorem 5.2: Match2 only asks whether some key matched);
* ``keys="value"`` moves each query by its own vector but each key by a vector that depends on
  the key's value only, so equal keys stay equal to one another (and collide in the same tables)
  while every query is at distance up to ``r`` from them. Algorithm 1's weights
  ``w_ij = c_ij / sum_j c_ij`` are then uniform over a group of equal keys whenever the group
  collides with the query at all: the averages the k-hop construction takes (mean positions,
  ``1 / c_p``) stay exact, yet every match must be found through the tables. (Keys moved one by
  one get unequal collision counts, and those averages fail: 87 of 256 tokens at N = 256.)

:func:`lsh_failures` reads a jittered run back (:meth:`anna.transformer.Transformer.run`) and
counts, per head and query, in the causal window: *recall misses* (the query's group of near keys
shares no table with it) and *far hits* (some other key shares a table); :func:`failure_bounds`
gives Theorem 3.4's union bounds for both with the near pairs at distance ``<= r`` and the far ones
at ``>= 1 - r`` (distinct integer vectors are ``>= 1`` apart).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from anna.transformer import Transformer

__all__ = ["jittered", "JitterCounts", "lsh_failures", "failure_bounds", "KEY_SHIFTS"]

KEY_SHIFTS = ("position", "value")


def _shifts(rng: np.random.Generator, rows: int, cols: int, radius: float) -> np.ndarray:
    d = rng.standard_normal((rows, cols))
    norms = np.linalg.norm(d, axis=1, keepdims=True)
    return d * ((radius / 2) * rng.uniform(0.0, 1.0, (rows, 1)) / np.where(norms > 0, norms, 1.0))


def _moved(base, radius: float, seed: int, salt: int, by_value: bool):
    def moved(x, positions):
        out = np.asarray(base(x, positions), dtype=np.float64)
        rng = np.random.default_rng([seed, salt, out.shape[0], out.shape[1]])
        if by_value:            # one shift per distinct key vector: equal keys stay equal
            groups, inverse = np.unique(out, axis=0, return_inverse=True)
            shift = _shifts(rng, groups.shape[0], out.shape[1], radius)[inverse.reshape(-1)]
        else:
            shift = _shifts(rng, out.shape[0], out.shape[1], radius)
        return np.ascontiguousarray(out + shift)
    return moved


def jittered(model: Transformer, radius: float, seed: int, *, keys: str = "position") -> Transformer:
    """``model`` with every head's queries and keys moved by seeded random vectors of norm at most
    ``radius / 2`` (module docstring), so equal integer keys become near pairs at distance up to
    ``radius`` instead of 0 and Algorithm 1 must find them through its ``ell`` tables.

    Parameters
    ----------
    model : Transformer
    radius : float
        ``r``: query-key pairs that were equal end up at distance at most ``r``.
    seed : int
        Seeds the shifts.
    keys : {"position", "value"}
        Move each key by its own vector, or by one vector per distinct key value.

    Examples
    --------
    >>> import numpy as np
    >>> from reductions.constructions.khop import khop_transformer
    >>> x = np.array([0, 1, 2, 1, 0, 1, 2, 3, 1, 0] * 4)
    >>> model = khop_transformer(2, attention="anna", n=x.size, seed=0)
    >>> near = jittered(model, 0.01, seed=1, keys="value")
    >>> bool((near(x) == khop_transformer(2)(x)).all())
    True
    """
    if keys not in KEY_SHIFTS:
        raise ValueError(f"keys must be one of {KEY_SHIFTS}, got {keys!r}")
    if not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be a finite number > 0, got {radius!r}")
    layers = []
    for li, layer in enumerate(model.layers):
        heads = tuple(dataclasses.replace(h, query=_moved(h.query, radius, seed, 3 * li + 1, False),
                                          key=_moved(h.key, radius, seed, 3 * li + 2, keys == "value"))
                      for h in layer.heads)
        layers.append(dataclasses.replace(layer, heads=heads))
    return dataclasses.replace(model, layers=tuple(layers))


@dataclass(frozen=True)
class JitterCounts:
    """What :func:`lsh_failures` counted over every ``anna`` head of one run (causal windows).

    ``near_queries``: (head, query) pairs with at least one near key; ``misses``: those whose near
    keys share no table with the query; ``far_hits``: (head, query) pairs where a key that is not
    near shares a table; ``near_tables`` / ``tables``: tables in which the near group collided,
    out of those tried (the per-table recall, at least ``p1^z``)."""

    heads: int
    near_queries: int
    misses: int
    far_hits: int
    near_tables: int
    tables: int

    def __post_init__(self) -> None:
        if min(self.heads, self.near_queries, self.misses, self.far_hits, self.near_tables, self.tables) < 0:
            raise ValueError(f"counts must be >= 0, got {self}")
        if self.misses > self.near_queries or self.near_tables > self.tables:
            raise ValueError(f"inconsistent counts {self}")

    @property
    def failed(self) -> bool:
        """Some query of some head missed its near keys or hit a far one."""
        return self.misses > 0 or self.far_hits > 0


def _groups(q0: np.ndarray, k0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    both = np.unique(np.concatenate([q0, k0]), axis=0, return_inverse=True)[1].reshape(-1)
    return both[: q0.shape[0]], both[q0.shape[0]:]


def lsh_failures(near: Transformer, base: Transformer, inputs: np.ndarray) -> JitterCounts:
    """Recall misses and far hits of the ``anna`` heads of ``near = jittered(base, ..., keys="value")``
    on ``inputs``: "near" keys of a query are those whose unmoved key equals its unmoved query.

    Reads the residual streams of ``near.run(inputs)``, recomputes each head's moved queries and
    keys and their codes with the head's seed and LSH, and compares with the collision counts the
    run reported (``counts[l][h]``). Layers must be causal or not consistently with the run.
    """
    trace = near.run(inputs)
    heads = near_queries = misses = far_hits = near_tables = tables = 0
    for l, (layer, plain) in enumerate(zip(near.layers, base.layers)):
        x = trace.states[l]
        positions = np.arange(x.shape[0], dtype=np.int64)
        for h, (head, orig) in enumerate(zip(layer.heads, plain.heads)):
            if head.kind != "anna":
                continue
            heads += 1
            q, k = np.asarray(head.query(x, positions)), np.asarray(head.key(x, positions))
            gq, gk = _groups(np.asarray(orig.query(x, positions)), np.asarray(orig.key(x, positions)))
            n = gk.size
            first = np.full(max(gq.max(initial=-1), gk.max(initial=-1)) + 1, n, dtype=np.int64)
            np.minimum.at(first, gk, np.arange(n))
            rep = first[gq]                                  # first key of the query's group
            window = rep <= np.arange(n) if layer.causal else rep < n
            # group sizes within the window: keys of the query's group at positions <= i (or all)
            stride = n + 1
            keyed = np.sort(gk * stride + np.arange(n))
            upto = gq * stride + (np.arange(n) if layer.causal else n)
            sizes = np.searchsorted(keyed, upto, "right") - np.searchsorted(keyed, gq * stride, "left")
            params = head.lsh.family.sample(q.shape[1], head.lsh.z, head.lsh.ell, near.head_seed(l, h))
            qc = head.lsh.family.hash(np.ascontiguousarray(q, dtype=np.float64), params)
            kc = head.lsh.family.hash(np.ascontiguousarray(k, dtype=np.float64), params)
            rows = np.flatnonzero(window)
            shared = (qc[rows] == kc[rep[rows]]).sum(axis=1)      # tables the group collides in
            counts = np.asarray(trace.counts[l][h], dtype=np.int64)
            far = counts.copy()
            far[rows] -= shared * sizes[rows]
            near_queries += rows.size
            misses += int(np.count_nonzero(shared == 0))
            far_hits += int(np.count_nonzero(far > 0))
            near_tables += int(shared.sum())
            tables += rows.size * head.lsh.ell
    return JitterCounts(heads, near_queries, misses, far_hits, near_tables, tables)


def failure_bounds(n: int, lsh, radius: float, heads: int) -> tuple[float, float, float]:
    """Theorem 3.4's union bounds for :func:`lsh_failures` with ``n`` tokens and ``heads`` heads:
    ``(miss, run, p1z)``: a query's near group misses every table with probability at most
    ``miss = (1 - p1^z)^ell`` (``p1`` at distance ``r``); a run fails with probability at most
    ``run = min(1, heads (n miss + n^2 ell p_far^z))`` (``p_far`` at distance ``1 - r``, the
    closest two moved distinct integer vectors come); ``p1z = p1^z``.

    Examples
    --------
    >>> from reductions.constructions import integer_lsh
    >>> miss, run, p1z = failure_bounds(1024, integer_lsh(1024), 0.01, 5)
    >>> miss < 1e-12, 0.0 < run < 1.0, 0.8 < p1z < 0.9
    (True, True, True)
    """
    p1 = lsh.family.collision_probability(radius)
    p_far = lsh.family.collision_probability(1.0 - radius)
    p1z = p1 ** lsh.z
    miss = (1.0 - p1z) ** lsh.ell
    run = min(1.0, heads * (n * miss + n * n * lsh.ell * p_far ** lsh.z))
    return miss, run, p1z
