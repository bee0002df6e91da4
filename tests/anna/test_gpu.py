"""anna.gpu: the Triton kernels and the plain torch Algorithm 1 against the numba kernels.

Three groups, each skipped with its reason when what it needs is absent:

* torch on the CPU (needs torch): the plain torch Algorithm 1 and argument checking;
* Triton's interpreter (needs triton importable; CI does not install it): the kernels run on the
  CPU in a subprocess with ``TRITON_INTERPRET=1`` on tiny inputs;
* CUDA (needs a GPU): every path, float32 and bfloat16, causal or not, on fresh random inputs.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anna import CrossPolytope, E2LSH, Hyperplane, LSHConfig, anna_attention
from anna.errors import DeviceError, ParameterError, ShapeError

torch = pytest.importorskip("torch", reason="anna.gpu needs torch (the train / gpu extras)")

from anna.gpu import anna_attention_gpu, capture_attention, torch_algorithm1  # noqa: E402
from anna.gpu.attention import load_triton  # noqa: E402
from anna.gpu.check import check_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device: the GPU kernels are checked on a GPU only")
HAS_TRITON = importlib.util.find_spec("triton") is not None

# (family, z, ell, causal, n_q, n_k, m, d_v): shared by the torch, interpreter and GPU tests
CASES = [
    (Hyperplane(), 4, 8, False, 97, 97, 16, 8),
    (Hyperplane(), 4, 8, True, 150, 150, 16, 8),
    (Hyperplane(), 6, 9, False, 70, 90, 5, 3),   # several table chunks, odd widths
    (Hyperplane(), 3, 3, True, 130, 130, 20, 17),
    (E2LSH(2.0), 2, 3, False, 50, 60, 8, 4),
    (E2LSH(2.0), 2, 3, True, 70, 70, 8, 4),
    (CrossPolytope(), 2, 3, False, 50, 60, 8, 4),
    (CrossPolytope(), 1, 3, True, 70, 70, 16, 4),
]


def _inputs(rng, n_q, n_k, m, d_v):
    return (rng.standard_normal((n_q, m)).astype(np.float32), rng.standard_normal((n_k, m)).astype(np.float32),
            rng.standard_normal((n_k, d_v)).astype(np.float32))


def _case_id(case):
    family, z, ell, causal = case[:4]
    return f"{family.name}-z{z}-ell{ell}-{'causal' if causal else 'full'}"


# ------------------------------------------------------------------------------ torch (CPU)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_plain_torch_algorithm1_matches_numba_counts_exactly(case):
    family, z, ell, causal, n_q, n_k, m, d_v = case
    q, k, v = _inputs(np.random.default_rng(n_q * 7 + z), n_q, n_k, m, d_v)
    lsh = LSHConfig(family, z, ell)
    out, counts = torch_algorithm1(*(torch.from_numpy(x) for x in (q, k, v)), lsh, seed=11, causal=causal)
    ref_out, ref_counts = anna_attention(q, k, v, lsh, seed=11, causal=causal)
    np.testing.assert_array_equal(counts.numpy(), ref_counts)
    np.testing.assert_allclose(out.numpy(), ref_out, atol=1e-5, rtol=0)


def test_plain_torch_gives_empty_queries_the_zero_row():
    k = np.array([[1.0, 0.0]], dtype=np.float32)
    q = -k  # the opposite side of every hyperplane: no collision
    out, counts = torch_algorithm1(torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(k),
                                   LSHConfig(Hyperplane(), 1, 4), seed=0)
    assert counts.tolist() == [0] and out.tolist() == [[0.0, 0.0]]


def test_torch_path_returns_tensors_for_tensors_and_arrays_for_arrays():
    q, k, v = _inputs(np.random.default_rng(3), 20, 30, 8, 5)
    lsh = LSHConfig(Hyperplane(), 2, 3)
    out, counts = anna_attention_gpu(*(torch.from_numpy(x) for x in (q, k, v)), lsh, path="torch")
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and counts.dtype == torch.int64
    out_np, counts_np = anna_attention_gpu(q, k, v.astype(np.float64), lsh, path="torch", device="cpu")
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float64
    np.testing.assert_array_equal(counts_np, counts.numpy())


@pytest.mark.skipif(CUDA, reason="checks the error raised when CUDA is absent")
def test_cuda_without_a_gpu_raises_device_error():
    x = np.zeros((4, 3), dtype=np.float32)
    with pytest.raises(DeviceError, match="CUDA is not available"):
        anna_attention(x, x, x, LSHConfig(Hyperplane(), 1, 1), device="cuda")


@pytest.mark.skipif(HAS_TRITON, reason="checks the error raised when the Triton kernels cannot run on the CPU")
def test_triton_paths_on_the_cpu_need_triton_or_its_interpreter():
    x = torch.zeros((4, 3))
    with pytest.raises(DeviceError, match="triton"):
        anna_attention_gpu(x, x, x, LSHConfig(Hyperplane(), 1, 1), path="dense")


@pytest.mark.parametrize("call, error, match", [
    (lambda x: anna_attention_gpu(x, x, x, LSHConfig(Hyperplane(), 1, 1), path="fast"), ParameterError, "path"),
    (lambda x: anna_attention_gpu(x, x.numpy(), x, LSHConfig(Hyperplane(), 1, 1), path="torch"), ShapeError,
     "all numpy"),
    (lambda x: anna_attention_gpu(x, x[:2], x[:2], LSHConfig(Hyperplane(), 1, 1), causal=True, path="torch"),
     ShapeError, "as many queries"),
    (lambda x: anna_attention_gpu(x, x, x.to(torch.float16), LSHConfig(Hyperplane(), 1, 1), path="torch"),
     ShapeError, "float32, bfloat16"),
    (lambda x: anna_attention_gpu(x, x, x, (1, 2), path="torch"), ParameterError, "LSHConfig"),
    (lambda x: anna_attention_gpu(x * float("nan"), x, x, LSHConfig(Hyperplane(), 1, 1), path="torch"),
     ValueError, "NaN"),
    (lambda x: anna_attention(x.numpy(), x.numpy(), x.numpy(), LSHConfig(Hyperplane(), 1, 1), return_stats=True,
                              device="cuda:0"), ParameterError, "return_stats"),
])
def test_bad_arguments_raise_typed_errors_naming_them(call, error, match):
    with pytest.raises(error, match=match):
        call(torch.ones((4, 3)))


@pytest.mark.parametrize("make, error, match", [
    (lambda: (np.ones((4, 3), np.float32),) * 3, ShapeError, "torch tensors"),
    (lambda: (torch.ones((4, 3)),) * 3, DeviceError, "CUDA device"),
    (lambda: (torch.ones((4, 3), dtype=torch.float64),) * 3, ShapeError, "float32 or bfloat16"),
    (lambda: (torch.ones((3, 4)).T,) * 3, ShapeError, "contiguous"),
    (lambda: (torch.ones(4),) * 3, ShapeError, "contiguous matrix"),
])
def test_capture_attention_refuses_what_a_cuda_graph_cannot_read(make, error, match):
    with pytest.raises(error, match=match):
        capture_attention(*make(), LSHConfig(Hyperplane(), 2, 2))


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (CI does not install the gpu extra)")
@pytest.mark.parametrize("fields, match", [
    ({"key_block": 48}, "powers of two"),
    ({"query_warps": 3}, "query_warps"),
    ({"query_programs_per_sm": -1}, "query_programs_per_sm"),
    ({"prefetch": 1}, "bool prefetch"),
    ({"stages": 0}, "stages"),
    ({"segment": 8}, "segment"),
])
def test_dense_tuning_refuses_bad_launch_parameters(fields, match):
    with pytest.raises(ParameterError, match=match):
        load_triton().DenseTuning(**fields)


# --------------------------------------------------------------------- Triton interpreter
_INTERPRETER_SCRIPT = r"""
import json, sys
import numpy as np, torch
from anna import CrossPolytope, E2LSH, Hyperplane, LSHConfig
from anna.gpu.check import check_path
from anna.gpu import triton_path
assert triton_path.INTERPRET
cases = json.loads(sys.argv[1])
families = {"hyperplane": Hyperplane(), "e2lsh": E2LSH(2.0), "cross_polytope": CrossPolytope()}
results = []
for family, z, ell, causal, n, m, d_v, dtype, path in cases:
    rng = np.random.default_rng(n * 31 + z)
    q, k, v = (torch.from_numpy(rng.standard_normal((n, d)).astype(np.float32)).to(getattr(torch, dtype))
               for d in (m, m, d_v))
    r = check_path(q, k, v, LSHConfig(families[family], z, ell), seed=5, causal=causal, path=path)
    results.append([r.passed, r.max_error, r.detail])
# the causal kernel across several segments (segment = 64 rows), checked against numba directly
from anna import anna_attention
rng = np.random.default_rng(1)
q, k, v = (torch.from_numpy(rng.standard_normal((300, 16)).astype(np.float32)) for _ in range(3))
lsh = LSHConfig(Hyperplane(), 5, 12)
out, counts = triton_path.dense_attention(q, k, v, lsh, lsh.family.sample(16, 5, 12, 3), True, segment=64)
ref, ref_counts = anna_attention(q.numpy(), k.numpy(), v.numpy(), lsh, 3, causal=True)
results.append([bool((counts.numpy() == ref_counts).all()) and float(np.abs(out.numpy() - ref).max()) < 1e-5,
                float(np.abs(out.numpy() - ref).max()), "segments"])
# persistent query programs (several blocks each, the last ones empty), prefetching, pipelining
tuned = triton_path.DenseTuning(key_block=16, query_block=16, causal_block=32, query_programs_per_sm=1,
                                prefetch=True, stages=2)
for causal in (False, True):
    out, counts = triton_path.dense_attention(q, k, v, lsh, lsh.family.sample(16, 5, 12, 3), causal, tuning=tuned)
    ref, ref_counts = anna_attention(q.numpy(), k.numpy(), v.numpy(), lsh, 3, causal=causal)
    results.append([bool((counts.numpy() == ref_counts).all()) and float(np.abs(out.numpy() - ref).max()) < 1e-5,
                    float(np.abs(out.numpy() - ref).max()), f"tuned causal={causal}"])
print(json.dumps(results))
"""


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (CI does not install the gpu extra)")
@pytest.mark.skipif(CUDA, reason="on a CUDA machine the kernels are checked on the GPU itself (below); the "
                                 "interpreter of the Triton there (3.6) cannot run them")
@pytest.mark.skipif(HAS_TRITON and tuple(int(p) for p in importlib.metadata.version("triton").split(".")[:2]) < (3, 9),
                    reason="Triton's interpreter before 3.9 cannot run the kernels (3.6 fails to use a scalar "
                           "argument as a range bound; 3.9 runs them)")
def test_triton_kernels_match_numba_in_the_interpreter():
    cases = [["hyperplane", 4, 8, False, 97, 16, 8, "float32", "dense"],
             ["hyperplane", 4, 8, True, 150, 16, 8, "bfloat16", "dense"],
             ["hyperplane", 6, 9, False, 90, 5, 3, "float32", "dense"],
             ["hyperplane", 7, 3, True, 130, 20, 17, "float32", "dense"],
             ["hyperplane", 4, 8, False, 80, 16, 8, "bfloat16", "general"],
             ["e2lsh", 2, 3, True, 70, 8, 4, "float32", "general"],
             ["cross_polytope", 2, 3, False, 60, 8, 4, "bfloat16", "general"]]
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([str(ROOT)] + sys.path))
    done = subprocess.run([sys.executable, "-c", _INTERPRETER_SCRIPT, json.dumps(cases)], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == len(cases) + 3
    failed = [(case, r) for case, r in zip(cases + [["segments"], ["tuned"], ["tuned causal"]], results) if not r[0]]
    assert not failed, failed


# ------------------------------------------------------------------------------------ CUDA
GPU_CASES = [  # (family, z, ell, causal, n, dtype, path)
    (Hyperplane(), 4, 8, False, 4099, "bfloat16", "dense"),
    (Hyperplane(), 4, 8, False, 4099, "float32", "dense"),
    (Hyperplane(), 4, 8, True, 9001, "bfloat16", "dense"),
    (Hyperplane(), 4, 8, True, 9001, "float32", "dense"),
    (Hyperplane(), 8, 3, False, 3000, "float32", "dense"),
    (Hyperplane(), 6, 9, True, 5000, "bfloat16", "dense"),
    (Hyperplane(), 2, 40, False, 2000, "float32", "dense"),
    (Hyperplane(), 12, 4, False, 3000, "float32", "auto"),  # too many bits for dense: general
    (E2LSH(), 3, 6, False, 3000, "bfloat16", "general"),
    (E2LSH(), 3, 6, True, 3000, "float32", "general"),
    (CrossPolytope(), 1, 8, True, 2000, "float32", "general"),
    (CrossPolytope(), 2, 5, False, 2000, "bfloat16", "general"),
]


@needs_cuda
@pytest.mark.parametrize("case", GPU_CASES, ids=lambda c: f"{c[0].name}-z{c[1]}-ell{c[2]}-{c[3]}-{c[5]}-{c[6]}")
@pytest.mark.parametrize("m", [64, 24])
def test_gpu_paths_match_numba_on_fresh_random_inputs(case, m):
    family, z, ell, causal, n, dtype, path = case
    if causal and path == "dense" and not load_triton().DENSE_CAUSAL:
        with pytest.raises(ParameterError, match="switched off"):
            anna_attention_gpu(*(torch.zeros((4, m), device="cuda") for _ in range(3)), LSHConfig(family, z, ell),
                               causal=True, path="dense")
        path = "auto"  # what causal attention takes on a GPU while the dense kernel is off
    rng = np.random.default_rng()  # fresh inputs every run; the seed is printed on failure
    seed = int(rng.integers(2**31))
    data = np.random.default_rng(seed)
    q, k, v = (torch.from_numpy(data.standard_normal((n, d)).astype(np.float32)).to("cuda", getattr(torch, dtype))
               for d in (m, m, 64))
    result = check_path(q, k, v, LSHConfig(family, z, ell), seed=seed % 1000, causal=causal, path=path)
    assert result.passed, (seed, result)


@needs_cuda
def test_gpu_tensors_stay_on_the_gpu_and_numpy_comes_back_as_numpy():
    x = torch.randn((500, 32), device="cuda", dtype=torch.bfloat16)
    out, counts = anna_attention(x, x, x, LSHConfig(Hyperplane(), 4, 8), device="cuda")
    assert out.device.type == "cuda" and out.dtype == torch.bfloat16 and counts.device.type == "cuda"
    assert bool((counts >= 8).all())  # every row collides with its own copy in every table
    xn = x.float().cpu().numpy()
    out_np, counts_np = anna_attention(xn, xn, xn, LSHConfig(Hyperplane(), 4, 8), device="cuda")
    assert isinstance(out_np, np.ndarray) and counts_np.dtype == np.int64


@needs_cuda
def test_gpu_dense_kernel_is_deterministic_run_to_run():
    q, k, v = (torch.randn((20000, 64), device="cuda") for _ in range(3))
    lsh = LSHConfig(Hyperplane(), 4, 8)
    first = anna_attention_gpu(q, k, v, lsh, 1)
    second = anna_attention_gpu(q, k, v, lsh, 1)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


@needs_cuda
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_captured_attention_replays_equal_eager_calls_on_new_inputs(causal, dtype):
    import gc

    triton_path = load_triton()
    lsh = LSHConfig(Hyperplane(), 4, 8)
    q, k, v = (torch.randn((5000, 64), device="cuda").to(dtype) for _ in range(3))
    captured = capture_attention(q, k, v, lsh, seed=4, causal=causal)
    out, counts = captured.replay()
    eager = anna_attention_gpu(q, k, v, lsh, 4, causal, path="dense")
    assert torch.equal(out, eager[0]) and torch.equal(counts, eager[1])
    triton_path._OPERANDS.clear()  # the graph keeps the operands it reads alive itself
    gc.collect()
    for x in (q, k, v):
        x.copy_(torch.randn_like(x))
    junk = [torch.randn((1 << 20,), device="cuda") for _ in range(8)]  # reuse freed memory, if any
    out, counts = captured.replay()
    eager = anna_attention_gpu(q, k, v, lsh, 4, causal, path="dense")
    assert torch.equal(out, eager[0]) and torch.equal(counts, eager[1]), "replay differs on new inputs"
    assert captured.replay()[0] is out and "causal=" in repr(captured)
    del junk


@needs_cuda
@pytest.mark.parametrize("fields", [
    {"query_programs_per_sm": 2, "stages": 2},
    {"query_programs_per_sm": 2, "query_block": 64, "prefetch": True, "stages": 2},
    {"prefetch": True, "stages": 2},
    {"query_block": 64, "causal_block": 32},
], ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
def test_dense_launch_variants_match_numba_on_the_gpu(fields, monkeypatch):
    triton_path = load_triton()
    monkeypatch.setattr(triton_path, "TUNING", triton_path.DenseTuning(**fields))
    seed = int(np.random.default_rng().integers(2**31))
    data = np.random.default_rng(seed)
    n = 70001 if fields.get("query_programs_per_sm") else 7001  # persistent: several blocks per program
    for causal, dtype in ((False, torch.bfloat16), (False, torch.float32), (True, torch.bfloat16)):
        q, k, v = (torch.from_numpy(data.standard_normal((n, 64)).astype(np.float32)).to("cuda", dtype)
                   for _ in range(3))
        result = check_path(q, k, v, LSHConfig(Hyperplane(), 4, 8), seed=seed % 997, causal=causal, path="dense")
        assert result.passed, (fields, causal, dtype, seed, result)
