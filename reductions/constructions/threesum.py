"""3-SUM through Theorem 4.1: the constant-round block-triple protocol compiled to ANNA.

:class:`mpc_sim.protocols.threesum.ThreeSum` decides 3-SUM in ``R = 1 + d + e`` rounds with
``s = 4 n^eps`` words per machine and fan-out ``Θ(n^(eps - 1/2))`` (its module docstring has the
algorithm and the correctness argument). :func:`reductions.compile.compile_mpc` turns it into an
ANNA-transformer with one layer per round (``O(1)`` layers for ``eps > 1/2``) and one routing
head per outgoing message, each ``O(s)`` wide: width ``m * H = Θ(n^eps * n^(eps - 1/2)) =
Θ(n^(1/2 + delta))`` with ``delta = 2 eps - 1`` (:func:`predicted_width_exponent`). The model's
tokens are the protocol's machines (about ``n^{3/2} / 6``), so it runs only at small ``n``; its
size is read off the compile report at any ``n``.
"""
from __future__ import annotations

from mpc_sim import MPCConfig
from mpc_sim.protocols.threesum import ThreeSum

from ..compile import CompiledModel, compile_mpc
from ._common import check_attention

__all__ = ["compiled_threesum", "predicted_width_exponent"]


def predicted_width_exponent(eps: float) -> float:
    """``eps + (eps - 1/2)``: memory ``n^eps`` per head times fan-out ``n^(eps - 1/2)`` heads.

    Examples
    --------
    >>> predicted_width_exponent(0.6)
    0.7
    """
    return round(2.0 * eps - 0.5, 12)


def compiled_threesum(n: int, *, eps: float = 0.6, attention: str = "ema", seed: int = 0,
                      config: MPCConfig | None = None) -> CompiledModel:
    """The 3-SUM protocol under ``ThreeSum().default_config(n, eps)`` (or ``config``), compiled.

    ``model(x)`` is ``[1]`` if three entries of ``x`` at distinct positions sum to 0, else ``[0]``.

    Examples
    --------
    >>> import numpy as np
    >>> model = compiled_threesum(12)
    >>> model(np.array([4, 9, -1, 30, 8, -12, 2, 50, 7, 3, 11, 60])).tolist()
    [1]
    >>> model.report.depth == ThreeSum().rounds_bound(ThreeSum().default_config(12, 0.6))
    True
    """
    protocol = ThreeSum()
    config = protocol.default_config(n, eps) if config is None else config
    return compile_mpc(protocol, config, seed=seed, attention=check_attention(attention))
