"""Direct ANNA-transformer constructions for the paper's tasks (docs/theory.md §4-§5).

- :mod:`.match2`: Theorem 5.2, one layer, one head, m = 1;
- :mod:`.khop`: Theorem 5.6, k-hop induction heads in depth ``floor(log2 k) + 3 + [k not a power
  of 2]`` (direct, causal), and the pointer-doubling protocol compiled by Theorem 4.1;
- :mod:`.induction`: Theorem 5.4, induction heads (k = 1) in constant depth (3 layers);
- :mod:`.threesum`: 3-SUM, the constant-round block-triple protocol compiled by Theorem 4.1.

Every direct construction runs with exact-match heads (``attention="ema"``) or with Algorithm 1
at Theorem 3.4's (z, ell) (``attention="anna"``, :func:`integer_lsh`).
"""
from ._common import INT_FAR, INT_NEAR, integer_lsh, integer_lsh_parameters
from .induction import INDUCTION_DEPTH, induction_transformer
from .khop import (Doubling, compiled_khop, compiled_khop_depth, doubling_program, khop_depth, khop_transformer,
                   predecessor_depth)
from .match2 import match2_transformer
from .threesum import compiled_threesum, predicted_width_exponent

__all__ = [
    "INT_FAR", "INT_NEAR", "integer_lsh", "integer_lsh_parameters",
    "INDUCTION_DEPTH", "induction_transformer",
    "Doubling", "compiled_khop", "compiled_khop_depth", "doubling_program", "khop_depth", "khop_transformer",
    "predecessor_depth",
    "match2_transformer",
    "compiled_threesum", "predicted_width_exponent",
]
