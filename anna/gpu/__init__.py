"""ANNA attention on NVIDIA GPUs: fused Triton kernels of Algorithm 2 (optional: torch + triton).

Imported only when asked (``import anna.gpu`` or ``anna_attention(..., device="cuda")``); the
rest of :mod:`anna` never needs torch or triton. Install with ``pip install 'anna-mpc[gpu]'``
next to a CUDA build of torch.

* :func:`anna_attention_gpu` -- the entry point (numpy or torch in, the same kind out);
* :mod:`anna.gpu.triton_path` -- the kernels (imports triton);
* :func:`capture_attention` -- a dense call captured in a CUDA graph, replayed on new inputs
  (:mod:`anna.gpu.graph`);
* :mod:`anna.gpu.torch_path` -- plain torch Algorithm 1 (the baseline; runs on the CPU too);
* :mod:`anna.gpu.check` -- comparison against the numba kernels, shared by the tests and
  ``benchmarks/bench_gpu.py``.

Examples
--------
>>> import numpy as np
>>> from anna import Hyperplane, LSHConfig
>>> from anna.gpu import anna_attention_gpu
>>> x = np.eye(4, dtype=np.float32)
>>> out, counts = anna_attention_gpu(x, x, x, LSHConfig(Hyperplane(), z=2, ell=3), path="torch", device="cpu")
>>> bool((counts >= 3).all())
True
>>> out, counts = anna_attention_gpu(x, x, x, LSHConfig(Hyperplane(), z=2, ell=3), device="cuda")  # doctest: +SKIP
"""
from .attention import PATHS, anna_attention_gpu, general_attention, load_triton, resolve_device
from .graph import CapturedAttention, capture_attention
from .torch_path import attention_from_codes, torch_algorithm1, torch_codes

__all__ = ["anna_attention_gpu", "capture_attention", "CapturedAttention", "general_attention", "PATHS",
           "resolve_device", "load_triton", "torch_algorithm1", "torch_codes", "attention_from_codes"]
