"""Localise a failure of the dense Triton path on a GPU, kernel by kernel (issue #16 diagnostics).

Each case runs in its own subprocess with ``CUDA_LAUNCH_BLOCKING=1`` so that an illegal memory
access is reported by the launch that made it and cannot poison the next case. Per case it prints:
bucket-id mismatches of the key and query kernels against float64 numpy hashing, the key kernel's
bucket sums and counts against sums rebuilt from its own ids, and the final output and counts
against the reference built from the kernels' own ids.

    python scripts/gpu_debug.py            # every case
    python scripts/gpu_debug.py --case 3   # one case, in this process
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import traceback

CASES = [  # (n, z, ell, dtype, causal)
    (64, 1, 1, "bfloat16", False),
    (64, 4, 8, "bfloat16", False),
    (1000, 4, 8, "bfloat16", False),
    (64, 4, 8, "float32", False),
    (1000, 4, 8, "float32", False),
    (1000, 4, 8, "bfloat16", True),
    (9000, 4, 8, "float32", True),
    (3001, 6, 9, "float32", False),
]


def run_case(index: int) -> None:
    import numpy as np
    import torch

    from anna import Hyperplane, LSHConfig
    from anna.gpu import torch_path
    from anna.gpu import triton_path as tp

    n, z, ell, dtype_name, causal = CASES[index]
    dtype = getattr(torch, dtype_name)
    rng = np.random.default_rng(index)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    q, k, v = (torch.from_numpy(rng.standard_normal((n, d)).astype(np.float32)).to(dev, dtype) for d in (64, 64, 64))
    lsh = LSHConfig(Hyperplane(), z, ell)
    params = lsh.family.sample(64, z, ell, 7)
    proj, _ = torch_path.linear_projection(Hyperplane(), params)
    weights = 2 ** np.arange(z)

    def ref_ids(x):
        p = x.float().cpu().numpy().astype(np.float64) @ proj.astype(np.float64)
        return ((p >= 0).reshape(n, ell, z) * weights).sum(-1).T  # (ell, n)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    print(f"case {index}: n={n} z={z} ell={ell} {dtype_name} causal={causal}", flush=True)
    out, counts, qid, kid = tp.dense_attention(q, k, v, lsh, params, causal, store_ids=True)
    sync()
    qi, ki = qid.cpu().numpy(), kid.cpu().numpy()
    print(f"  id mismatch vs float64: queries {np.mean(qi != ref_ids(q)):.4%}, keys {np.mean(ki != ref_ids(k)):.4%}")
    table = torch.tensor(tp.pattern_codes(params))
    rows = torch.arange(ell)[:, None]
    acc, rc = torch_path.attention_from_codes(table[rows, kid.long().cpu()], table[rows, qid.long().cpu()],
                                              v.float().cpu(), causal)
    ref = torch_path.finish(acc, rc, torch.float64).numpy()
    got = out.float().cpu().numpy()
    cnt = counts.cpu().numpy()
    bad_counts = np.flatnonzero(cnt != rc.numpy())
    err = np.abs(got - ref).max(axis=1)
    print(f"  counts wrong for {bad_counts.size}/{n} queries; first: "
          f"{[(int(i), int(cnt[i]), int(rc[i])) for i in bad_counts[:5]]}")
    print(f"  output max error {err.max():.4g} (max|v| {float(v.float().abs().max()):.3g}); rows > 1e-2: "
          f"{int((err > 1e-2).sum())}; first bad rows {np.flatnonzero(err > 1e-2)[:8].tolist()}")
    # the key kernel alone, chunk 0: partial sums against sums rebuilt from its own ids
    plan = tp.dense_plan(lsh, 64, 64)
    u0, u1 = plan.chunks[0]
    a, g, f_p, e_p, tcnb, tc = tp._chunk_operands(params, plan, u0, u1, 64, dev)
    per = 64
    n_prog = (n + per - 1) // per
    part = torch.zeros((n_prog, e_p, plan.dim_v_p), dtype=torch.float32, device=dev)
    pcnt = torch.zeros((n_prog, e_p), dtype=torch.int32, device=dev)
    kid2 = torch.zeros((ell, n), dtype=torch.int32, device=dev)
    xp, vp = tp._x_pieces(dtype), tp._value_pieces(dtype)
    tp._dense_key_sums[(n_prog,)](k, v, a, g, part, pcnt, kid2, n, 64, 64, k.stride(0), v.stride(0), per,
                                  BLOCK=64, M_P=plan.dim_p, F_P=f_p, E_P=e_p, NB=plan.buckets, TCNB=tcnb,
                                  DV_P=plan.dim_v_p, TC=tc, X_PIECES=xp, V_PIECES=vp, PIECE=tp._PIECE,
                                  STORE_IDS=True, num_warps=4)
    sync()
    ids = kid2.long().cpu()[: u1 - u0]  # (tc, n)
    onehot = torch.zeros((n, e_p), dtype=torch.float64)
    for u in range(u1 - u0):
        onehot[torch.arange(n), u * plan.buckets + ids[u]] = 1.0
    ref_sums = onehot.T @ v.double().cpu()
    got_sums = part.double().sum(0).cpu()[:, :64]
    ref_cnt = onehot.sum(0)
    got_cnt = pcnt.sum(0).double().cpu()
    print(f"  key kernel: bucket-sum max error {float((got_sums - ref_sums).abs().max()):.4g}, count errors "
          f"{int((got_cnt != ref_cnt).sum())}/{e_p} columns (got {got_cnt[:6].tolist()} ref {ref_cnt[:6].tolist()})")
    per_prog = (part.double().cpu()[:, :, :64] - torch.stack([onehot[i * per:(i + 1) * per].T @ v.double().cpu()[
        i * per:(i + 1) * per] for i in range(n_prog)])).abs().amax(dim=(1, 2))
    print(f"  key kernel per program max error: {[round(float(x), 4) for x in per_prog[:8]]}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=int, default=None)
    parser.add_argument("--cases", type=int, nargs="*", default=None, help="cases to run (default: all)")
    args = parser.parse_args()
    if args.case is not None:
        try:
            run_case(args.case)
        except Exception:
            traceback.print_exc()
            return 1
        return 0
    import torch
    import triton
    print(f"torch {torch.__version__}, triton {triton.__version__}, {torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}", flush=True)
    env = dict(os.environ, CUDA_LAUNCH_BLOCKING="1")
    for index in (args.cases if args.cases else range(len(CASES))):
        proc = subprocess.run([sys.executable, __file__, "--case", str(index)], env=env, capture_output=True,
                              text=True, timeout=300)
        print(proc.stdout + proc.stderr[-3000:], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
