"""ANNA: Approximate Nearest Neighbor Attention.

LSH families, Algorithm 1 (with the memory of Algorithm 2) as numba kernels, exact references
(exact-match, softmax, low-rank attention), a checker of the ANNA definition, the ANNA-transformer,
and the paper's tasks. Imports nothing of :mod:`mpc_sim` or :mod:`reductions`.
"""
__all__: list[str] = []
