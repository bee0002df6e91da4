"""Check, then time, ANNA attention on one GPU against FlashAttention and plain torch Algorithm 1.

    python benchmarks/bench_gpu.py [--quick] [--device cuda] [--out PATH] [--figure PATH] [--budget S]

One command, three phases:

1. **checks** (fail loudly): every timed variant, plus the multi-chunk and general paths, is
   compared with the numba kernels at small N by :func:`anna.gpu.check.check_path` (fresh
   random inputs, float32 and bfloat16, causal and not). Any failure writes the JSON with the
   failures and exits with status 1 before anything is timed.
2. **copy bandwidth**: the median of device-to-device copies of a 2 GiB tensor (bytes read +
   written per second; 64 MiB on the CPU).
3. **timings**, N = 2**12 .. 2**24 (``--quick``: 2**12 .. 2**16), queries = keys = N, m = d_v = 64,
   inputs N(0, 1): medians of CUDA-event timings after a warm-up call, for

   * ``anna_dense_bf16_graph`` (and ``..._causal_graph``): the same call captured once in a CUDA
     graph (:func:`anna.gpu.capture_attention`) and replayed, which removes the host's launch work;
   * ``anna_dense_bf16`` / ``anna_dense_fp32``: the fused Triton kernels, hyperplanes, ell = 8,
     z = 4; ``anna_auto_bf16_causal``: causal, ``path="auto"`` (the general path on a GPU while
     the causal dense kernel is switched off, see docs/gpu-kernel-notes.md);
   * ``anna_general_bf16``: the same configuration through the general path (Triton codes, torch
     sort buckets), to show what the fusion buys;
   * ``anna_theorem_bf16``: E2LSH (width 4) with Theorem 3.4's (z, ell) for N (r = 1, c = 8,
     :func:`anna.lsh.theory_parameters`) on the general path;
   * ``sdpa_flash_bf16``: torch ``scaled_dot_product_attention`` restricted to the flash backend,
     (1, 1, N, 64) bfloat16;
   * ``torch_algorithm1_fp32``: :func:`anna.gpu.torch_algorithm1` (plain torch), float32.

   A series stops at the first N whose predicted time (last time x the growth: 2x per doubling,
   4x for SDPA, times the table ratio for the theorem's parameters) exceeds ``--point-cap``
   seconds per call, and everything stops when the run has used ``--budget`` seconds.

For every timed point: ``floor_s`` = (bytes of q, k, v read once + output and counts written
once) / copy bandwidth, and ``floor_ratio`` = time / floor. Writes the JSON to ``--out``
(default ``benchmarks/results/bench_gpu.json``) and a log-log figure of time against N to
``--figure`` (default: ``--out`` with ``.png``).

On the CPU (``--device cpu``) only the torch paths are checked and timed (a smoke test); with
``TRITON_INTERPRET=1`` the checks also run the Triton kernels in Triton's interpreter.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

M = DV = 64
Z, ELL = 4, 8
THEOREM_R, THEOREM_C = 1.0, 8.0
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "bench_gpu.json"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 2**12 .. 2**16 and a shorter budget")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (torch paths only)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    parser.add_argument("--figure", type=Path, default=None, help="figure path (default: --out with .png)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole run (default 330, quick 120)")
    parser.add_argument("--point-cap", type=float, default=None,
                        help="largest predicted seconds per call of a timed point (default 2, quick 0.5)")
    parser.add_argument("--plot-from", nargs="+", type=Path, default=None, metavar="JSON",
                        help="only draw --figure from these records (variants of later files added to the "
                             "first's), e.g. the README figure: benchmarks/results/bench_gpu.json")
    parser.add_argument("--variants", default=None,
                        help="comma-separated variant names to time (default: all)")
    parser.add_argument("--min-exp", type=int, default=12)
    parser.add_argument("--max-exp", type=int, default=None, help="default 24 (quick: 16)")
    args = parser.parse_args(argv)
    if args.budget is None:
        args.budget = 120.0 if args.quick else 330.0
    if args.point_cap is None:
        args.point_cap = 0.5 if args.quick else 2.0
    if args.max_exp is None:
        args.max_exp = 16 if args.quick else 24
    if args.figure is None:
        args.figure = args.out.with_suffix(".png")
    if not (1 <= args.min_exp <= args.max_exp <= 26):
        parser.error(f"need 1 <= --min-exp <= --max-exp <= 26, got {args.min_exp}, {args.max_exp}")
    if args.budget <= 0 or args.point_cap <= 0:
        parser.error("--budget and --point-cap must be positive")
    return args


# ------------------------------------------------------------------------------------ timing
def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn, device, reps: int) -> tuple[float, list[float]]:
    """Median seconds of ``fn()`` over ``reps`` calls after one warm-up (CUDA events on a GPU)."""
    import torch

    fn()
    _sync(device)
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def copy_bandwidth(device) -> float:
    """Bytes read + written per second by a device-to-device copy of a large tensor (median of 10)."""
    import torch

    size = 2**31 if device.type == "cuda" else 2**26
    src = torch.empty(size, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    seconds, _ = time_call(lambda: dst.copy_(src), device, 10)
    del src, dst
    return 2 * size / seconds


def floor_bytes(n: int, in_bytes: int, out_bytes: int) -> int:
    """Read q, k, v once and write the output and the int64 counts once."""
    return n * (2 * M + DV) * in_bytes + n * DV * out_bytes + 8 * n


# ----------------------------------------------------------------------------------- variants
def variants(device) -> dict:
    """name -> (make(n) -> zero-argument callable, growth per doubling, element bytes, tables(n))."""
    import torch

    from anna import E2LSH, Hyperplane, LSHConfig, theory_parameters
    from anna.gpu import anna_attention_gpu, capture_attention, torch_algorithm1
    from anna.gpu.attention import load_triton

    hyper = LSHConfig(Hyperplane(), Z, ELL)

    def inputs(n, dtype):
        g = torch.Generator(device=device).manual_seed(n)
        return [torch.randn((n, d), generator=g, device=device, dtype=torch.float32).to(dtype) for d in (M, M, DV)]

    def theorem(n):
        return theory_parameters(max(2, n), THEOREM_R, THEOREM_C, E2LSH(), dim=M)

    def anna(dtype, causal=False, path="dense", lsh_of=lambda n: hyper):
        def make(n):
            q, k, v = inputs(n, dtype)
            lsh = lsh_of(n)
            return lambda: anna_attention_gpu(q, k, v, lsh, 0, causal, path=path, check_finite=False)
        return make

    def captured(dtype, causal=False):
        def make(n):
            return capture_attention(*inputs(n, dtype), hyper, 0, causal).replay
        return make

    def sdpa(n):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        q, k, v = (x.reshape(1, 1, n, -1) for x in inputs(n, torch.bfloat16))

        def call():
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return call

    def baseline(n):
        q, k, v = inputs(n, torch.float32)
        return lambda: torch_algorithm1(q, k, v, hyper, 0)

    ell_of = lambda n: ELL  # noqa: E731
    table = {"torch_algorithm1_fp32": (baseline, 2.0, 4, ell_of)}
    if device.type == "cuda":
        theorem_lsh = lambda n: theorem(n).config(E2LSH())  # noqa: E731
        table = {
            "anna_dense_bf16": (anna(torch.bfloat16), 2.0, 2, ell_of),
            "anna_dense_bf16_graph": (captured(torch.bfloat16), 2.0, 2, ell_of),
            "anna_dense_fp32": (anna(torch.float32), 2.0, 4, ell_of),
            "anna_auto_bf16_causal": (anna(torch.bfloat16, causal=True, path="auto"), 2.0, 2, ell_of),
            **({"anna_dense_bf16_causal": (anna(torch.bfloat16, causal=True), 2.0, 2, ell_of),
                "anna_dense_bf16_causal_graph": (captured(torch.bfloat16, causal=True), 2.0, 2, ell_of)}
               if load_triton().DENSE_CAUSAL else {}),
            "anna_general_bf16": (anna(torch.bfloat16, path="general"), 2.0, 2, ell_of),
            "anna_theorem_bf16": (anna(torch.bfloat16, path="general", lsh_of=theorem_lsh), 2.0, 2,
                                  lambda n: theorem(n).ell),
            "sdpa_flash_bf16": (sdpa, 4.0, 2, ell_of),
            **table,
        }
    return table


# ------------------------------------------------------------------------------------ checks
def run_checks(device, quick: bool) -> list[dict]:
    """Every path against numba at small N; each entry says what was run and whether it passed."""
    import numpy as np
    import torch

    from anna import CrossPolytope, E2LSH, Hyperplane, LSHConfig
    from anna.gpu.check import check_path

    rng = np.random.default_rng(20240917)
    cases = [  # (label, lsh, causal, dtype, path, n)
        ("dense hyperplane z4 ell8", LSHConfig(Hyperplane(), 4, 8), False, torch.bfloat16, "dense", 1000),
        ("dense hyperplane z4 ell8 fp32", LSHConfig(Hyperplane(), 4, 8), False, torch.float32, "dense", 1000),
        ("dense causal bf16", LSHConfig(Hyperplane(), 4, 8), True, torch.bfloat16, "dense", 9000),
        ("dense causal fp32", LSHConfig(Hyperplane(), 4, 8), True, torch.float32, "dense", 9000),
        ("dense multi-chunk z6 ell9", LSHConfig(Hyperplane(), 6, 9), False, torch.float32, "dense", 3001),
        ("dense multi-chunk causal z7 ell3", LSHConfig(Hyperplane(), 7, 3), True, torch.bfloat16, "dense", 5000),
        ("general hyperplane z4 ell8", LSHConfig(Hyperplane(), 4, 8), False, torch.bfloat16, "general", 1000),
        ("general e2lsh causal", LSHConfig(E2LSH(), 3, 6), True, torch.float32, "general", 2000),
        ("general cross-polytope z2", LSHConfig(CrossPolytope(), 2, 5), False, torch.bfloat16, "general", 2000),
        ("general theorem e2lsh", LSHConfig(E2LSH(), 16, 40), False, torch.bfloat16, "general", 1024),
        ("torch hyperplane", LSHConfig(Hyperplane(), 4, 8), False, torch.float32, "torch", 1000),
        ("torch e2lsh causal", LSHConfig(E2LSH(), 3, 6), True, torch.float32, "torch", 1000),
    ]
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":  # Triton needs a GPU or its interpreter
        cases = [c for c in cases if c[4] == "torch"]
    from anna.gpu.attention import load_triton
    if device.type == "cuda" and not load_triton().DENSE_CAUSAL:  # switched off: path="dense" refuses causal
        cases = [c if not (c[4] == "dense" and c[2]) else (c[0].replace("dense", "auto"),) + c[1:4] + ("auto", c[5])
                 for c in cases]
    results = []
    for label, lsh, causal, dtype, path, n in cases:
        if quick:
            n = min(n, 2000)
        q, k, v = (torch.from_numpy(rng.standard_normal((n, d)).astype(np.float32)).to(device=device, dtype=dtype)
                   for d in (M, M, DV))
        t0 = time.perf_counter()
        result = check_path(q, k, v, lsh, seed=int(rng.integers(2**31)), causal=causal, path=path)
        results.append({"label": label, "n": n, "dtype": str(dtype), "causal": causal, "path": path,
                        "passed": result.passed, "max_error": result.max_error, "tolerance": result.tolerance,
                        "counts_equal_numba": result.counts_equal_numba, "code_mismatch": result.code_mismatch,
                        "detail": result.detail, "seconds": time.perf_counter() - t0})
        print(f"check {label:36s} n={n:5d} {'PASS' if result.passed else 'FAIL'}  err {result.max_error:.3g} "
              f"(tol {result.tolerance:.3g}) {result.detail}", flush=True)
    return results


# ------------------------------------------------------------------------------------- timing
def untimed_variants(checks: list[dict]) -> dict:
    """Variants that must not be timed, with the reason: a failed check of their path."""
    def failed(path, causal=None):
        return [c["label"] for c in checks if c["path"] == path and not c["passed"]
                and (causal is None or c["causal"] == causal)]

    reasons = {"anna_dense_bf16": failed("dense", False), "anna_dense_fp32": failed("dense", False),
               "anna_dense_bf16_graph": failed("dense", False), "anna_dense_bf16_causal_graph": failed("dense", True),
               "anna_auto_bf16_causal": failed("general", True) + failed("auto", True),
               "anna_dense_bf16_causal": failed("dense", True),
               "anna_general_bf16": failed("general"),
               "anna_theorem_bf16": failed("general"), "torch_algorithm1_fp32": failed("torch")}
    return {name: f"failed checks: {labels}" for name, labels in reasons.items() if labels}


def run_timings(device, args, bandwidth: float, started: float, untimed: dict | None = None) -> dict:
    import torch

    table = {name: spec for name, spec in variants(device).items() if name not in (untimed or {})
             and (args.variants is None or name in args.variants.split(","))}
    exps = list(range(args.min_exp, args.max_exp + 1))
    timings = {name: {} for name in table}
    stopped = {}
    last = {}
    for e in exps:
        n = 2**e
        for name, (make, growth, in_bytes, tables) in table.items():
            if name in stopped:
                continue
            elapsed = time.perf_counter() - started
            if elapsed > args.budget:
                stopped[name] = f"run budget {args.budget:.0f} s used before N = 2**{e}"
                continue
            if name in last:
                (n0, t0) = last[name]
                predicted = t0 * growth ** math.log2(n / n0) * tables(n) / tables(n0)
                if predicted > args.point_cap:
                    stopped[name] = f"predicted {predicted:.3g} s per call at N = 2**{e} > point cap {args.point_cap} s"
                    continue
            try:
                fn = make(n)
                t_first = time.perf_counter()
                fn()
                _sync(device)
                t_first = time.perf_counter() - t_first
                reps = max(3, min(20, int(1.0 / max(t_first, 1e-6))))
                seconds, samples = time_call(fn, device, reps)
            except torch.OutOfMemoryError as error:
                stopped[name] = f"out of memory at N = 2**{e}: {str(error).splitlines()[0]}"
                torch.cuda.empty_cache()
                continue
            except RuntimeError as error:  # e.g. no flash kernel for this size
                stopped[name] = f"failed at N = 2**{e}: {str(error).splitlines()[0][:200]}"
                continue
            out_bytes = in_bytes
            floor = floor_bytes(n, in_bytes, out_bytes) / bandwidth
            timings[name][str(n)] = {"seconds": seconds, "reps": len(samples), "floor_s": floor,
                                     "floor_ratio": seconds / floor, "tables": tables(n)}
            last[name] = (n, seconds)
            print(f"{name:26s} N=2**{e:2d}  {seconds * 1e3:10.3f} ms  floor x{seconds / floor:7.1f}", flush=True)
            del fn
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return {"timings": timings, "stopped": stopped}


def summarize(timings: dict) -> dict:
    """The issue's targets, from the timings (None where a point was not measured)."""
    def at(name, n):
        point = timings.get(name, {}).get(str(n))
        return None if point is None else point["seconds"]

    dense_24 = at("anna_dense_bf16", 2**24)
    dense_20, base_20 = at("anna_dense_bf16", 2**20), at("torch_algorithm1_fp32", 2**20)
    ratios = [p["floor_ratio"] for n, p in timings.get("anna_dense_bf16", {}).items() if int(n) >= 2**20]
    graph = [p["floor_ratio"] for n, p in timings.get("anna_dense_bf16_graph", {}).items() if int(n) >= 2**20]
    return {
        "worst_floor_ratio_2_20_plus_graph": max(graph) if graph else None,
        "target_within_4x_floor_graph": (max(graph) <= 4.0) if graph else None,
        "dense_bf16_2_24_ms": None if dense_24 is None else dense_24 * 1e3,
        "target_2_24_under_9ms": None if dense_24 is None else dense_24 < 9e-3,
        "worst_floor_ratio_2_20_plus": max(ratios) if ratios else None,
        "target_within_4x_floor": (max(ratios) <= 4.0) if ratios else None,
        "speedup_vs_torch_algorithm1_2_20": None if not (dense_20 and base_20) else base_20 / dense_20,
        "target_20x_torch_algorithm1": None if not (dense_20 and base_20) else base_20 / dense_20 >= 20.0,
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in result["timings"].items():
        if points:
            ns = sorted(int(n) for n in points)
            ax.plot(ns, [points[str(n)]["seconds"] * 1e3 for n in ns], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("N (queries = keys), head dim 64")
    ax.set_ylabel("time (ms)")
    ax.set_title(f"ANNA vs FlashAttention on {result['device_name']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)


def _write(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")


def plot_records(paths: list[Path], figure: Path) -> dict:
    """Draw the timings of several records in one figure (a variant is taken from the first record
    that has it); returns the merged record."""
    merged = json.loads(paths[0].read_text())
    for path in paths[1:]:
        for name, points in json.loads(path.read_text())["timings"].items():
            merged["timings"].setdefault(name, points)
    plot(merged, figure)
    return merged


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.plot_from:
        plot_records(args.plot_from, args.figure)
        print(f"wrote {args.figure}")
        return 0
    started = time.perf_counter()
    import torch

    from anna.gpu import resolve_device

    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    result = {"device": str(device), "device_name": name, "torch": torch.__version__, "m": M, "d_v": DV, "z": Z,
              "ell": ELL, "theorem": {"family": "e2lsh(width=4)", "r": THEOREM_R, "c": THEOREM_C},
              "quick": args.quick}
    if device.type == "cuda":
        import triton

        result["triton"] = triton.__version__
    result["checks"] = run_checks(device, args.quick)
    result["check_seconds"] = time.perf_counter() - started
    failed = [c for c in result["checks"] if not c["passed"]]
    result["untimed"] = untimed_variants(result["checks"])
    if failed:
        print("FAILED checks:", [c["label"] for c in failed], "- not timed:", sorted(result["untimed"]),
              file=sys.stderr)
    result["copy_bandwidth_bytes_per_s"] = copy_bandwidth(device)
    print(f"copy bandwidth {result['copy_bandwidth_bytes_per_s'] / 1e12:.3f} TB/s (read + write)", flush=True)
    result.update(run_timings(device, args, result["copy_bandwidth_bytes_per_s"], started, result["untimed"]))
    result["summary"] = summarize(result["timings"])
    result["total_seconds"] = time.perf_counter() - started
    _write(result, args.out)
    try:
        plot(result, args.figure)
    except ImportError as error:  # matplotlib is the plot extra
        print(f"no figure: {error}", file=sys.stderr)
    print(json.dumps(result["summary"], indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
