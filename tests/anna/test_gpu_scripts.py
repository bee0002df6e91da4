"""scripts/gpu_tune.py and scripts/gpu_compile_report.py on the CPU (they need triton, which CI does not install)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the GPU scripts need torch")
if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed (CI does not install the gpu extra)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra) -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + sys.path), **extra)


def _interpreter_runs_kernels() -> bool:
    import triton

    return tuple(int(part) for part in triton.__version__.split(".")[:2]) >= (3, 9)


@pytest.mark.skipif(not _interpreter_runs_kernels(), reason="Triton's interpreter before 3.9 cannot run the kernels "
                    "(3.6 fails to use a scalar argument as a range bound; 3.9 runs them)")
def test_gpu_tune_checks_each_configuration_before_timing_it(tmp_path):
    out = tmp_path / "tune.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_tune.py"), "--smoke", "--out", str(out),
                           "--configs", "default,causal32"], env=_env(TRITON_INTERPRET="1"), capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"default", "causal32"}
    for entry in results.values():
        assert entry["checks"] == {"false": True, "true": True}, entry  # JSON keys of the causal flag
        assert {"plain 2^8", "causal 2^8"} <= set(entry["times_ms"]) and "error" not in entry
    assert results["causal32"]["tuning"]["causal_block"] == 32


def _has_ptxas() -> bool:
    import triton

    return (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists()


@pytest.mark.skipif(not _has_ptxas(), reason="this triton has no NVIDIA backend (ptxas) to compile for sm_90")
def test_compile_report_sizes_every_dense_kernel_for_hopper():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_compile_report.py"), "--tuning",
                           "query_block=64"], env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("_dense")}
    assert set(lines) == {"_dense_key_sums", "_dense_query", "_dense_causal"}
    for line in lines.values():
        registers = int(line.split("registers ")[1].split(",")[0])
        shared = int(line.split("shared ")[1].split()[0])
        assert 16 <= registers <= 255 and shared > 0, line
