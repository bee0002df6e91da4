"""Training the paper's softmax surrogate with torch (optional extra ``train``), CPU only.

docs/theory.md §6: train ``softmax(β q̂ k̂ᵀ) v`` with unit-norm queries and keys, then keep every weight
and swap the attention for Algorithm 1. :class:`TorchSurrogate` computes the forward pass of
:class:`anna.transformer.Transformer` in torch, :func:`train_surrogate` runs Adam (resumable from a
checkpoint), and :meth:`TorchSurrogate.to_transformer` hands the weights back unchanged.
:class:`Match2Setup` and :class:`InductionSetup` hold the paper's data, architecture and schedule.

torch is imported only when a surrogate is built or trained; without it :class:`TorchMissing`
(an ImportError) says how to install the pinned CPU build. Everything else here imports without it.
"""
from ._torch import TorchMissing, require_torch, torch_available
from .loop import IGNORE, TrainConfig, TrainLog, token_errors, train_surrogate
from .surrogate import TorchSurrogate, weight_arrays
from .tasks import InductionSetup, Match2Setup, encode_khop_targets

__all__ = [
    "IGNORE",
    "InductionSetup",
    "Match2Setup",
    "TorchMissing",
    "TorchSurrogate",
    "TrainConfig",
    "TrainLog",
    "encode_khop_targets",
    "require_torch",
    "token_errors",
    "torch_available",
    "train_surrogate",
    "weight_arrays",
]
