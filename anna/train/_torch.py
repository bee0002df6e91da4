"""Lazy import of torch: the training code is an optional extra (``pip install -e ".[train]"``)."""
from __future__ import annotations

__all__ = ["TorchMissing", "require_torch", "torch_available"]

TORCH_VERSION = "2.13.0"


class TorchMissing(ImportError):
    """torch is not installed; the message says how to install the pinned CPU build."""


def torch_available() -> bool:
    """Whether ``import torch`` works (without importing anything else of ours).

    Examples
    --------
    >>> isinstance(torch_available(), bool)
    True
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def require_torch():
    """Return the ``torch`` module, or raise :class:`TorchMissing` with the install command."""
    try:
        import torch
    except ImportError as error:
        raise TorchMissing(
            f"training needs torch (CPU build): pip install torch=={TORCH_VERSION} "
            f"(or pip install -e \".[train]\"); evaluation of the shipped weights does not need it") from error
    return torch
