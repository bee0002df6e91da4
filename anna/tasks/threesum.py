"""3-SUM (THEORY §5): do three entries at distinct indices ``i < j < k`` sum to 0?

Sums are taken over Python integers, so no int64 overflow can fake or hide a solution.
"""
from __future__ import annotations

import numpy as np

from anna._validate import normalize_seed
from anna.errors import ParameterError
from anna.tasks._common import check_int_param, check_int_vector

__all__ = [
    "generate_three_sum",
    "has_three_sum",
    "three_sum",
    "three_sum_bruteforce",
]

_MAX_VALUE_RANGE = 2**62
_FREE_ATTEMPTS = 1000


def three_sum(x: np.ndarray) -> tuple[int, int, int] | None:
    """Some triple of indices ``i < j < k`` of ``x`` with ``x_i + x_j + x_k = 0``, or ``None``.

    O(N^2): sort once, then for each first element scan the rest with two pointers. The indices
    refer to the original (unsorted) array.

    Parameters
    ----------
    x : ndarray of int, shape (N,)

    Examples
    --------
    >>> three_sum(np.array([5, -1, 7, -4, 3]))
    (0, 1, 3)
    >>> three_sum(np.array([1, 2, 3])) is None
    True
    """
    x = check_int_vector("x", x)
    order = np.argsort(x, kind="stable").tolist()
    s = [int(v) for v in x[order].tolist()]
    n = len(s)
    for a in range(n - 2):
        lo, hi = a + 1, n - 1
        while lo < hi:
            total = s[a] + s[lo] + s[hi]
            if total == 0:
                return tuple(sorted((order[a], order[lo], order[hi])))
            if total < 0:
                lo += 1
            else:
                hi -= 1
    return None


def has_three_sum(x: np.ndarray) -> bool:
    """Whether ``x`` has a zero-sum triple at distinct indices (:func:`three_sum` is not None).

    Examples
    --------
    >>> has_three_sum(np.array([0, 0, 0])), has_three_sum(np.array([0, 0]))
    (True, False)
    """
    return three_sum(x) is not None


def three_sum_bruteforce(x: np.ndarray) -> tuple[int, int, int] | None:
    """The lexicographically first zero-sum triple ``i < j < k``, or ``None``; O(N^3).

    The obviously-correct reference that :func:`three_sum` is tested against.

    Examples
    --------
    >>> three_sum_bruteforce(np.array([5, -1, 7, -4, 3]))
    (0, 1, 3)
    """
    xs = [int(v) for v in check_int_vector("x", x).tolist()]
    n = len(xs)
    for i in range(n):
        for j in range(i + 1, n):
            for k in range(j + 1, n):
                if xs[i] + xs[j] + xs[k] == 0:
                    return (i, j, k)
    return None


def _three_sum_free(rng: np.random.Generator, n: int, r: int) -> np.ndarray:
    """``n`` values in ``[-r, r]`` with no zero-sum triple, drawn one at a time.

    Each new value is uniform over ``[-r, r]``, resampled while it would complete a zero-sum
    triple with two earlier values (``-v`` equal to a sum of two earlier entries), so every
    prefix is 3-SUM-free. The finished values are put in a uniformly random order.
    """
    values: list[int] = []
    pair_sums: set[int] = set()
    for _ in range(n):
        for _attempt in range(_FREE_ATTEMPTS):
            v = int(rng.integers(-r, r + 1))
            if -v not in pair_sums:
                break
        else:
            raise ParameterError(
                f"could not build a 3-SUM-free instance: after {len(values)} of n={n} values, "
                f"{_FREE_ATTEMPTS} draws from [-{r}, {r}] all completed a zero-sum triple; "
                "increase value_range or decrease n")
        pair_sums.update(v + w for w in values)
        values.append(v)
    return rng.permutation(np.array(values, dtype=np.int64))


def generate_three_sum(n: int, value_range: int, seed: int | None = None,
                       planted: bool | None = None) -> np.ndarray:
    """A 3-SUM instance: ``n`` integers in ``[-value_range, value_range]``.

    Parameters
    ----------
    n : int
        Number of integers, ``>= 1`` (``>= 3`` when ``planted`` is true).
    value_range : int
        Bound ``R >= 1`` on the absolute values (at most ``2**62``).
    seed : int or None
        Seed of ``np.random.default_rng``; ``None`` means 0.
    planted : bool or None
        * ``None``: i.i.d. uniform values, no guarantee either way.
        * ``True``: i.i.d. uniform values, then three distinct uniform positions are overwritten
          with ``(a, b, -(a + b))``, ``a`` uniform in ``[-R, R]`` and ``b`` uniform among the
          values keeping ``-(a + b)`` in range: a solution is guaranteed.
        * ``False``: no solution, guaranteed by construction (checked and resampled): values are
          drawn one at a time, each uniform over ``[-R, R]`` and resampled while it would
          complete a zero-sum triple with two earlier values; then shuffled. Raises ParameterError
          if 1000 draws for one value all fail. With ``n^2 ≪ R`` few draws are rejected and the
          values look uniform; in dense settings the resampling steers the values into a
          structured set with few distinct values (measured: ``n = 300, R = 30`` gives 14
          distinct values), far from the planted instances' distribution.

    Returns
    -------
    ndarray of int64, shape (n,)

    Examples
    --------
    >>> has_three_sum(generate_three_sum(20, 50, seed=0, planted=True))
    True
    >>> has_three_sum(generate_three_sum(20, 1000, seed=0, planted=False))
    False
    """
    n = check_int_param("n", n, minimum=3 if planted else 1)
    r = check_int_param("value_range", value_range, minimum=1)
    if r > _MAX_VALUE_RANGE:
        raise ParameterError(f"value_range must be at most 2**62, got {r}")
    if planted is not None and not isinstance(planted, (bool, np.bool_)):
        raise ParameterError(f"planted must be True, False or None, got {planted!r}")
    rng = np.random.default_rng(normalize_seed(seed))
    if planted is not None and not planted:
        return _three_sum_free(rng, n, r)
    x = rng.integers(-r, r + 1, size=n, dtype=np.int64)
    if planted:
        a = int(rng.integers(-r, r + 1))
        # b in [-r, r] and c = -(a + b) in [-r, r]  <=>  b in [max(-r, -r - a), min(r, r - a)].
        b = int(rng.integers(max(-r, -r - a), min(r, r - a) + 1))
        x[rng.choice(n, size=3, replace=False)] = (a, b, -(a + b))
    return x
