"""``anna_attention`` on a GPU: validation, paths, numpy / torch in and out.

Paths (``path=``):

* ``"dense"`` -- the fused Triton kernels of :mod:`anna.gpu.triton_path` (hyperplanes, ``z <= 8``):
  hashing, bucket sums and the query side in registers, no per-row intermediates in memory;
* ``"general"`` -- Triton hashing to 64-bit codes, then bucketing by sort in torch
  (:mod:`anna.gpu.torch_path`): any family and ``z``, causal or not;
* ``"torch"`` -- plain torch throughout (the baseline; also runs on the CPU);
* ``"auto"`` (default) -- ``"dense"`` where it applies, else ``"general"``.

Every path computes :func:`anna.anna_attention`'s definition: ``out_i = sum_u S_u(i) / sum_u
C_u(i)`` over the tables u, with ``S_u(i)`` / ``C_u(i)`` the value sum / size of query i's
bucket (keys ``j <= i`` when causal), duplicates across tables counted once per table, and the
zero row with count 0 when nothing collides. Hash parameters are drawn on the CPU by
``lsh.family.sample(m, z, ell, seed)``, the same draw as the numba kernels.

Precision: inputs float32 or bfloat16 (float64 is computed in float32, float16 is refused);
accumulation is float32 (float64 for the causal prefix sums of the general and torch paths);
the output has ``v``'s dtype.
"""
from __future__ import annotations

import functools

import numpy as np

from .._validate import check_float_matrix, normalize_seed
from ..errors import DeviceError, NonFiniteError, ParameterError, ShapeError
from ..lsh import LSHConfig

try:
    import torch
except ImportError as error:  # pragma: no cover - exercised only without torch
    raise DeviceError("anna.gpu needs torch (pip install 'anna-mpc[gpu]' and a CUDA build of torch)") from error

from . import torch_path

__all__ = ["anna_attention_gpu", "PATHS", "resolve_device", "load_triton"]

PATHS = ("auto", "dense", "general", "torch")
_TORCH_DTYPES = (torch.float32, torch.bfloat16, torch.float64)
_CHUNK_ELEMENTS = 2**25  # tables x rows of codes held at once by the general path


def load_triton():
    """The :mod:`anna.gpu.triton_path` module; :class:`~anna.errors.DeviceError` if triton is missing."""
    try:
        from . import triton_path
    except ImportError as error:
        raise DeviceError(f"the Triton kernels need triton ({error}); pip install 'anna-mpc[gpu]'") from error
    return triton_path


def resolve_device(device: object) -> "torch.device":
    """``device`` as a :class:`torch.device` that can run kernels, else a typed error.

    CUDA must be available for ``"cuda"``; the CPU is accepted here (the torch path, and the
    Triton kernels under ``TRITON_INTERPRET=1``).

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device(3)
    Traceback (most recent call last):
    ...
    anna.errors.ParameterError: device must be a string such as 'cuda' or a torch.device, got 3
    """
    if not isinstance(device, (str, torch.device)):
        raise ParameterError(f"device must be a string such as 'cuda' or a torch.device, got {device!r}")
    try:
        device = torch.device(device)
    except RuntimeError as error:
        raise ParameterError(f"device {device!r} is not a torch device: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device={str(device)!r} but CUDA is not available (torch {torch.__version__}, "
                          f"built with CUDA {torch.version.cuda}); use anna.anna_attention on the CPU")
    if device.type not in ("cuda", "cpu"):
        raise ParameterError(f"anna.gpu runs on 'cuda' (or 'cpu' for checks), got {str(device)!r}")
    if device.type == "cuda" and device.index is None:  # 'cuda' is the current device: compare as cuda:N
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def _as_tensor(name: str, x: object, device) -> "torch.Tensor":
    if isinstance(x, np.ndarray):
        x = check_float_matrix(name, x, finite=False)
        return torch.from_numpy(x).to(device=device, dtype=torch.float32)
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")
    if x.ndim != 2:
        raise ShapeError(f"{name} must have rank 2, got shape {tuple(x.shape)}")
    if x.dtype not in _TORCH_DTYPES:
        raise ShapeError(f"{name} must be float32, bfloat16 or float64, got {x.dtype}")
    if x.device != device:
        raise ShapeError(f"{name} is on {x.device}, expected {device} (every input on one device)")
    if x.dtype == torch.float64:
        x = x.to(torch.float32)
    return x.contiguous()


def anna_attention_gpu(q, k, v, lsh: LSHConfig, seed: int | None = 0, causal: bool = False, *,
                       device: object = None, path: str = "auto", check_finite: bool = True):
    """ANNA attention (Algorithm 2) on a GPU; see the module docstring for the paths.

    Parameters
    ----------
    q, k, v : numpy arrays or torch tensors, (N_q, m), (N_k, m), (N_k, d_v)
        All numpy (copied to ``device``, default ``"cuda"``; results come back as numpy) or all
        torch tensors on one device (results stay there, as tensors).
    lsh, seed, causal
        As :func:`anna.anna_attention` (``causal`` needs ``N_q == N_k``).
    device : str or torch.device, optional
        Where numpy inputs go; for tensors, their device (a different one is refused).
    path : {"auto", "dense", "general", "torch"}
    check_finite : bool
        Refuse NaN / inf inputs and outputs (a pass over each; benchmarks turn it off).

    Returns
    -------
    out : (N_q, d_v), ``v``'s dtype
    counts : (N_q,) int64, the collisions ``sum_j c_ij``

    Raises
    ------
    DeviceError
        ``"cuda"`` without a GPU, or no triton for a Triton path.

    Examples
    --------
    >>> import numpy as np
    >>> from anna import Hyperplane, LSHConfig, anna_attention
    >>> x = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)
    >>> out, counts = anna_attention_gpu(x, x, x, LSHConfig(Hyperplane(), 4, 8), path="torch", device="cpu")
    >>> bool((counts == anna_attention(x, x, x, LSHConfig(Hyperplane(), 4, 8))[1]).all())
    True
    >>> out, counts = anna_attention_gpu(x, x, x, LSHConfig(Hyperplane(), 4, 8))  # doctest: +SKIP
    """
    if path not in PATHS:
        raise ParameterError(f"path must be one of {PATHS}, got {path!r}")
    if not isinstance(lsh, LSHConfig):
        raise ParameterError(f"lsh must be an LSHConfig, got {type(lsh).__name__}")
    if not isinstance(causal, (bool, np.bool_)) or not isinstance(check_finite, (bool, np.bool_)):
        raise ParameterError(f"causal and check_finite must be bools, got {causal!r}, {check_finite!r}")
    seed = normalize_seed(seed)
    kinds = {isinstance(x, np.ndarray) for x in (q, k, v)}
    numpy_in = kinds == {True}
    if numpy_in:
        target = resolve_device("cuda" if device is None else device)
    elif all(isinstance(x, torch.Tensor) for x in (q, k, v)):
        target = resolve_device(v.device)
        if device is not None and resolve_device(device) != target:
            raise ParameterError(f"device={device!r} but the tensors are on {target}")
    else:
        raise ShapeError("q, k and v must be all numpy arrays or all torch tensors")
    out_dtype = (torch.float64 if v.dtype == np.float64 else torch.float32) if numpy_in else v.dtype
    q, k, v = (_as_tensor(name, x, target) for name, x in (("q", q), ("k", k), ("v", v)))
    if q.shape[1] != k.shape[1] or q.shape[1] == 0:
        raise ShapeError(f"q and k must have the same positive number of columns, got {tuple(q.shape)} and "
                         f"{tuple(k.shape)}")
    if k.shape[0] != v.shape[0]:
        raise ShapeError(f"k and v must have the same number of rows, got {k.shape[0]} and {v.shape[0]}")
    if causal and q.shape[0] != k.shape[0]:
        raise ShapeError(f"causal attention needs as many queries as keys, got {q.shape[0]} and {k.shape[0]}")
    if check_finite:
        for name, x in (("q", q), ("k", k), ("v", v)):
            if not bool(torch.isfinite(x).all()):
                raise NonFiniteError(f"{name} contains NaN or inf")
    out, counts = _run(q, k, v, lsh, seed, bool(causal), path)
    if check_finite and not bool(torch.isfinite(out).all()):
        raise NonFiniteError("anna_attention_gpu overflowed to NaN or inf: scale the inputs down")
    out = out.to(out_dtype)
    if numpy_in:
        return out.cpu().numpy(), counts.cpu().numpy()
    return out, counts


def _run(q, k, v, lsh: LSHConfig, seed: int, causal: bool, path: str):
    n_q, n_k = q.shape[0], k.shape[0]
    if n_q == 0 or n_k == 0:
        return (torch.zeros((n_q, v.shape[1]), dtype=v.dtype, device=v.device),
                torch.zeros(n_q, dtype=torch.int64, device=v.device))
    if path == "torch":
        return torch_path.torch_algorithm1(q, k, v, lsh, seed, causal)
    triton_path = load_triton()
    if v.device.type == "cpu" and not triton_path.INTERPRET:
        raise DeviceError("the Triton kernels run on 'cuda' (or on the CPU under TRITON_INTERPRET=1); "
                          "use path='torch' or anna.anna_attention on the CPU")
    params, dense = _sample(lsh, q.shape[1], seed)
    if path == "dense" and not dense:
        raise ParameterError(f"path='dense' needs hyperplanes with z <= {triton_path.MAX_DENSE_Z} and m <= "
                             f"{triton_path.MAX_DIM}, got {lsh} with m = {q.shape[1]}")
    if path == "dense" and causal and not triton_path.DENSE_CAUSAL:
        raise ParameterError("the causal dense kernel is switched off (ANNA_DENSE_CAUSAL=0): use "
                             "path='general' or 'auto' for causal attention")
    if path in ("auto", "dense") and dense and (not causal or triton_path.DENSE_CAUSAL):
        return triton_path.dense_attention(q, k, v, lsh, params, causal)
    return general_attention(q, k, v, lsh, params, causal)


@functools.lru_cache(maxsize=8)
def _sample(lsh: LSHConfig, dim: int, seed: int):
    """The hash parameters of ``(lsh, dim, seed)`` and whether the dense path applies, cached (a few
    entries): drawing them on the host took about 1 ms per call, as long as the kernels at 2**20."""
    params = lsh.family.sample(dim, lsh.z, lsh.ell, seed)
    return params, load_triton().dense_eligible(lsh, params, dim)


def general_attention(q, k, v, lsh: LSHConfig, params, causal: bool):
    """Triton codes (torch codes where the kernels do not apply), bucketed by :mod:`anna.gpu.torch_path`."""
    triton_path = load_triton()
    padded = getattr(params, "padded_dim", q.shape[1])
    hash_rows = triton_path.triton_codes if max(q.shape[1], padded) <= triton_path.MAX_DIM else None
    acc = counts = None
    step = max(1, _CHUNK_ELEMENTS // max(q.shape[0], k.shape[0]))
    for u0 in range(0, lsh.ell, step):
        tables = (u0, min(lsh.ell, u0 + step))
        if hash_rows is None:
            key_codes, query_codes = torch_path.torch_codes(k, lsh, params, tables), torch_path.torch_codes(
                q, lsh, params, tables)
        else:
            key_codes, query_codes = hash_rows(k, lsh, params, tables), hash_rows(q, lsh, params, tables)
        acc, counts = torch_path.attention_from_codes(key_codes, query_codes, v, causal, acc, counts)
    return torch_path.finish(acc, counts, v.dtype), counts
