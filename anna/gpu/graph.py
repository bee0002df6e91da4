"""Dense ANNA attention captured in a CUDA graph: one replay instead of a dozen launches.

An eager call of :func:`anna.gpu.anna_attention_gpu` validates its inputs and then enqueues the
dense path's kernels and a few small torch reductions; at 2**20 tokens the host needs about as
long to enqueue them as the GPU needs to run them (``scripts/gpu_profile.py``). A loop that calls
attention on the same buffers again and again (a model's forward pass, a benchmark) can capture
the call once and replay it: :func:`capture_attention` checks the inputs, runs the call once (which
compiles the kernels), captures it with :class:`torch.cuda.CUDAGraph`, and returns a
:class:`CapturedAttention` whose :meth:`~CapturedAttention.replay` recomputes the attention of
whatever ``q``, ``k`` and ``v`` then hold. Write new inputs into them in place (``q.copy_(x)``);
the outputs are written into the same ``out`` and ``counts`` tensors at every replay.

Examples
--------
>>> import torch
>>> from anna import Hyperplane, LSHConfig
>>> q, k, v = (torch.randn((4096, 64), device="cuda") for _ in range(3))  # doctest: +SKIP
>>> captured = capture_attention(q, k, v, LSHConfig(Hyperplane(), 4, 8), seed=0)  # doctest: +SKIP
>>> q.copy_(torch.randn_like(q)); out, counts = captured.replay()  # doctest: +SKIP
"""
from __future__ import annotations

import torch

from .._validate import normalize_seed
from ..errors import DeviceError, ShapeError
from ..lsh import LSHConfig
from .attention import _sample, anna_attention_gpu, load_triton, resolve_device

__all__ = ["CapturedAttention", "capture_attention"]


class CapturedAttention:
    """A captured dense ANNA call (see :func:`capture_attention`); not built directly.

    Attributes
    ----------
    q, k, v : torch.Tensor
        The input tensors the graph reads (the caller's own tensors).
    out, counts : torch.Tensor
        The outputs every :meth:`replay` overwrites.
    lsh, seed, causal
        The configuration that was captured.
    """

    def __init__(self, graph, inputs: tuple, outputs: tuple, lsh: LSHConfig, seed: int, causal: bool,
                 keep: list) -> None:
        self._graph = graph
        self.q, self.k, self.v = inputs
        self.out, self.counts = outputs
        self.lsh, self.seed, self.causal = lsh, seed, causal
        self._keep = keep  # device operands the graph reads: they must outlive it

    def replay(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Recompute the attention of the current ``q``, ``k``, ``v``: ``(out, counts)``, the same
        tensors at every call (asynchronous, like any CUDA work on the current stream)."""
        self._graph.replay()
        return self.out, self.counts

    def __repr__(self) -> str:
        return (f"CapturedAttention(n_q={self.q.shape[0]}, n_k={self.k.shape[0]}, dim={self.q.shape[1]}, "
                f"dim_v={self.v.shape[1]}, dtype={self.v.dtype}, lsh={self.lsh}, seed={self.seed}, "
                f"causal={self.causal})")


def _check_inputs(q, k, v) -> torch.device:
    if not all(isinstance(x, torch.Tensor) for x in (q, k, v)):
        raise ShapeError("capture_attention takes torch tensors on a CUDA device (numpy arrays cannot be captured)")
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.dtype not in (torch.float32, torch.bfloat16):
            raise ShapeError(f"{name} must be float32 or bfloat16 to be captured, got {x.dtype}")
        if x.ndim != 2 or not x.is_contiguous():
            raise ShapeError(f"{name} must be a contiguous matrix to be captured (the graph reads the tensor "
                             f"itself), got shape {tuple(x.shape)}, strides {x.stride()}")
    device = resolve_device(v.device)
    if device.type != "cuda":
        raise DeviceError(f"capture_attention needs tensors on a CUDA device, got {device}")
    return device


def capture_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lsh: LSHConfig, seed: int | None = 0,
                      causal: bool = False, *, tuning=None) -> CapturedAttention:
    """Capture the dense-path attention of ``q``, ``k``, ``v`` in a CUDA graph.

    Parameters
    ----------
    q, k, v : torch.Tensor
        Contiguous float32 or bfloat16 matrices on one CUDA device; the graph reads these very
        tensors, so new inputs are written into them in place.
    lsh, seed, causal
        As :func:`anna.gpu.anna_attention_gpu`; the configuration must take the dense path
        (hyperplanes, ``z <= 8``).
    tuning : anna.gpu.triton_path.DenseTuning, optional
        Launch parameters (default :data:`~anna.gpu.triton_path.TUNING`).

    Returns
    -------
    CapturedAttention
        Its ``replay()`` gives the same ``(out, counts)`` as an eager call on the current inputs.

    Raises
    ------
    DeviceError
        No CUDA device (or the tensors are not on one).
    ShapeError, ParameterError, NonFiniteError
        Bad inputs (as an eager call), or a configuration the dense path does not take.
    """
    device = _check_inputs(q, k, v)
    # the eager call checks everything else (lsh, seed, causal, a configuration the dense path
    # takes, finiteness) with the same errors, and compiles the kernels
    anna_attention_gpu(q, k, v, lsh, seed, causal, path="dense")
    seed, causal, triton_path = normalize_seed(seed), bool(causal), load_triton()
    params, _ = _sample(lsh, q.shape[1], seed)

    def call():
        return triton_path.dense_attention(q, k, v, lsh, params, causal, tuning=tuning)

    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # a warm-up on a side stream, as torch.cuda.graphs asks
        call()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = call()
    plan = triton_path.dense_plan(lsh, q.shape[1], v.shape[1])
    keep = [triton_path._chunk_operands(params, plan, u0, u1, q.shape[1], device) for u0, u1 in plan.chunks]
    return CapturedAttention(graph, (q, k, v), outputs, lsh, seed, causal, keep + [params])
