"""ANNA-transformer -> MPC protocol (Theorem 4.2), its softmax baseline, and low-rank attention
through MPC to ANNA (Theorem 4.4).

- :func:`compile_anna` turns an ANNA-transformer into a batch protocol of :mod:`mpc_sim`
  (:mod:`.anna_protocol`, planned by :mod:`.plan`); :func:`run_model_protocol` runs it beside the
  model's own forward pass.
- :class:`SoftmaxProtocol` is the predecessor's simulation of standard attention: one
  inner-product machine per query-key pair.
- :class:`LowRankProtocol` runs a low-rank (kernel) attention transformer with a per-machine step,
  so :func:`reductions.compile.compile_mpc` compiles it into an ANNA-transformer.
"""
from __future__ import annotations

from anna.transformer import Transformer
from mpc_sim import MPCConfig

from .anna_protocol import AnnaProtocol
from .base import DecompiledRun, ModelProtocol, fitted_config, run_model_protocol, smallest_memory_config
from .errors import DecompileError, PlanError, UnsupportedModel
from .lowrank_protocol import LowRankPlan, LowRankProtocol
from .plan import OVERSAMPLING, AnnaPlan, LayerPlan, TreePlan, make_anna_plan
from .softmax_protocol import SoftmaxPlan, SoftmaxProtocol
from .tokens import TokenwiseEmbedding, tolerance

__all__ = [
    "compile_anna", "AnnaProtocol", "AnnaPlan", "LayerPlan", "TreePlan", "make_anna_plan", "OVERSAMPLING",
    "SoftmaxProtocol", "SoftmaxPlan", "LowRankProtocol", "LowRankPlan",
    "ModelProtocol", "DecompiledRun", "run_model_protocol", "fitted_config", "smallest_memory_config",
    "TokenwiseEmbedding", "tolerance", "DecompileError", "PlanError", "UnsupportedModel",
]


def compile_anna(model: Transformer, config: MPCConfig | None = None, *, output_dim: int | None = None,
                 max_failure: float = 1e-9, tokens_per_machine: int | None = None,
                 oversampling: tuple[float, ...] = OVERSAMPLING) -> AnnaProtocol:
    """The MPC protocol computing ``model`` (anna and ema heads, seeds as the model fixes them).

    Parameters
    ----------
    model : Transformer
    config : MPCConfig, optional
        Checked now when given (:class:`PlanError` or ConfigError if the model does not fit);
        ``protocol.default_config(n, eps)`` picks the smallest memory factor that fits.
    output_dim, max_failure, tokens_per_machine, oversampling
        See :class:`AnnaProtocol`.

    Examples
    --------
    >>> import numpy as np
    >>> from anna.lsh import Hyperplane, LSHConfig
    >>> from anna.transformer import init_transformer
    >>> model = init_transformer(vocab_size=5, dim=4, n_outputs=2, depth=1, max_len=32, kind="anna",
    ...                          lsh=LSHConfig(Hyperplane(), z=2, ell=4), seed=0)
    >>> protocol = compile_anna(model)
    >>> run = run_model_protocol(protocol, np.arange(32) % 5, eps=0.5)
    >>> run.agrees, run.trace.num_rounds == protocol.rounds_bound(run.trace.config)
    (True, True)
    """
    protocol = AnnaProtocol(model, output_dim=output_dim, max_failure=max_failure,
                            tokens_per_machine=tokens_per_machine, oversampling=oversampling)
    if config is not None:
        protocol.check_config(config)
    return protocol
