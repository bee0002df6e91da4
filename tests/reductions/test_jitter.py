"""Near keys for the direct constructions (reductions.claims.jitter): shifts within r, equal keys
kept together, and the recall / far-hit counts against a dense reference."""
from __future__ import annotations

import numpy as np
import pytest

from anna.attention import collision_counts
from anna.lsh import E2LSH, LSHConfig
from anna.tasks import generate_khop
from reductions.claims.jitter import failure_bounds, jittered, lsh_failures
from reductions.constructions import INT_NEAR, integer_lsh
from reductions.constructions.khop import khop_transformer


def _khop_input(n, k, seed):
    inputs, targets = generate_khop(n, 4, k, seed=seed)
    return inputs[1:], targets


def test_value_shifts_keep_equal_keys_equal_and_every_query_within_r():
    x, _ = _khop_input(128, 2, 0)
    base = khop_transformer(2, attention="anna", n=128, seed=0)
    near = jittered(base, 0.05, seed=3, keys="value")
    state = near.run(x).states[0]
    positions = np.arange(x.size)
    head, plain = near.layers[0].heads[0], base.layers[0].heads[0]
    q, k = head.query(state, positions), head.key(state, positions)
    q0, k0 = plain.query(state, positions), plain.key(state, positions)
    assert np.linalg.norm(q - q0, axis=1).max() <= 0.025 and np.linalg.norm(k - k0, axis=1).max() <= 0.025
    assert (q != q0).all(axis=1).all()                       # no query is left on its integer point
    for value in np.unique(k0[:, 0]):                        # equal keys share one shift
        assert len(np.unique(k[k0[:, 0] == value], axis=0)) == 1


def test_position_shifts_break_the_khop_averages_and_value_shifts_do_not():
    x, targets = _khop_input(256, 1, 1)
    base = khop_transformer(1, attention="anna", n=256, seed=0)
    assert (jittered(base, INT_NEAR, 2, keys="value")(x) == targets).all()
    assert (jittered(base, INT_NEAR, 2, keys="position")(x) != targets).sum() > 10


def _dense_reference(near, base, x):
    """Misses and far hits from dense collision counts and the unmoved keys."""
    trace = near.run(x)
    misses = far_hits = near_queries = 0
    positions = np.arange(x.size)
    for l, (layer, plain) in enumerate(zip(near.layers, base.layers)):
        state = trace.states[l]
        for h, (head, orig) in enumerate(zip(layer.heads, plain.heads)):
            c = collision_counts(head.query(state, positions), head.key(state, positions), head.lsh,
                                 near.head_seed(l, h), causal=layer.causal)
            equal = (orig.query(state, positions)[:, None, :] == orig.key(state, positions)[None, :, :]).all(axis=2)
            if layer.causal:
                equal &= np.tri(x.size, dtype=bool)
            has = equal.any(axis=1)
            near_queries += int(has.sum())
            misses += int((has & ((c * equal).sum(axis=1) == 0)).sum())
            far_hits += int(((c * ~equal).sum(axis=1) > 0).sum())
    return near_queries, misses, far_hits


@pytest.mark.parametrize("z, ell, radius", [(2, 1, 0.3), (3, 3, 0.3), (12, 2, 0.2), (15, 20, 0.01)])
def test_lsh_failures_agree_with_dense_collision_counts(z, ell, radius):
    x, _ = _khop_input(96, 4, 5)
    base = khop_transformer(4, attention="anna", lsh=LSHConfig(E2LSH(1.0), z, ell), seed=1)
    near = jittered(base, radius, seed=7, keys="value")
    counts = lsh_failures(near, base, x)
    assert (counts.near_queries, counts.misses, counts.far_hits) == _dense_reference(near, base, x)
    assert counts.heads == sum(len(layer.heads) for layer in base.layers)
    assert counts.failed == (counts.misses + counts.far_hits > 0)


def test_weak_lsh_is_seen_missing_near_keys_and_hitting_far_ones():
    x, _ = _khop_input(256, 4, 3)
    base = khop_transformer(4, attention="anna", lsh=LSHConfig(E2LSH(1.0), 3, 3), seed=0)
    counts = lsh_failures(jittered(base, 0.3, 5, keys="value"), base, x)
    assert counts.misses > 0 and counts.far_hits > 0


def test_failure_bounds_follow_theorem34_and_bad_input_is_refused():
    miss, run, p1z = failure_bounds(2**12, integer_lsh(2**12), INT_NEAR, 5)
    lsh = integer_lsh(2**12)
    assert p1z == pytest.approx(E2LSH(1.0).collision_probability(INT_NEAR) ** lsh.z)
    assert miss == pytest.approx((1 - p1z) ** lsh.ell) and 0 < run < 0.1
    base = khop_transformer(1, attention="anna", n=64)
    with pytest.raises(ValueError, match="keys must be one of"):
        jittered(base, 0.01, 0, keys="row")
    with pytest.raises(ValueError, match="radius"):
        jittered(base, -1.0, 0)
