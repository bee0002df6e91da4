"""Match2 (THEORY §5): label every token that has a partner summing to 0 mod M.

For ``x`` in ``[M]^N`` (values ``0 .. M-1``), ``label_i = 1`` iff some ``j`` (``j = i``
allowed) has ``x_i + x_j ≡ 0 (mod M)``. The label of a token depends only on its value and on the
set of values present, so one presence table of size ``M`` answers every position.

Value classes
-------------
The values split into *pair classes* ``{v, M - v}`` with ``v ≠ M - v`` (``v = 1 .. ⌈M/2⌉ - 1``)
and *self-complementary* values ``0`` and, for even ``M``, ``M/2``. A self-complementary token is
always positive (``j = i`` is allowed); a token of a pair class is positive iff its partner value
occurs somewhere in the sequence.
"""
from __future__ import annotations

import numpy as np

from anna._validate import normalize_seed
from anna.tasks._common import check_int_param, check_int_vector

__all__ = [
    "generate_match2",
    "generate_match2_balanced",
    "match2_labels",
    "match2_labels_bruteforce",
]


def _labels_rows(x: np.ndarray, modulus: int) -> np.ndarray:
    """Match2 labels of every row of a validated 2-D array with values in ``[0, modulus)``."""
    rows = np.arange(x.shape[0])[:, None]
    present = np.zeros((x.shape[0], modulus), dtype=bool)
    present[rows, x] = True
    return present[rows, (-x) % modulus].astype(np.int64)


def match2_labels(x: np.ndarray, modulus: int) -> np.ndarray:
    """Match2 labels in O(N + M): a presence table of the values, then one lookup per token.

    Parameters
    ----------
    x : ndarray of int, shape (N,)
        Values in ``[0, modulus)``.
    modulus : int
        ``M >= 2``.

    Returns
    -------
    ndarray of int64, shape (N,)
        ``1`` where ``(-x_i) mod M`` occurs in ``x``, else ``0``.

    Examples
    --------
    >>> match2_labels(np.array([1, 4, 0, 2]), 5).tolist()
    [1, 1, 1, 0]
    """
    modulus = check_int_param("modulus", modulus, minimum=2)
    x = check_int_vector("x", x, low=0, high=modulus)
    return _labels_rows(x[None, :], modulus)[0]


def match2_labels_bruteforce(x: np.ndarray, modulus: int) -> np.ndarray:
    """Match2 labels straight from the definition, O(N^2): try every ``j`` for every ``i``.

    The obviously-correct reference that :func:`match2_labels` is tested against.

    Examples
    --------
    >>> match2_labels_bruteforce(np.array([1, 4, 0, 2]), 5).tolist()
    [1, 1, 1, 0]
    """
    modulus = check_int_param("modulus", modulus, minimum=2)
    xs = check_int_vector("x", x, low=0, high=modulus).tolist()
    return np.array([int(any((a + b) % modulus == 0 for b in xs)) for a in xs], dtype=np.int64)


def generate_match2(n: int, modulus: int, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One Match2 sequence with i.i.d. uniform values in ``[0, modulus)``, and its labels.

    Returns
    -------
    x, labels : ndarray of int64, shape (n,)

    Examples
    --------
    >>> x, y = generate_match2(6, 5, seed=1)
    >>> x.shape, bool((y == match2_labels(x, 5)).all())
    ((6,), True)
    """
    n = check_int_param("n", n, minimum=1)
    modulus = check_int_param("modulus", modulus, minimum=2)
    rng = np.random.default_rng(normalize_seed(seed))
    x = rng.integers(0, modulus, size=n, dtype=np.int64)
    return x, _labels_rows(x[None, :], modulus)[0]


def generate_match2_balanced(count: int, n: int = 32, modulus: int = 37,
                             seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Match2 sequences in which exactly ``n // 2`` tokens of every sequence are positive.

    "Balanced" here means *per sequence*: each row has ``n // 2`` positive and ``n - n // 2``
    negative tokens, so over the dataset the two labels are equally frequent (exactly, for even
    ``n``). With uniform values (the paper's N = 32, M = 37) about 58 % of the tokens would be
    positive. Each row is built as follows (see the module docstring for value classes):

    1. Shuffle the ``P = ⌈M/2⌉ - 1`` pair classes and split them: the first
       ``q = 1 + Binomial(P - 2, 1/2)`` are *negative classes* (``q = 1`` when ``P = 1``), i.e.
       one class is forced negative, one forced positive, every other class is negative by a fair
       coin. Each negative class gets a uniformly chosen side. The *positive values* are both
       sides of the other classes plus the self-complementary values.
    2. The ``n - n // 2`` negative tokens are i.i.d. uniform over the chosen sides of the negative
       classes; their partners never occur, so they are negative.
    3. The ``n_pos = n // 2`` positive tokens are planted as complementary pairs: ``⌊n_pos / 2⌋``
       times, ``v`` uniform over the positive values contributes ``v`` and ``(M - v) mod M``
       (so every positive value is planted at the same rate, a self-complementary one as two
       copies); if ``n_pos`` is odd, one more token repeats a uniformly chosen planted token
       (or is a uniform self-complementary value when nothing was planted).
    4. The positions are shuffled uniformly.

    Every value of ``[M]`` can occur with either label across the dataset (except the always
    positive self-complementary values), so the label is not a function of the token alone.
    Measured on 10,000 rows at N = 32, M = 37 (seed 1, tested): every value's share of the tokens
    is within 5 % of ``1/M``, and every non-zero value is positive in 45-52 % of its occurrences.

    Parameters
    ----------
    count : int
        Number of sequences (the paper trains on 10,000).
    n : int
        Sequence length (paper: 32).
    modulus : int
        ``M >= 3`` (paper: 37); ``M = 2`` has no pair class, every token would be positive.
    seed : int or None
        Seed of ``np.random.default_rng``; ``None`` means 0.

    Returns
    -------
    inputs, labels : ndarray of int64, shape (count, n)

    Examples
    --------
    >>> x, y = generate_match2_balanced(4, n=8, modulus=7, seed=0)
    >>> x.shape, y.sum(axis=1).tolist()
    ((4, 8), [4, 4, 4, 4])
    """
    count = check_int_param("count", count, minimum=1)
    n = check_int_param("n", n, minimum=1)
    modulus = check_int_param("modulus", modulus, minimum=3)
    rng = np.random.default_rng(normalize_seed(seed))
    rows = np.arange(count)[:, None]

    pairs = np.arange(1, (modulus + 1) // 2, dtype=np.int64)  # representative v of {v, M - v}
    selfs = np.array([0] if modulus % 2 else [0, modulus // 2], dtype=np.int64)
    n_pairs = pairs.size
    n_pos = n // 2
    n_neg = n - n_pos

    classes = rng.permuted(np.tile(pairs, (count, 1)), axis=1)
    q = 1 + rng.binomial(max(n_pairs - 2, 0), 0.5, size=(count, 1))  # negative classes: classes[:, :q]
    sides = np.where(rng.integers(0, 2, size=classes.shape).astype(bool), modulus - classes, classes)
    negatives = sides[rows, rng.integers(0, q, size=(count, n_neg))]

    # A row's positive values: both sides of classes[r, q_r:] (2 * n_free values), then the
    # self-complementary ones. u < 2 * n_free picks the class at column q + (u mod n_free); which
    # side u names does not matter, since both sides are planted. "% n_pairs" only keeps the
    # index valid when n_free = 0, where every u picks a self-complementary value.
    n_free = n_pairs - q
    half = n_pos // 2
    u = rng.integers(0, 2 * n_free + selfs.size, size=(count, half))
    from_pair = classes[rows, (q + u % np.maximum(n_free, 1)) % n_pairs]
    starts = np.where(u < 2 * n_free, from_pair, selfs[np.clip(u - 2 * n_free, 0, selfs.size - 1)])
    positives = np.concatenate([starts, (modulus - starts) % modulus], axis=1)
    if n_pos % 2:
        if half:
            extra = positives[rows, rng.integers(0, 2 * half, size=(count, 1))]
        else:
            extra = selfs[rng.integers(0, selfs.size, size=(count, 1))]
        positives = np.concatenate([positives, extra], axis=1)

    inputs = rng.permuted(np.concatenate([negatives, positives], axis=1), axis=1)
    return inputs, _labels_rows(inputs, modulus)
