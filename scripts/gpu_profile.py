"""Where the time of one dense ANNA call goes on a GPU (issue #16 diagnostics).

For each size: the median CUDA-event time of a whole call, the median host time to enqueue it (no
synchronisation: when it is close to the event time, the host is the bottleneck), the device time
of every kernel under ``torch.profiler`` (per call), and the registers / spills of every compiled
Triton kernel. Writes a JSON record to ``--out``.

    python scripts/gpu_profile.py --out profile.json [--sizes 20,22,24] [--causal-sizes 17,20]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))


def kernel_resources() -> dict:
    """name -> list of {regs, spills, shared} of every compiled specialisation (Triton 3.x caches)."""
    from anna.gpu import triton_path

    out = {}
    for name in dir(triton_path):
        fn = getattr(triton_path, name)
        caches = getattr(fn, "device_caches", None)
        if caches is None:
            continue
        rows = []
        for entry in caches.values():
            for kernel in entry[0].values():
                try:
                    kernel._init_handles()
                    rows.append({"regs": kernel.n_regs, "spills": kernel.n_spills,
                                 "shared": getattr(kernel.metadata, "shared", None),
                                 "warps": getattr(kernel.metadata, "num_warps", None)})
                except Exception as error:  # noqa: BLE001 - diagnostics only
                    rows.append({"error": repr(error)})
        if rows:
            out[name] = rows
    return out


def profile_call(fn, calls: int = 5) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    per = defaultdict(float)
    for event in prof.key_averages():
        device_us = getattr(event, "device_time_total", None)
        if device_us is None:
            device_us = getattr(event, "cuda_time_total", 0.0)
        if device_us:
            per[event.key] += device_us / calls
    return dict(sorted(per.items(), key=lambda kv: -kv[1]))


def host_profile(fn, calls: int) -> list[str]:
    """cProfile of ``calls`` eager calls (synchronised after each): the top functions by cumulative
    time, per call, as text rows."""
    import cProfile
    import io
    import pstats

    import torch

    profiler = cProfile.Profile()
    for _ in range(calls):
        profiler.enable()
        fn()
        profiler.disable()
        torch.cuda.synchronize()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(40)
    rows = [line for line in text.getvalue().splitlines() if line.strip()]
    return [f"(per {calls} calls) {row}" if i == 0 else row for i, row in enumerate(rows)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sizes", default="20,22,24")
    parser.add_argument("--causal-sizes", default="17,20,24")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--cprofile", type=int, default=0, metavar="CALLS",
                        help="also run cProfile over this many eager calls per size (host work per function)")
    args = parser.parse_args(argv)
    import torch

    from anna import Hyperplane, LSHConfig
    from anna.gpu import anna_attention_gpu
    from bench_gpu import floor_bytes, time_call

    device = torch.device("cuda")
    dtype = getattr(torch, args.dtype)
    lsh = LSHConfig(Hyperplane(), 4, 8)
    bandwidth = 4.23e12
    record = {"device": torch.cuda.get_device_name(device), "dtype": args.dtype, "points": []}
    plan = [(False, int(e)) for e in args.sizes.split(",") if e] + [
        (True, int(e)) for e in args.causal_sizes.split(",") if e]
    for causal, e in plan:
        n = 2**e
        gen = torch.Generator(device=device).manual_seed(e)
        q, k, v = (torch.randn((n, 64), generator=gen, device=device).to(dtype) for _ in range(3))

        def call():
            return anna_attention_gpu(q, k, v, lsh, 0, causal, path="dense", check_finite=False)

        seconds, _ = time_call(call, device, 20)
        enqueue = []
        for _ in range(20):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            call()
            enqueue.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
        kernels = profile_call(call)
        host = host_profile(call, args.cprofile) if args.cprofile else None
        floor = floor_bytes(n, dtype.itemsize, dtype.itemsize) / bandwidth
        point = {"n": n, "causal": causal, "event_ms": seconds * 1e3, "floor_ratio": seconds / floor,
                 "enqueue_ms": statistics.median(enqueue) * 1e3, "kernels_us": kernels, "host_profile": host}
        record["points"].append(point)
        top = ", ".join(f"{name[:40]} {us:.0f}" for name, us in list(kernels.items())[:6])
        print(f"{'causal' if causal else 'plain '} 2^{e}: {seconds * 1e3:.3f} ms (x{seconds / floor:.1f} floor), "
              f"enqueue {point['enqueue_ms']:.3f} ms; kernels (us/call): {top}", flush=True)
        if host:
            print("\n".join(f"    {row}" for row in host[:25]), flush=True)
        del q, k, v
        args.out.write_text(json.dumps(record, indent=1))
    record["kernel_resources"] = kernel_resources()
    for name, rows in record["kernel_resources"].items():
        print(name, rows, flush=True)
    args.out.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
