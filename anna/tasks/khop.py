"""k-hop induction heads (THEORY §5): follow "the token after the previous occurrence" k times.

The math (1-indexed, ``X_1 .. X_N``)::

    find¹(i)  = max({0} ∪ {j ≤ i : X_{j-1} = X_i})
    find^k    = find¹ ∘ find^{k-1}        (find⁰ = identity, find^k(0) = 0)
    hop_k(X)_i = X_{find^k(i)}  if find^k(i) ≠ 0,  else ⊥

It is causal: position ``i`` depends only on ``X_1 .. X_i``.

0-based array convention
------------------------
``x[p] = X_{p+1}`` for ``p = 0 .. N-1``. Arrays returned here use 0-based positions and
:data:`BOTTOM` (``-1``) for "no position" / ⊥:

* ``find_k(x, k)[p] = find^k(p + 1) - 1``, i.e. ``-1`` exactly when ``find^k(p + 1) = 0``.
  For ``k = 1``: ``find_k(x, 1)[p] = r + 1`` where ``r`` is the last ``r < p`` with
  ``x[r] = x[p]`` (the position just *after* the previous occurrence), or ``-1`` if none.
* ``hop_k(x, k)[p] = x[find_k(x, k)[p]]`` when that is ``>= 0``, else :data:`BOTTOM`.

Symbols are non-negative integers, so ``BOTTOM = -1`` never collides with a symbol.

Token encoding of the generated data
------------------------------------
Symbols are ``0 .. A-1`` (``A = alphabet_size``); the hop count ``k`` is the leading token
``A + k`` (so a vocabulary of ``A + max_k + 1`` tokens, :func:`khop_vocab_size`). A generated
row is ``inputs = [A + k, x_0, .., x_{n-1}]`` (length ``n + 1``) and
``targets = hop_k(x, k)`` (length ``n``), aligned with the symbols: ``targets[p]`` is the answer
at ``inputs[p + 1]``; the leading token has no target. ⊥ appears as ``BOTTOM`` in the targets
(a classifier with ``A + 1`` classes can map it to class ``A``); errors count every target,
⊥ included (THEORY §6).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from anna._validate import check_bool, normalize_seed
from anna.errors import ParameterError
from anna.tasks._common import check_int_param, check_int_vector

__all__ = [
    "BOTTOM",
    "find_k",
    "find_k_bruteforce",
    "generate_khop",
    "generate_khop_batch",
    "generate_khop_mixed",
    "hop_k",
    "hop_k_bruteforce",
    "khop_vocab_size",
]

BOTTOM: int = -1
"""⊥ in targets and "no position" (``find^k = 0``) in :func:`find_k` outputs."""


def _compose(f1: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """Apply ``f1`` row-wise ``ks[r]`` times to the start positions ``0 .. n-1`` (2-D ``f1``).

    ``f1[r, p] <= p`` and ``-1`` is absorbing, so a chain strictly decreases until it reaches a
    fixed point: after ``n`` applications nothing changes, hence at most ``min(max k, n)`` steps.
    """
    count, n = f1.shape
    g = np.tile(np.arange(n, dtype=np.int64), (count, 1))
    for step in range(min(int(ks.max(initial=0)), n)):
        move = (ks > step)[:, None] & (g >= 0)
        g = np.where(move, np.take_along_axis(f1, np.maximum(g, 0), axis=1), g)
    return g


def find_k(x: np.ndarray, k: int) -> np.ndarray:
    """``find^k`` at every position, 0-based (module docstring), ``-1`` where ``find^k = 0``.

    ``find¹`` comes from one left-to-right pass with a last-occurrence table (a dict from symbol
    to its last position), O(N); each further hop is one array composition, O(N); the chain
    settles after ``N`` hops, so the total is O(N · min(k, N) + N).

    Parameters
    ----------
    x : ndarray of int, shape (N,)
        Non-negative symbols.
    k : int
        Number of hops, ``>= 0`` (``k = 0`` gives ``0 .. N-1``).

    Examples
    --------
    ``X = aabcbabca`` with a, b, c = 0, 1, 2: ``find¹(9) = 7`` and ``find²(9) = 6`` (1-indexed).

    >>> x = np.array([0, 0, 1, 2, 1, 0, 1, 2, 0])
    >>> find_k(x, 1).tolist()
    [-1, 1, -1, -1, 3, 2, 5, 4, 6]
    >>> int(find_k(x, 2)[8])
    5
    """
    x = check_int_vector("x", x, low=0)
    k = check_int_param("k", k, minimum=0)
    f1 = np.empty(x.size, dtype=np.int64)
    last: dict[int, int] = {}
    for p, v in enumerate(x.tolist()):
        f1[p] = last.get(v, -2) + 1
        last[v] = p
    return _compose(f1[None, :], np.array([k]))[0]


def hop_k(x: np.ndarray, k: int) -> np.ndarray:
    """``hop_k(X)`` at every position: ``x[find_k(x, k)]``, :data:`BOTTOM` where ``find^k = 0``.

    Examples
    --------
    ``X = aabcbabca``: ``hop_1`` at position 9 is ``b`` (1), ``hop_2`` there is ``a`` (0).

    >>> x = np.array([0, 0, 1, 2, 1, 0, 1, 2, 0])
    >>> hop_k(x, 1).tolist()
    [-1, 0, -1, -1, 2, 1, 0, 1, 1]
    >>> int(hop_k(x, 2)[8])
    0
    """
    f = find_k(x, k)
    return np.where(f >= 0, x[np.maximum(f, 0)], BOTTOM).astype(np.int64)


def find_k_bruteforce(x: np.ndarray, k: int) -> np.ndarray:
    """``find^k`` straight from the 1-indexed definition, O(k N^2); same output as :func:`find_k`.

    Examples
    --------
    >>> find_k_bruteforce(np.array([0, 0, 1, 2, 1, 0, 1, 2, 0]), 2).tolist()[-1]
    5
    """
    xs = check_int_vector("x", x, low=0).tolist()
    k = check_int_param("k", k, minimum=0)
    big_x = [None, *xs]  # big_x[i] = X_i, 1-indexed

    def find1(i: int) -> int:
        # j = 1 would need X_0, which does not exist; find1(0) = max({0}) = 0.
        return max([0] + [j for j in range(2, i + 1) if big_x[j - 1] == big_x[i]])

    out = []
    for i in range(1, len(xs) + 1):
        f = i
        for _ in range(k):
            f = find1(f)
        out.append(f - 1)
    return np.array(out, dtype=np.int64)


def hop_k_bruteforce(x: np.ndarray, k: int) -> np.ndarray:
    """``hop_k`` straight from the definition, on top of :func:`find_k_bruteforce`.

    Examples
    --------
    >>> hop_k_bruteforce(np.array([0, 0, 1, 2, 1, 0, 1, 2, 0]), 1).tolist()[-1]
    1
    """
    f = find_k_bruteforce(x, k)
    return np.array([x[p] if p >= 0 else BOTTOM for p in f.tolist()], dtype=np.int64)


def khop_vocab_size(alphabet_size: int, max_k: int) -> int:
    """Number of input tokens: ``alphabet_size`` symbols plus hop tokens for ``k = 0 .. max_k``.

    Examples
    --------
    >>> khop_vocab_size(4, 1)
    6
    """
    return check_int_param("alphabet_size", alphabet_size, minimum=1) + \
        check_int_param("max_k", max_k, minimum=0) + 1


def _check_alphabet(alphabet_size: int, no_repeats: bool) -> int:
    no_repeats = check_bool("no_repeats", no_repeats)
    return check_int_param("alphabet_size (with no_repeats=True)" if no_repeats else "alphabet_size",
                           alphabet_size, minimum=2 if no_repeats else 1)


def _generate(rng: np.random.Generator, ks: np.ndarray, n: int, alphabet_size: int,
              no_repeats: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rows for hop counts ``ks`` (one per row): symbols, leading token, vectorized targets."""
    count = ks.size
    if no_repeats:
        # x_0 uniform, then x_t = x_{t-1} + s mod A with s uniform in 1..A-1: uniform over Σ \ {x_{t-1}}.
        steps = np.concatenate([rng.integers(0, alphabet_size, size=(count, 1)),
                                rng.integers(1, alphabet_size, size=(count, n - 1))], axis=1)
        x = np.cumsum(steps, axis=1) % alphabet_size
    else:
        x = rng.integers(0, alphabet_size, size=(count, n), dtype=np.int64)

    # find¹ for all rows at once: one pass over positions with a (rows, A) last-occurrence table.
    rows = np.arange(count)
    last = np.full((count, alphabet_size), -1, dtype=np.int64)
    f1 = np.empty((count, n), dtype=np.int64)
    for p in range(n):
        v = x[:, p]
        prev = last[rows, v]
        f1[:, p] = np.where(prev >= 0, prev + 1, -1)
        last[rows, v] = p
    g = _compose(f1, ks)
    targets = np.where(g >= 0, np.take_along_axis(x, np.maximum(g, 0), axis=1), BOTTOM)
    inputs = np.concatenate([(alphabet_size + ks)[:, None], x], axis=1).astype(np.int64)
    return inputs, targets.astype(np.int64)


def generate_khop_batch(count: int, n: int, alphabet_size: int, k: int, seed: int | None = None,
                        no_repeats: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``count`` k-hop rows with the same hop count ``k`` (encoding in the module docstring).

    Parameters
    ----------
    count : int
        Number of rows, ``>= 1``.
    n : int
        Symbols per row (THEORY §6: 100), ``>= 1``; inputs have ``n + 1`` tokens.
    alphabet_size : int
        ``|Σ|`` (THEORY §6: 4); ``>= 2`` when ``no_repeats``, else ``>= 1``.
    k : int
        Hop count, ``>= 0``; the leading token is ``alphabet_size + k``.
    seed : int or None
        Seed of ``np.random.default_rng``; ``None`` means 0.
    no_repeats : bool
        If true (the standard data), ``x_0`` is uniform over Σ and each next symbol is uniform
        over Σ minus the previous one; otherwise symbols are i.i.d. uniform.

    Returns
    -------
    inputs : ndarray of int64, shape (count, n + 1)
    targets : ndarray of int64, shape (count, n)
        ``targets[r] = hop_k(inputs[r, 1:], k)``, :data:`BOTTOM` for ⊥.

    Examples
    --------
    >>> inputs, targets = generate_khop_batch(3, 10, 4, 1, seed=0)
    >>> inputs.shape, targets.shape, inputs[:, 0].tolist()
    ((3, 11), (3, 10), [5, 5, 5])
    >>> all((targets[r] == hop_k(inputs[r, 1:], 1)).all() for r in range(3))
    True
    """
    count = check_int_param("count", count, minimum=1)
    n = check_int_param("n", n, minimum=1)
    alphabet_size = _check_alphabet(alphabet_size, no_repeats)
    k = check_int_param("k", k, minimum=0)
    rng = np.random.default_rng(normalize_seed(seed))
    return _generate(rng, np.full(count, k, dtype=np.int64), n, alphabet_size, bool(no_repeats))


def generate_khop(n: int, alphabet_size: int, k: int, seed: int | None = None,
                  no_repeats: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One k-hop row: ``inputs`` of shape ``(n + 1,)`` and ``targets`` of shape ``(n,)``.

    Same as row 0 of :func:`generate_khop_batch` with ``count = 1`` and the same arguments.

    Examples
    --------
    >>> inputs, targets = generate_khop(8, 4, 2, seed=3)
    >>> int(inputs[0]), bool((targets == hop_k(inputs[1:], 2)).all())
    (6, True)
    """
    inputs, targets = generate_khop_batch(1, n, alphabet_size, k, seed=seed, no_repeats=no_repeats)
    return inputs[0], targets[0]


def generate_khop_mixed(count: int, n: int, alphabet_size: int, ks: Iterable[int],
                        seed: int | None = None,
                        no_repeats: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``count`` k-hop rows, each with its own hop count uniform over the set ``ks``.

    For training on several hop counts at once (THEORY §6 trains on ``k ∈ {0, 1}``); a row's
    hop count is ``inputs[r, 0] - alphabet_size``. Other arguments and outputs as in
    :func:`generate_khop_batch`.

    Examples
    --------
    >>> inputs, targets = generate_khop_mixed(6, 12, 4, {0, 1}, seed=0)
    >>> sorted(set((inputs[:, 0] - 4).tolist()))
    [0, 1]
    """
    count = check_int_param("count", count, minimum=1)
    n = check_int_param("n", n, minimum=1)
    alphabet_size = _check_alphabet(alphabet_size, no_repeats)
    if isinstance(ks, (int, np.integer)) or not isinstance(ks, Iterable):
        raise ParameterError(f"ks must be an iterable of hop counts, got {ks!r}")
    values = sorted({check_int_param("each hop count in ks", k, minimum=0) for k in ks})
    if not values:
        raise ParameterError("ks must contain at least one hop count, got an empty collection")
    rng = np.random.default_rng(normalize_seed(seed))
    chosen = rng.choice(np.array(values, dtype=np.int64), size=count)
    return _generate(rng, chosen, n, alphabet_size, bool(no_repeats))
