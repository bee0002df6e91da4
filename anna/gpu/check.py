"""Check a GPU path against the numba kernels on one input (shared by the tests and the benchmark).

:func:`check_path` runs a path of :func:`anna.gpu.anna_attention_gpu` and the numba
:func:`anna.anna_attention` on the same rows (bfloat16 rows are widened to float32 for numba) and
seed. Codes agree except where a projection lies within float32 rounding of a hyperplane, a
cell boundary or a cross-polytope tie, where the two summation orders may round apart; so:

* if counts agree exactly and outputs within tolerance: pass;
* otherwise the reference is rebuilt from the GPU's own codes (the dense kernels store their
  bucket ids on request; the general path's codes come from :func:`triton_codes`), counts must
  then agree exactly and outputs within tolerance, and at most ``max_code_mismatch`` of the
  (row, table) codes may differ from numba's.

Tolerance on ``|out - ref|``: ``1e-4 max|v|`` for float32 outputs, ``2**-6 max|v|`` for bfloat16.

Examples
--------
>>> import numpy as np, torch
>>> from anna import Hyperplane, LSHConfig
>>> rng = np.random.default_rng(1)
>>> q, k, v = (torch.from_numpy(rng.standard_normal((40, 8)).astype(np.float32)) for _ in range(3))
>>> check_path(q, k, v, LSHConfig(Hyperplane(), 3, 4), seed=2, causal=True, path="torch").passed
True
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..attention import anna_attention
from ..errors import ParameterError
from ..lsh import LSHConfig
from . import torch_path
from .attention import anna_attention_gpu, load_triton

__all__ = ["CheckResult", "check_path", "tolerance"]


@dataclass(frozen=True)
class CheckResult:
    """Outcome of :func:`check_path`; ``passed`` says whether every criterion held."""

    path: str
    passed: bool
    max_error: float
    tolerance: float
    counts_equal_numba: bool
    code_mismatch: float
    detail: str

    def __post_init__(self) -> None:
        if not (self.tolerance > 0 and 0.0 <= self.code_mismatch <= 1.0):
            raise ParameterError(f"inconsistent check result {self}")


def tolerance(v: torch.Tensor) -> float:
    """Allowed ``max |out - ref|`` for values ``v`` (see the module docstring)."""
    scale = float(v.abs().max()) if v.numel() else 1.0
    return max(scale, 1e-30) * (2.0**-6 if v.dtype == torch.bfloat16 else 1e-4)


def _gpu_codes(q, k, v, lsh, params, causal, path):
    """(out, counts, query codes, key codes) of a Triton path, the codes (ell, N) int64 on the CPU."""
    triton_path = load_triton()
    if path in ("auto", "dense") and triton_path.dense_eligible(lsh, params, q.shape[1]) and (
            not causal or triton_path.DENSE_CAUSAL):
        out, counts, qid, kid = triton_path.dense_attention(q, k, v, lsh, params, causal, store_ids=True)
        table = torch.tensor(triton_path.pattern_codes(params))
        rows = torch.arange(lsh.ell)[:, None]
        return out, counts, table[rows, qid.long().cpu()], table[rows, kid.long().cpu()]
    qc = triton_path.triton_codes(q, lsh, params, (0, lsh.ell)).cpu()
    kc = triton_path.triton_codes(k, lsh, params, (0, lsh.ell)).cpu()
    return None, None, qc, kc


def check_path(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lsh: LSHConfig, seed: int = 0,
               causal: bool = False, path: str = "auto", max_code_mismatch: float = 1e-3) -> CheckResult:
    """Compare ``anna_attention_gpu(..., path=path)`` with the numba kernels (see the module docstring)."""
    out, counts = anna_attention_gpu(q, k, v, lsh, seed, causal, path=path)
    as_np = [x.detach().to(torch.float32).cpu().numpy() for x in (q, k, v)]
    ref_out, ref_counts = anna_attention(*as_np, lsh, seed, causal)
    out_np = out.to(torch.float32).cpu().numpy()
    counts_np = counts.cpu().numpy()
    tol = tolerance(v)
    error = float(np.abs(out_np - ref_out).max()) if out_np.size else 0.0
    same_counts = bool((counts_np == ref_counts).all())
    if same_counts and error <= tol:
        return CheckResult(path, True, error, tol, True, 0.0, "matches numba")
    if path == "torch":
        return CheckResult(path, False, error, tol, same_counts, 0.0, "torch path differs from numba")
    params = lsh.family.sample(q.shape[1], lsh.z, lsh.ell, seed)
    own_out, own_counts, qc, kc = _gpu_codes(q, k, v, lsh, params, causal, path)
    if own_out is not None:  # the dense kernels' debug run must reproduce the timed run
        if not (torch.equal(own_counts, counts) and torch.allclose(own_out.float(), out.float(), atol=tol, rtol=0)):
            return CheckResult(path, False, error, tol, same_counts, 0.0, "id-storing run differs")
    nq = [lsh.family.hash(x, params, table_major=True).view(np.int64) for x in as_np[:2]]
    mismatch = float(np.mean(np.concatenate([(qc.numpy() != nq[0]).ravel(), (kc.numpy() != nq[1]).ravel()])))
    acc, rc = torch_path.attention_from_codes(kc, qc, torch.from_numpy(as_np[2]), causal)
    ref2 = torch_path.finish(acc, rc, torch.float64).numpy()
    error2 = float(np.abs(out_np - ref2).max())
    passed = bool((counts_np == rc.numpy()).all()) and error2 <= tol and mismatch <= max_code_mismatch
    detail = f"own codes: error {error2:.3g}, {mismatch:.2%} codes differ from numba (rounding ties)"
    return CheckResult(path, passed, error2, tol, same_counts, mismatch, detail)
