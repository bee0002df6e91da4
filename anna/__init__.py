"""ANNA: Approximate Nearest Neighbor Attention.

LSH families, Algorithm 1 (with the memory of Algorithm 2) as numba kernels, exact references
(exact-match, softmax, low-rank attention), a checker of the ANNA definition, the ANNA-transformer,
and the paper's tasks. Imports nothing of :mod:`mpc_sim` or :mod:`reductions`.

Examples
--------
>>> import numpy as np
>>> from anna import anna_attention, LSHConfig, CrossPolytope
>>> x = np.eye(4)
>>> out, counts = anna_attention(x, x, x, LSHConfig(CrossPolytope(), z=1, ell=4), seed=0)
>>> bool(np.all(counts >= 4))        # every query collides with its own copy in all 4 tables
True
"""
from _anna_mpc_numba_cache import configure_numba_cache as _configure_numba_cache

_configure_numba_cache()   # first: numba reads its cache directory as kernel modules import

from .attention import AnnaStats, anna_attention, anna_weights, collision_counts
from .check import AnnaCheck, FailureRate, anna_failure_rate, check_anna
from .lsh import (CrossPolytope, E2LSH, Hyperplane, LSHConfig, MeasuredRho, TheoryParameters,
                  measure_collision_rates, theory_parameters)
from .reference import (collision_attention, elu_feature_map, ema_attention, lowrank_attention, normalize_rows,
                        softmax_attention)
from .transformer import (MLP, ForwardTrace, Head, Layer, Linear, Placement, ResourceReport, TokenEmbedding,
                          Transformer, derive_head_seed, init_transformer, load_transformer, save_transformer)

__all__ = [
    "anna_attention", "anna_weights", "collision_counts", "AnnaStats",
    "check_anna", "anna_failure_rate", "AnnaCheck", "FailureRate",
    "E2LSH", "Hyperplane", "CrossPolytope", "LSHConfig", "TheoryParameters", "MeasuredRho",
    "theory_parameters", "measure_collision_rates",
    "ema_attention", "softmax_attention", "lowrank_attention", "collision_attention", "normalize_rows",
    "elu_feature_map",
    "Transformer", "Head", "Layer", "Linear", "MLP", "Placement", "TokenEmbedding", "ResourceReport",
    "ForwardTrace", "init_transformer", "save_transformer", "load_transformer", "derive_head_seed",
]
