"""Named example models for the ``decompile`` command, the claims and the tests.

* ``random``: a trained-mode ANNA-transformer with random weights (2 layers, 2 heads, hyperplane
  LSH on unit-norm queries and keys);
* ``match2``: Theorem 5.2's one-layer, one-head Match2 model, ``Q(x) = -x mod M``, ``K(x) = x``,
  ``V = 1``, run by Algorithm 1 with one E2LSH table (``r = 0``: equal values always collide,
  distinct ones with probability at most ``p2**z`` per pair); the output is 1 exactly when some key
  collided with the query (the empty-neighbourhood convention gives 0 otherwise);
* ``softmax`` and ``lowrank``: the ``random`` model's weights with standard and low-rank heads
  (inputs of the softmax baseline and of the low-rank protocol).

Examples
--------
>>> from anna.tasks import generate_match2, match2_labels
>>> model = example_model("match2", 32, seed=0)
>>> x, labels = generate_match2(32, 37, seed=1)
>>> bool((model(x.astype(float))[:, 0] == labels).all())
True
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from anna.lsh import E2LSH, Hyperplane, LSHConfig
from anna.transformer import Head, Layer, Transformer, init_transformer

from .tokens import TokenwiseEmbedding

__all__ = ["EXAMPLES", "example_model", "MATCH2_MODULUS"]

MATCH2_MODULUS = 37


def _random(n: int, seed: int, kind: str = "anna") -> Transformer:
    lsh = LSHConfig(Hyperplane(), z=2, ell=8) if kind == "anna" else None
    return init_transformer(vocab_size=16, dim=8, n_outputs=4, depth=2, heads=2, max_len=max(1, n), kind=kind,
                            lsh=lsh, seed=seed)


def _match2(n: int, seed: int, modulus: int = MATCH2_MODULUS) -> Transformer:
    embedding = TokenwiseEmbedding(lambda values, positions: np.stack([values % modulus, 0.0 * values], axis=1),
                                   dim=2)
    head = Head(
        "anna",
        query=lambda x, p: (-x[:, :1]) % modulus,
        key=lambda x, p: x[:, :1],
        value=lambda x, p: np.ones((x.shape[0], 1)),
        output=lambda a, p: np.column_stack([np.zeros(a.shape[0]), a[:, 0]]),
        dim=1, value_dim=1,
        lsh=LSHConfig(E2LSH(width=0.25), z=12, ell=1),
    )
    return Transformer(embedding, (Layer((head,)),), lambda x, p: x[:, 1:2], seed=seed, dim=2)


EXAMPLES: dict[str, Callable[[int, int], Transformer]] = {
    "random": _random,
    "match2": _match2,
    "softmax": lambda n, seed: _random(n, seed, "softmax"),
    "lowrank": lambda n, seed: _random(n, seed, "lowrank"),
}


def example_model(name: str, n: int, seed: int = 0) -> Transformer:
    """The example model ``name`` for sequences of ``n`` tokens (ValueError listing the names)."""
    if name not in EXAMPLES:
        raise ValueError(f"unknown example model {name!r}; known: {', '.join(sorted(EXAMPLES))}")
    return EXAMPLES[name](n, seed)
