"""Time the dense kernels' launch parameters (:class:`anna.gpu.triton_path.DenseTuning`) on one GPU.

Each configuration is first checked against the numba kernel (bf16, causal and not), then timed
(medians of CUDA events, ``benchmarks/bench_gpu.py``'s ``time_call``) at a few N; the table and a
JSON record (``--out``) say which configuration to make the default.

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

CONFIGS = {  # name -> DenseTuning fields (the first run's defaults: query_block 64, causal_warps 8)
    "default": {},
    "v2_defaults": {"query_block": 64, "causal_warps": 8},
    "segment4096": {"segment": 4096},
    "q128w4": {"query_block": 128},
    "q128w8": {"query_block": 128, "query_warps": 8},
    "k128w8": {"key_block": 128, "key_warps": 8},
    "kps8": {"key_programs_per_sm": 8},
    "causal_w4": {"causal_warps": 4},
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
    from anna.gpu import anna_attention_gpu
    from anna.gpu import triton_path
    from anna.gpu.check import check_path
    from bench_gpu import floor_bytes, time_call

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
        checks = {causal: check_path(*small, lsh, seed=3, causal=causal, path="dense").passed for causal in (False, True)}
        entry = {"tuning": dataclasses.asdict(tuning), "checks": checks, "times_ms": {}}
        if all(checks.values()):
            for causal, exps in sizes.items():
                for e in exps:
                    q, k, v = (x[:2**e] for x in data)
                    seconds, _ = time_call(lambda: anna_attention_gpu(q, k, v, lsh, 0, causal, path="dense",
                                                                      check_finite=False), device, 10)
                    floor = floor_bytes(2**e, 2, 2) / bandwidth
                    entry["times_ms"][f"{'causal' if causal else 'plain'} 2^{e}"] = (seconds * 1e3, seconds / floor)
        entry["seconds"] = time.perf_counter() - began
        results[name] = entry
        cells = "  ".join(f"{key} {ms:7.3f} ms (x{ratio:4.1f})" for key, (ms, ratio) in entry["times_ms"].items())
        print(f"{name:12s} checks {checks}  {cells}", flush=True)
        name_of = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        args.out.write_text(json.dumps({"device": name_of, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
