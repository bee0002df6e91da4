"""Compile the dense Triton kernels for a Hopper GPU without one, and report their resources.

Registers, spills and shared memory decide how many programs share a multiprocessor; a kernel
that spills or needs 255 registers runs far below the memory bandwidth. This script compiles
every dense kernel of :mod:`anna.gpu.triton_path` for ``sm_90`` (the H200 of the GPU runs) with
the launch parameters of :data:`~anna.gpu.triton_path.TUNING` and a typical launch (m = d_v = 64,
hyperplanes, z = 4, ell = 8, N = 2**20), then prints what ``cuobjdump --dump-resource-usage``
reads from the binaries. It needs Triton's NVIDIA backend (its ``ptxas``), not a GPU, so the
kernels can be tuned between GPU runs: install the Triton of the GPU machine aside and run

    pip install --no-deps --target /tmp/triton36 triton==3.6.0
    PYTHONPATH=/tmp/triton36:. python scripts/gpu_compile_report.py [--dtype bfloat16] [--tuning k=v,...]

Resources depend on the Triton version; the GPU runs' own figures come from
``scripts/gpu_profile.py``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N = 2**20


def _signature(fn, pointer_types: dict, constexprs: dict, ints: dict) -> tuple[dict, dict, dict]:
    """Triton signature, constants and divisibility attributes (as a launch with aligned tensors gets them)."""
    signature, attrs, constexprs = {}, {}, dict(constexprs)
    for index, name in enumerate(fn.arg_names):
        if name in constexprs or ints.get(name) == 1:  # Triton specialises integer arguments equal to 1
            signature[name] = "constexpr"
            constexprs.setdefault(name, 1)
        elif name.endswith("_ptr"):
            signature[name] = pointer_types.get(name, "*fp32")
            attrs[(index,)] = [["tt.divisibility", 16]]
        else:
            signature[name] = "i32"
            if ints.get(name, 1) % 16 == 0:
                attrs[(index,)] = [["tt.divisibility", 16]]
    return signature, constexprs, attrs


def kernels(dtype_name: str, tuning) -> list[tuple]:
    """(kernel, pointer types, constexprs, int values, warps) of one non-causal and one causal call."""
    import torch

    from anna import Hyperplane, LSHConfig
    from anna.gpu import triton_path as tp

    lsh = LSHConfig(Hyperplane(), 4, 8)
    plan = tp.dense_plan(lsh, 64, 64)
    dtype = getattr(torch, dtype_name)
    x = "*bf16" if dtype == torch.bfloat16 else "*fp32"
    tables = plan.chunks[0][1] - plan.chunks[0][0]
    f_p, e_p = tp._pow2(tables * plan.z), tp._pow2(tables * plan.buckets)
    common = dict(M_P=plan.dim_p, F_P=f_p, E_P=e_p, NB=plan.buckets, TCNB=tables * plan.buckets, DV_P=plan.dim_v_p,
                  X_PIECES=tp._x_pieces(dtype), PIECE=tp._PIECE, TC=tables)
    ints = dict(n_keys=N, n_q=N, n=N, dim=64, dim_v=64, stride_k=64, stride_v=64, stride_q=64, stride_o=64,
                keys_per_prog=4096, seg=4096, blocks_per_prog=8 if tuning.query_programs_per_sm else 1)
    key = (tp._dense_key_sums, {"k_ptr": x, "v_ptr": x, "a_ptr": "*bf16", "g_ptr": "*bf16", "pcnt_ptr": "*i32",
                                "kid_ptr": "*i64"},
           dict(common, BLOCK=tuning.key_block, V_PIECES=tp._value_pieces(dtype), STORE_IDS=False,
                PREFETCH=tuning.prefetch), ints, tuning.key_warps)
    query = (tp._dense_query, {"q_ptr": x, "a_ptr": "*bf16", "g_ptr": "*bf16", "c_ptr": "*i64", "cnt_ptr": "*i64",
                               "out_ptr": x, "qid_ptr": "*i64"},
             dict(common, BLOCK=tuning.query_block, S_PIECES=tp._sum_pieces(dtype), FIRST=True, LAST=True,
                  STORE_IDS=False, PREFETCH=tuning.prefetch), ints, tuning.query_warps)
    causal = (tp._dense_causal, {"q_ptr": x, "k_ptr": x, "v_ptr": x, "a_ptr": "*bf16", "g_ptr": "*bf16",
                                 "gt_ptr": "*bf16", "pc_ptr": "*i64", "cnt_ptr": "*i64", "out_ptr": x},
              dict(common, BLOCK=tuning.causal_block, V_PIECES=tp._value_pieces(dtype), S_PIECES=tp._sum_pieces(dtype),
                   T_P=tp._table_columns(tables), FIRST=True, LAST=True), ints, tuning.causal_warps)
    return [key, query, causal]


def resources(cubin: bytes, cuobjdump: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as handle:
        handle.write(cubin)
    try:
        text = subprocess.run([cuobjdump, "--dump-resource-usage", handle.name], capture_output=True, text=True,
                              check=True).stdout
    finally:
        os.unlink(handle.name)
    found = {key.lower(): int(value) for key, value in re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", text)}
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--tuning", default="", help="DenseTuning fields, e.g. query_block=64,prefetch=true")
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--stages", type=int, default=None, help="num_stages of every kernel (default: Triton's)")
    args = parser.parse_args(argv)
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from anna.gpu import triton_path as tp

    fields = {}
    for item in filter(None, args.tuning.split(",")):
        name, value = item.split("=")
        fields[name] = {"true": True, "false": False}.get(value.lower(), None)
        if fields[name] is None:
            fields[name] = int(value)
    tuning = dataclasses.replace(tp.TUNING, **fields)
    cuobjdump = str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump")
    print(f"triton {triton.__version__}, sm_{args.arch}, {args.dtype}, {tuning}")
    for fn, pointers, constexprs, ints, warps in kernels(args.dtype, tuning):
        constexprs = {name: value for name, value in constexprs.items() if name in fn.arg_names}
        signature, constexprs, attrs = _signature(fn, pointers, constexprs, ints)
        source = ASTSource(fn, signature, constexprs, attrs)
        compiled = triton.compile(source, target=GPUTarget("cuda", args.arch, 32),
                                  options=dict(tuning.launch(warps), **({"num_stages": args.stages} if args.stages else {})))
        used = resources(compiled.asm["cubin"], cuobjdump)
        print(f"{fn.__name__:18s} warps {warps}: registers {used.get('reg')}, stack {used.get('stack')} B, "
              f"local {used.get('local')} B, shared {compiled.metadata.shared} B", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
