"""Time the dense kernels' launch parameters (:class:`anna.gpu.triton_path.DenseTuning`) on one GPU.

Each configuration is first checked against the numba kernel (bf16, causal and not), then timed
(medians of CUDA events, ``benchmarks/bench_gpu.py``'s ``time_call``) at a few N, as replays of a
CUDA graph (:func:`anna.gpu.capture_attention`: the kernels' time without the host's launch work);
the table and a JSON record (``--out``) say which configuration to make the default.

    python scripts/gpu_tune.py --out tune.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

CONFIGS = {  # name -> DenseTuning fields (session 6: version 3 of the kernels)
    "default": {},
    "stages2": {"stages": 2},
    "stages1": {"stages": 1},
    "prefetch": {"prefetch": True},
    "kps2": {"key_programs_per_sm": 2},
    "q64": {"query_block": 64},
    "qw8": {"query_warps": 8},
    "persist2_s2": {"query_programs_per_sm": 2, "stages": 2},
    "persist2_q64_s2": {"query_programs_per_sm": 2, "query_block": 64, "stages": 2},
    "persist2_q64_prefetch_s2": {"query_programs_per_sm": 2, "query_block": 64, "prefetch": True, "stages": 2},
    "persist4_q64_prefetch_s2": {"query_programs_per_sm": 4, "query_block": 64, "prefetch": True, "stages": 2},
    "causal32": {"causal_block": 32},
    "causal32_s2": {"causal_block": 32, "stages": 2},
}
SIZES = {False: (20, 22, 24), True: (17, 20, 24)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on any device (TRITON_INTERPRET=1 on a CPU)")
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    from anna import Hyperplane, LSHConfig
    from anna.gpu import triton_path

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sizes = {False: (8,), True: (8,)} if args.smoke else SIZES
    lsh = LSHConfig(Hyperplane(), 4, 8)
    big = max(max(s) for s in sizes.values())
    gen = torch.Generator(device=device).manual_seed(0)
    data = [torch.randn((2**big, 64), generator=gen, device=device).to(torch.bfloat16) for _ in range(3)]
    rng = np.random.default_rng(5)
    small = [torch.from_numpy(rng.standard_normal((300 if args.smoke else 5000, 64)).astype(np.float32)).to(
             device, torch.bfloat16)
             for _ in range(3)]
    bandwidth = 4.23e12  # benchmarks/results/bench_gpu.json (H200 copy, read + write)
    results = {}
    for name in args.configs.split(","):
        tuning = dataclasses.replace(triton_path.DenseTuning(), **CONFIGS[name])
        triton_path.TUNING = tuning
        began = time.perf_counter()
        entry = {"tuning": dataclasses.asdict(tuning), "checks": {}, "times_ms": {}}
        try:
            _run_config(entry, small, data, sizes, lsh, tuning, device, bandwidth)
        except Exception as error:  # noqa: BLE001 - a configuration that cannot launch is recorded, not fatal
            entry["error"] = f"{type(error).__name__}: {error}"
        entry["seconds"] = time.perf_counter() - began
        results[name] = entry
        cells = "  ".join(f"{key} {ms:7.3f} ms (x{ratio:4.1f})" for key, (ms, ratio) in entry["times_ms"].items())
        print(f"{name:12s} checks {entry['checks']}  {cells}  {entry.get('error', '')[:160]}", flush=True)
        name_of = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        args.out.write_text(json.dumps({"device": name_of, "results": results}, indent=1))
    return 0


def _run_config(entry, small, data, sizes, lsh, tuning, device, bandwidth) -> None:
    """Check one configuration against numba, then time it (graph replays on a GPU) into ``entry``."""
    from anna.gpu import capture_attention
    from anna.gpu import triton_path
    from anna.gpu.check import check_path
    from bench_gpu import floor_bytes, time_call

    checks = entry["checks"] = {causal: check_path(*small, lsh, seed=3, causal=causal, path="dense").passed
                                for causal in (False, True)}
    if not all(checks.values()):
        return
    for causal, exps in sizes.items():
        for e in exps:
            q, k, v = (x[:2**e] for x in data)
            if device.type == "cuda":
                call = capture_attention(q, k, v, lsh, 0, causal, tuning=tuning).replay
            else:
                call = lambda: triton_path.dense_attention(  # noqa: E731
                    q, k, v, lsh, lsh.family.sample(64, 4, 8, 0), causal, tuning=tuning)
            seconds, _ = time_call(call, device, 10)
            del call
            floor = floor_bytes(2**e, 2, 2) / bandwidth
            entry["times_ms"][f"{'causal' if causal else 'plain'} 2^{e}"] = (seconds * 1e3, seconds / floor)


if __name__ == "__main__":
    sys.exit(main())
