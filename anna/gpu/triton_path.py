"""Triton kernels of :mod:`anna.gpu`: fused dense-bucket Algorithm 2, and hashing to codes.

**Dense path** (hyperplanes with ``z <= 8``: a table has at most ``2**z <= 256`` buckets). A
bucket is named by the table's ``z`` bits, so a row's buckets in a chunk of ``TC`` tables
(``TC * 2**z <= 256``) are a one-hot row of ``E = TC * 2**z`` columns, computed in registers
and never stored:

1. ``_dense_key_sums`` (one program per slice of keys): project a block of keys on the chunk's
   hyperplanes (tensor-core dot), take signs, expand them into the one-hot row by a second dot
   (bits times powers of two, per table), then add ``onehot^T @ v`` (an E x d_v tile, fp32) and the
   column counts. Writes one E x d_v partial per program; the host adds the partials (float64).
2. ``_dense_query`` (one program per block of queries): the queries' one-hot rows times the
   bucket sums (``onehot @ S``) and times the counts (three 11-bit digits, so the int64 counts
   stay exact), then divide; running sums across table chunks (Algorithm 2) in fp32 / int64.
3. causal: ``_dense_key_sums`` over fixed segments of keys, an exclusive prefix over segments
   (host, float64), then ``_dense_causal`` walks its segment block by block: the block's queries
   read the running sums (the prefix plus this segment's earlier blocks, kept transposed in a
   per-segment buffer) and, inside the block, the lower-triangular collision counts (bucket ids
   compared table by table) times ``v``; then the block's keys join the running sums. Linear in
   N, the same memory as the non-causal path plus ``E x d_v`` floats per segment.

Dots take 16-bit operands (bf16 on the GPU; fp16 under ``TRITON_INTERPRET=1``, whose bf16 dot
is broken). One-hot and count matrices are exact in 16 bits; a float32 operand is split into
2-3 pieces (``x = hi + mid + lo``) and each piece multiplied separately, so products are exact
and accumulation is fp32: projections match a float32 dot up to rounding, and sums match
float32 accumulation. Hyperplane directions are the CPU-drawn float64 ones rounded to float32
(as the numba kernels use them for float32 rows) and split into three pieces.

**General path**: ``_linear_codes`` (hyperplane, E2LSH) and ``_cross_polytope_codes`` compute
exactly :mod:`anna.lsh`'s 64-bit codes (``sum_t h_t m_t mod 2**64``, int64 arithmetic) for a
chunk of tables; :mod:`anna.gpu.torch_path` buckets them by sorting.

Examples
--------
>>> import torch
>>> from anna import Hyperplane, LSHConfig
>>> dense_plan(LSHConfig(Hyperplane(), z=4, ell=8), dim=64, dim_v=64).chunks
((0, 8),)
"""
from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass

import numpy as np
import torch
import triton
import triton.language as tl

from ..errors import ParameterError
from ..lsh import CrossPolytope, E2LSH, Hyperplane, LSHConfig
from .torch_path import code_multipliers, linear_projection, rotation_stack

__all__ = ["DENSE_CAUSAL", "INTERPRET", "TUNING", "DenseTuning", "MAX_DENSE_COLUMNS", "MAX_DENSE_Z", "MAX_DIM", "DensePlan", "dense_plan", "dense_eligible",
           "dense_attention", "triton_codes", "pattern_codes"]

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
"""Whether the kernels run in Triton's CPU interpreter (read when this module is imported)."""

MAX_DENSE_Z = 8
"""Largest hyperplanes per table on the dense path (2**z buckets per table)."""
MAX_DENSE_COLUMNS = 256
"""Width of the one-hot rows (tables per chunk times buckets per table)."""
MAX_DIM = 256
"""Largest row length the Triton kernels hash (one register tile per block of rows)."""
DENSE_CAUSAL = os.environ.get("ANNA_DENSE_CAUSAL", "1") != "0"
"""Whether causal attention may take the dense path (``ANNA_DENSE_CAUSAL=0`` sends it to the general
path). Version 1 of ``_dense_causal`` made an illegal memory access on an H200; version 2 passes
the checks there (docs/gpu-kernel-notes.md)."""

_PIECE = tl.float16 if INTERPRET else tl.bfloat16
_PIECE_TORCH = torch.float16 if INTERPRET else torch.bfloat16
_BLOCK = 64
_SEGMENT = 4096  # causal: largest keys per segment (a multiple of the block)


@dataclass(frozen=True)
class DenseTuning:
    """Launch parameters of the dense kernels (rows per block, warps, key-pass programs per SM, and
    the causal segment: ``None`` picks about 4 programs per SM, between one block and 4,096 keys).

    ``query_programs_per_sm = 0`` launches one query program per block of queries; a positive value
    launches that many programs per multiprocessor, each looping over blocks (a persistent grid).
    ``prefetch`` loads the next block's rows while a block is computed (key and query loops);
    ``stages`` is Triton's software-pipelining depth of every dense launch (``None``: Triton's
    default). Persistent query programs with 128-query blocks need ``stages <= 2``: with
    Triton's default of 3 they ask 233,472 bytes of shared memory, over an H200's 232,448
    (``OutOfResources`` at the first launch; ``scripts/gpu_compile_report.py`` shows it without
    a GPU).

    ``scripts/gpu_tune.py`` times the choices on a GPU; :data:`TUNING` holds the one in use. The
    defaults are the fastest of its H200 runs: 128-query blocks and 4 warps for the causal kernel
    (version 2, ``benchmarks/results/gpu_tune.json``), and 2 key programs per multiprocessor
    (version 3, ``benchmarks/results/gpu_tune_v3b.json``: 0.50 ms at 2^20 against 0.53 ms with 4;
    persistent query programs, prefetching and other pipelining depths were slower).

    Examples
    --------
    >>> DenseTuning(query_block=64).query_block
    64
    >>> DenseTuning(key_block=48)
    Traceback (most recent call last):
    ...
    anna.errors.ParameterError: blocks must be powers of two in [16, 256], got key_block=48
    """

    key_block: int = 64
    query_block: int = 128
    causal_block: int = 64
    key_warps: int = 4
    query_warps: int = 4
    causal_warps: int = 4
    key_programs_per_sm: int = 2
    segment: int | None = None
    query_programs_per_sm: int = 0
    prefetch: bool = False
    stages: int | None = None

    def __post_init__(self) -> None:
        for name in ("key_block", "query_block", "causal_block"):
            value = getattr(self, name)
            if not (16 <= value <= 256 and value & (value - 1) == 0):
                raise ParameterError(f"blocks must be powers of two in [16, 256], got {name}={value}")
        for name in ("key_warps", "query_warps", "causal_warps"):
            if getattr(self, name) not in (1, 2, 4, 8, 16):
                raise ParameterError(f"{name} must be 1, 2, 4, 8 or 16, got {getattr(self, name)}")
        if self.key_programs_per_sm < 1 or (self.segment is not None and self.segment < self.causal_block):
            raise ParameterError(f"need key_programs_per_sm >= 1 and segment >= causal_block, got {self}")
        if self.query_programs_per_sm < 0 or not isinstance(self.prefetch, bool):
            raise ParameterError(f"need query_programs_per_sm >= 0 and a bool prefetch, got {self}")
        if self.stages is not None and not 1 <= self.stages <= 8:
            raise ParameterError(f"stages must be None or in [1, 8], got {self.stages}")

    def launch(self, warps: int) -> dict:
        """Keyword arguments of a kernel launch with ``warps`` warps."""
        return {"num_warps": warps} if self.stages is None else {"num_warps": warps, "num_stages": self.stages}

    def causal_segment(self, n: int, device) -> int:
        """Keys per causal segment for ``n`` tokens (a multiple of ``causal_block``)."""
        block = self.causal_block
        if self.segment is not None:
            return max(block, self.segment // block * block)
        want = triton.cdiv(max(n, 1), _programs(device, n, 4))
        return max(block, min(_SEGMENT, triton.cdiv(want, block) * block))


TUNING = DenseTuning()
"""The launch parameters :func:`dense_attention` uses by default."""


def _pow2(n: int, low: int = 16) -> int:
    return max(low, 1 << max(0, int(n) - 1).bit_length())


# ------------------------------------------------------------------------------ device code
@triton.jit
def _dot_piece(a, b, piece, acc, SPLIT_LEFT: tl.constexpr, PIECE: tl.constexpr):
    """``piece @ b`` (SPLIT_LEFT) or ``a @ piece``, added to ``acc`` (None: a new float32 sum)."""
    if SPLIT_LEFT:
        if acc is None:
            out = tl.dot(piece, b, out_dtype=tl.float32)
        else:
            out = tl.dot(piece, b, acc)
    else:
        if acc is None:
            out = tl.dot(a, piece, out_dtype=tl.float32)
        else:
            out = tl.dot(a, piece, acc)
    return out


@triton.jit
def _dot_split(a, b, PIECES: tl.constexpr, PIECE: tl.constexpr, SPLIT_LEFT: tl.constexpr):
    """``a @ b`` with one float32 operand split into PIECES 16-bit pieces, the other one 16-bit.

    ``SPLIT_LEFT`` says which is the float32 one. The query and causal kernels compute their
    products transposed (``s^T @ onehot^T``, float32 on the left), so that the one-hot rows, made
    from a dot's result, enter the second dot as its B operand (read from shared memory): on an
    H200 (Triton 3.6) the one-hot as a register A operand with K = 128 gave wrong sums
    (scripts/gpu_debug.py, docs/gpu-kernel-notes.md).
    """
    x = a
    if not SPLIT_LEFT:
        x = b
    hi = x.to(PIECE)
    acc = _dot_piece(a, b, hi, None, SPLIT_LEFT, PIECE)
    if PIECES > 1:
        rest = x - hi.to(tl.float32)
        mid = rest.to(PIECE)
        acc = _dot_piece(a, b, mid, acc, SPLIT_LEFT, PIECE)
        if PIECES > 2:
            acc = _dot_piece(a, b, (rest - mid.to(tl.float32)).to(PIECE), acc, SPLIT_LEFT, PIECE)
    return acc


@triton.jit
def _project(x, a_ptr, M_P: tl.constexpr, F_P: tl.constexpr, X_PIECES: tl.constexpr, PIECE: tl.constexpr):
    """``x @ A`` (BLOCK, F_P) for float32 rows ``x`` and A stored as three 16-bit pieces (3, M_P, F_P)."""
    offs = tl.arange(0, M_P)[:, None] * F_P + tl.arange(0, F_P)[None, :]
    a0 = tl.load(a_ptr + offs)
    a1 = tl.load(a_ptr + M_P * F_P + offs)
    a2 = tl.load(a_ptr + 2 * M_P * F_P + offs)
    x0 = x.to(PIECE)
    acc = tl.dot(x0, a2, out_dtype=tl.float32)  # smallest terms first
    acc = tl.dot(x0, a1, acc)
    if X_PIECES > 1:
        rest = x - x0.to(tl.float32)
        x1 = rest.to(PIECE)
        if X_PIECES > 2:
            x2 = (rest - x1.to(tl.float32)).to(PIECE)
            acc = tl.dot(x2, a0, acc)
        acc = tl.dot(x1, a1, acc)
        acc = tl.dot(x1, a0, acc)
    acc = tl.dot(x0, a0, acc)
    return acc


@triton.jit
def _load_raw(ptr, rows, ok, stride, n_cols, COLS: tl.constexpr):
    """Rows ``rows`` (masked by ``ok``) of a row-major matrix, ``COLS`` padded columns, as stored."""
    cols = tl.arange(0, COLS)
    offs = rows.to(tl.int64)[:, None] * stride + cols[None, :]
    return tl.load(ptr + offs, mask=ok[:, None] & (cols[None, :] < n_cols), other=0.0)


@triton.jit
def _load_rows(ptr, rows, ok, stride, n_cols, COLS: tl.constexpr):
    return _load_raw(ptr, rows, ok, stride, n_cols, COLS).to(tl.float32)


@triton.jit
def _bits(x, a_ptr, M_P: tl.constexpr, F_P: tl.constexpr, X_PIECES: tl.constexpr, PIECE: tl.constexpr):
    """The hyperplane bits (BLOCK, F_P) of float32 rows ``x``, as 16-bit 0 / 1."""
    proj = _project(x, a_ptr, M_P, F_P, X_PIECES, PIECE)
    return tl.where(proj >= 0, 1.0, 0.0).to(PIECE)


@triton.jit
def _expand(bits, ok, g, E_P: tl.constexpr, NB: tl.constexpr, TCNB: tl.constexpr):
    """Bucket ids expanded per column (BLOCK, E_P) float32, and the one-hot rows (bool)."""
    ids = tl.dot(bits, g, out_dtype=tl.float32)  # column u*NB + b holds table u's bucket
    cols = tl.arange(0, E_P)
    hot = (ids == (cols % NB).to(tl.float32)[None, :]) & (cols < TCNB)[None, :] & ok[:, None]
    return ids, hot


@triton.jit
def _onehot(x, ok, a_ptr, g, M_P: tl.constexpr, F_P: tl.constexpr, E_P: tl.constexpr, NB: tl.constexpr,
            TCNB: tl.constexpr, X_PIECES: tl.constexpr, PIECE: tl.constexpr):
    """:func:`_bits` then :func:`_expand`."""
    return _expand(_bits(x, a_ptr, M_P, F_P, X_PIECES, PIECE), ok, g, E_P, NB, TCNB)


@triton.jit
def _column(t, cols, u):
    """Column ``u`` of a (rows, cols) tile, per row."""
    return tl.sum(tl.where(cols[None, :] == u, t, 0.0), axis=1)


@triton.jit
def _store_ids(ids, rows, ok, id_ptr, n, E_P: tl.constexpr, NB: tl.constexpr, TC: tl.constexpr):
    cols = tl.arange(0, E_P)
    for u in tl.static_range(TC):  # table u's bucket is in each of its columns; take the first
        tl.store(id_ptr + u * n + rows, _column(ids, cols, u * NB).to(tl.int32), mask=ok)


@triton.jit
def _row_counts(col_counts, oh_t, PIECE: tl.constexpr):
    """Per row, the sum of ``col_counts`` (E_P,) int64 over its one-hot columns ``oh_t`` (E_P, BLOCK),
    exact: a dot with the counts' three 11-bit digits (exact in 16 bits), reassembled in int64."""
    dcols = tl.arange(0, 16)
    shift = (dcols * 11).to(tl.int64)
    digits = tl.where(dcols[:, None] < 3, (col_counts[None, :] >> shift[:, None]) & 2047, 0)  # (16, E_P)
    dig = tl.trans(_dot_split(digits.to(tl.float32), oh_t, 2, PIECE, True))  # (BLOCK, 16); 11 bits: 2 pieces
    return tl.sum(tl.where(dcols[None, :] < 3, dig.to(tl.int64) << shift[None, :], 0), axis=1)


@triton.jit
def _finish(sums, cnt, rows, ok, acc_ptr, cnt_ptr, out_ptr, dim_v, stride_o, DV_P: tl.constexpr,
            FIRST: tl.constexpr, LAST: tl.constexpr):
    vcols = tl.arange(0, DV_P)
    acc_offs = rows.to(tl.int64)[:, None] * DV_P + vcols[None, :]
    if not FIRST:
        sums += tl.load(acc_ptr + acc_offs, mask=ok[:, None], other=0.0)
        cnt += tl.load(cnt_ptr + rows, mask=ok, other=0)
    if LAST:
        denom = tl.where(cnt > 0, cnt, 1).to(tl.float32)
        res = tl.where(cnt[:, None] > 0, sums / denom[:, None], 0.0)
        out_offs = rows.to(tl.int64)[:, None] * stride_o + vcols[None, :]
        tl.store(out_ptr + out_offs, res.to(out_ptr.dtype.element_ty), mask=ok[:, None] & (vcols[None, :] < dim_v))
    else:
        tl.store(acc_ptr + acc_offs, sums, mask=ok[:, None])
    tl.store(cnt_ptr + rows, cnt, mask=ok)


@triton.jit
def _dense_key_sums(k_ptr, v_ptr, a_ptr, g_ptr, part_ptr, pcnt_ptr, kid_ptr, n_keys, dim, dim_v, stride_k, stride_v,
                    keys_per_prog, BLOCK: tl.constexpr, M_P: tl.constexpr, F_P: tl.constexpr, E_P: tl.constexpr,
                    NB: tl.constexpr, TCNB: tl.constexpr, DV_P: tl.constexpr, TC: tl.constexpr,
                    X_PIECES: tl.constexpr, V_PIECES: tl.constexpr, PIECE: tl.constexpr, STORE_IDS: tl.constexpr,
                    PREFETCH: tl.constexpr):
    pid = tl.program_id(0)
    start = pid * keys_per_prog
    stop = tl.minimum(start + keys_per_prog, n_keys)
    fcols = tl.arange(0, F_P)
    ecols = tl.arange(0, E_P)
    vcols = tl.arange(0, DV_P)
    g = tl.load(g_ptr + fcols[:, None] * E_P + ecols[None, :])
    acc = tl.zeros((E_P, DV_P), dtype=tl.float32)
    cnt = tl.zeros((E_P,), dtype=tl.int32)
    if PREFETCH:  # the next block's keys and values are loaded while this block is computed
        rows = start + tl.arange(0, BLOCK)
        k_next = _load_raw(k_ptr, rows, rows < stop, stride_k, dim, M_P)
        v_next = _load_raw(v_ptr, rows, rows < stop, stride_v, dim_v, DV_P)
    for b0 in range(0, keys_per_prog, BLOCK):  # bounds from arguments only (older interpreters)
        rows = start + b0 + tl.arange(0, BLOCK)
        ok = rows < stop
        if PREFETCH:
            x = k_next.to(tl.float32)
            vv = v_next.to(tl.float32)
            later = rows + BLOCK
            k_next = _load_raw(k_ptr, later, later < stop, stride_k, dim, M_P)
            v_next = _load_raw(v_ptr, later, later < stop, stride_v, dim_v, DV_P)
        else:
            x = _load_rows(k_ptr, rows, ok, stride_k, dim, M_P)
            vv = _load_rows(v_ptr, rows, ok, stride_v, dim_v, DV_P)
        ids, hot = _onehot(x, ok, a_ptr, g, M_P, F_P, E_P, NB, TCNB, X_PIECES, PIECE)
        acc += _dot_split(tl.trans(hot.to(PIECE)), vv, V_PIECES, PIECE, False)
        cnt += tl.sum(hot.to(tl.int32), axis=0)
        if STORE_IDS:
            _store_ids(ids, rows, ok, kid_ptr, n_keys, E_P, NB, TC)
    base = pid.to(tl.int64) * E_P
    tl.store(part_ptr + (base + ecols[:, None]) * DV_P + vcols[None, :], acc)
    tl.store(pcnt_ptr + base + ecols, cnt)


@triton.jit
def _dense_query(q_ptr, a_ptr, g_ptr, s_ptr, c_ptr, acc_ptr, cnt_ptr, out_ptr, qid_ptr, n_q, dim, dim_v, stride_q,
                 stride_o, blocks_per_prog, BLOCK: tl.constexpr, M_P: tl.constexpr, F_P: tl.constexpr,
                 E_P: tl.constexpr, NB: tl.constexpr, TCNB: tl.constexpr, DV_P: tl.constexpr, TC: tl.constexpr,
                 X_PIECES: tl.constexpr, S_PIECES: tl.constexpr, PIECE: tl.constexpr, FIRST: tl.constexpr,
                 LAST: tl.constexpr, STORE_IDS: tl.constexpr, PREFETCH: tl.constexpr):
    """Blocks ``pid, pid + programs, ...`` of queries (``blocks_per_prog`` of them): one-hot rows
    times the bucket sums (a dot) and times the bucket counts (:func:`_row_counts`, exact in int64)."""
    pid = tl.program_id(0)
    step = tl.num_programs(0)
    fcols = tl.arange(0, F_P)
    ecols = tl.arange(0, E_P)
    vcols = tl.arange(0, DV_P)
    g = tl.load(g_ptr + fcols[:, None] * E_P + ecols[None, :])
    col_counts = tl.load(c_ptr + ecols)  # (E_P,) int64 keys per bucket column
    if PREFETCH:
        rows = pid * BLOCK + tl.arange(0, BLOCK)
        x_next = _load_raw(q_ptr, rows, rows < n_q, stride_q, dim, M_P)
    for i in range(0, blocks_per_prog):
        rows = (pid + i * step) * BLOCK + tl.arange(0, BLOCK)
        ok = rows < n_q
        if PREFETCH:
            x = x_next.to(tl.float32)
            later = rows + step * BLOCK
            x_next = _load_raw(q_ptr, later, later < n_q, stride_q, dim, M_P)
        else:
            x = _load_rows(q_ptr, rows, ok, stride_q, dim, M_P)
        ids, hot = _onehot(x, ok, a_ptr, g, M_P, F_P, E_P, NB, TCNB, X_PIECES, PIECE)
        if STORE_IDS:
            _store_ids(ids, rows, ok, qid_ptr, n_q, E_P, NB, TC)
        oh_t = tl.trans(hot.to(PIECE))  # (E_P, BLOCK): the B operand
        s_t = tl.load(s_ptr + ecols[None, :] * DV_P + vcols[:, None])  # (DV_P, E_P)
        sums = tl.trans(_dot_split(s_t, oh_t, S_PIECES, PIECE, True))
        cnt = _row_counts(col_counts, oh_t, PIECE)
        _finish(sums, cnt, rows, ok, acc_ptr, cnt_ptr, out_ptr, dim_v, stride_o, DV_P, FIRST, LAST)


@triton.jit
def _dense_causal(q_ptr, k_ptr, v_ptr, a_ptr, g_ptr, gt_ptr, run_ptr, pc_ptr, acc_ptr, cnt_ptr, out_ptr, n, dim, dim_v,
                  stride_q, stride_k, stride_v, stride_o, seg, BLOCK: tl.constexpr, M_P: tl.constexpr,
                  F_P: tl.constexpr, E_P: tl.constexpr, NB: tl.constexpr, TCNB: tl.constexpr, DV_P: tl.constexpr,
                  TC: tl.constexpr, T_P: tl.constexpr, X_PIECES: tl.constexpr, V_PIECES: tl.constexpr,
                  S_PIECES: tl.constexpr, PIECE: tl.constexpr, FIRST: tl.constexpr, LAST: tl.constexpr):
    """Version 3 (see docs/gpu-kernel-notes.md): the running bucket sums live transposed in
    ``run_ptr`` (this segment's slice, updated in place, re-read every block), every product takes a
    loaded tensor as its A operand and a one-hot as its B operand, counts come from int64 bucket
    counts (:func:`_row_counts`), and the in-block collisions compare per-table bucket ids (BLOCK, T_P), made
    from the bits by a small dot with ``gt`` (no dot result is a dot operand)."""
    s = tl.program_id(0)
    start = s * seg
    stop = tl.minimum(start + seg, n)
    fcols = tl.arange(0, F_P)
    ecols = tl.arange(0, E_P)
    vcols = tl.arange(0, DV_P)
    tcols = tl.arange(0, T_P)
    bcols = tl.arange(0, BLOCK)
    g = tl.load(g_ptr + fcols[:, None] * E_P + ecols[None, :])
    gt = tl.load(gt_ptr + fcols[:, None] * T_P + tcols[None, :])  # bits -> bucket id per table
    run_offs = s.to(tl.int64) * DV_P * E_P + vcols[:, None] * E_P + ecols[None, :]  # (DV_P, E_P)
    seen = tl.load(pc_ptr + s.to(tl.int64) * E_P + ecols)  # (E_P,) int64 keys of earlier segments
    for b0 in range(0, seg, BLOCK):
        rows = start + b0 + bcols
        ok = rows < stop
        bits_q = _bits(_load_rows(q_ptr, rows, ok, stride_q, dim, M_P), a_ptr, M_P, F_P, X_PIECES, PIECE)
        bits_k = _bits(_load_rows(k_ptr, rows, ok, stride_k, dim, M_P), a_ptr, M_P, F_P, X_PIECES, PIECE)
        _, hot_q = _expand(bits_q, ok, g, E_P, NB, TCNB)
        oq_t = tl.trans(hot_q.to(PIECE))  # (E_P, BLOCK)
        run_t = tl.load(run_ptr + run_offs)  # (DV_P, E_P): earlier segments plus earlier blocks
        sums_t = _dot_split(run_t, oq_t, S_PIECES, PIECE, True)  # (DV_P, BLOCK)
        cnt = _row_counts(seen, oq_t, PIECE)
        tid_q = tl.dot(bits_q, gt, out_dtype=tl.float32)  # (BLOCK, T_P): table u's bucket in column u
        tid_k = tl.dot(bits_k, gt, out_dtype=tl.float32)
        c = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)  # (query, key) collisions inside the block
        for u in tl.static_range(TC):
            c += tl.where(_column(tid_q, tcols, u)[:, None] == _column(tid_k, tcols, u)[None, :], 1.0, 0.0)
        c = tl.where((bcols[None, :] <= bcols[:, None]) & ok[None, :], c, 0.0)  # valid keys j <= query i
        v_offs = rows.to(tl.int64)[None, :] * stride_v + vcols[:, None]
        v_t = tl.load(v_ptr + v_offs, mask=ok[None, :] & (vcols[:, None] < dim_v), other=0.0).to(tl.float32)
        sums_t += _dot_split(v_t, tl.trans(c.to(PIECE)), V_PIECES, PIECE, True)
        cnt += tl.sum(c, axis=1).to(tl.int64)
        _finish(tl.trans(sums_t), cnt, rows, ok, acc_ptr, cnt_ptr, out_ptr, dim_v, stride_o, DV_P, FIRST, LAST)
        _, hot_k = _expand(bits_k, ok, g, E_P, NB, TCNB)
        update = _dot_split(v_t, hot_k.to(PIECE), V_PIECES, PIECE, True)  # (DV_P, E_P)
        # re-read rather than keep run_t live through the block: 760 -> 504 bytes of spill stack (sm_90),
        # 26.0 -> 23.2 ms at 2^24 (benchmarks/results/gpu_tune_v3b.json, gpu_tune_v3c.json)
        tl.store(run_ptr + run_offs, tl.load(run_ptr + run_offs) + update)
        tl.debug_barrier()  # the next block re-reads the running sums other threads wrote
        seen += tl.sum(hot_k.to(tl.int64), axis=0)


@triton.jit
def _linear_codes(x_ptr, a_ptr, off_ptr, mult_ptr, codes_ptr, n, dim, stride_x, z, tables_per_chunk, n_tables,
                  BLOCK: tl.constexpr, M_P: tl.constexpr, F_P: tl.constexpr, T_P: tl.constexpr,
                  X_PIECES: tl.constexpr, PIECE: tl.constexpr, IS_E2LSH: tl.constexpr):
    pid = tl.program_id(0)
    chunk = tl.program_id(1)
    rows = pid * BLOCK + tl.arange(0, BLOCK)
    ok = rows < n
    fcols = tl.arange(0, F_P)
    tcols = tl.arange(0, T_P)
    u0 = chunk * tables_per_chunk
    here = tl.minimum(tables_per_chunk, n_tables - u0)
    x = _load_rows(x_ptr, rows, ok, stride_x, dim, M_P)
    proj = _project(x, a_ptr + chunk.to(tl.int64) * 3 * M_P * F_P, M_P, F_P, X_PIECES, PIECE)
    live = fcols < here * z
    mult = tl.load(mult_ptr + chunk.to(tl.int64) * F_P + fcols, mask=live, other=0)
    if IS_E2LSH:
        off = tl.load(off_ptr + chunk.to(tl.int64) * F_P + fcols, mask=live, other=0.0)
        cell = proj.to(tl.float64) + off[None, :]
        cell = tl.minimum(tl.maximum(cell, -4.0e18), 4.0e18)  # torch_path.CLAMP
        h = tl.floor(cell).to(tl.int64)
    else:
        h = tl.where(proj >= 0, 1, 0).to(tl.int64)
    hm = h * mult[None, :]  # int64 products wrap: arithmetic mod 2**64
    table = fcols // z
    codes = tl.zeros((BLOCK, T_P), dtype=tl.int64)
    for u in range(tables_per_chunk):  # tables u >= here have no live column: code 0, not stored
        code = tl.sum(tl.where(table[None, :] == u, hm, 0), axis=1)
        codes = tl.where(tcols[None, :] == u, code[:, None], codes)
    offs = (u0 + tcols).to(tl.int64)[None, :] * n + rows[:, None]
    tl.store(codes_ptr + offs, codes, mask=ok[:, None] & (tcols < here)[None, :])


@triton.jit
def _cross_polytope_codes(x_ptr, r_ptr, mult_ptr, codes_ptr, n, dim, stride_x, z, n_tables, BLOCK: tl.constexpr,
                          M_P: tl.constexpr, D_P: tl.constexpr, T_P: tl.constexpr, X_PIECES: tl.constexpr,
                          PIECE: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK + tl.arange(0, BLOCK)
    ok = rows < n
    dcols = tl.arange(0, D_P)
    tcols = tl.arange(0, T_P)
    x = _load_rows(x_ptr, rows, ok, stride_x, dim, M_P)
    codes = tl.zeros((BLOCK, T_P), dtype=tl.int64)
    for f in range(n_tables * z):
        y = _project(x, r_ptr + f * 3 * M_P * D_P, M_P, D_P, X_PIECES, PIECE)
        ay = tl.abs(y)
        best = tl.max(ay, axis=1)
        index = tl.min(tl.where(ay == best[:, None], dcols[None, :], D_P), axis=1)  # first maximum
        value = tl.sum(tl.where(dcols[None, :] == index[:, None], y, 0.0), axis=1)
        h = 2 * index.to(tl.int64) + tl.where(value < 0, 1, 0).to(tl.int64)
        m = tl.load(mult_ptr + f)
        codes += tl.where(tcols[None, :] == f // z, (h * m)[:, None], 0)
    offs = tcols.to(tl.int64)[None, :] * n + rows[:, None]
    tl.store(codes_ptr + offs, codes, mask=ok[:, None] & (tcols < n_tables)[None, :])


# -------------------------------------------------------------------------------- host side
def _pieces(matrix: torch.Tensor) -> torch.Tensor:
    """Split a float32 tensor (..., a, b) into three 16-bit pieces (..., 3, a, b) summing to it."""
    hi = matrix.to(_PIECE_TORCH)
    rest = matrix - hi.to(torch.float32)
    mid = rest.to(_PIECE_TORCH)
    lo = (rest - mid.to(torch.float32)).to(_PIECE_TORCH)
    return torch.stack([hi, mid, lo], dim=-3).contiguous()


def _x_pieces(dtype: torch.dtype) -> int:
    return 1 if dtype == torch.bfloat16 and not INTERPRET else (2 if INTERPRET else 3)


def _value_pieces(dtype: torch.dtype) -> int:
    return 1 if dtype == torch.bfloat16 and not INTERPRET else 3


def _sum_pieces(dtype: torch.dtype) -> int:
    return 2 if dtype == torch.bfloat16 else 3


def _table_columns(tables: int) -> int:
    """Columns of the per-table bucket-id tile of the causal kernel (a dot needs at least 16)."""
    return _pow2(tables, 16)


@dataclass(frozen=True)
class DensePlan:
    """How the dense kernels split ``ell`` tables of ``z`` hyperplanes into chunks.

    ``chunks`` are table ranges of at most ``tables_per_chunk`` tables; ``columns`` is the padded
    one-hot width E_P of a full chunk.
    """

    z: int
    buckets: int
    tables_per_chunk: int
    chunks: tuple[tuple[int, int], ...]
    dim_p: int
    dim_v_p: int

    def __post_init__(self) -> None:
        if not (1 <= self.z <= MAX_DENSE_Z) or self.buckets != 2**self.z:
            raise ParameterError(f"dense plans need 1 <= z <= {MAX_DENSE_Z}, got z={self.z}")
        if self.tables_per_chunk * self.buckets > MAX_DENSE_COLUMNS or not self.chunks:
            raise ParameterError("a chunk's one-hot rows must fit MAX_DENSE_COLUMNS")


@functools.lru_cache(maxsize=64)
def dense_plan(lsh: LSHConfig, dim: int, dim_v: int) -> DensePlan:
    """The :class:`DensePlan` of a hyperplane configuration with ``z <= MAX_DENSE_Z``."""
    buckets = 2**lsh.z
    per = max(1, min(lsh.ell, MAX_DENSE_COLUMNS // buckets))
    chunks = tuple((u, min(lsh.ell, u + per)) for u in range(0, lsh.ell, per))
    return DensePlan(lsh.z, buckets, per, chunks, _pow2(dim), _pow2(dim_v))


def dense_eligible(lsh: LSHConfig, params, dim: int) -> bool:
    """Whether the dense path computes exactly the codes' collisions for these parameters.

    Needs hyperplanes, ``z <= MAX_DENSE_Z``, ``dim <= MAX_DIM``, and the ``2**z`` bit patterns of
    every table to have distinct 64-bit codes (true unless the multipliers are astronomically
    unlucky), so that equal bits and equal codes are the same thing.
    """
    if not isinstance(lsh.family, Hyperplane) or lsh.z > MAX_DENSE_Z or dim > MAX_DIM:
        return False
    return all(np.unique(row).size == row.size for row in pattern_codes(params))


def pattern_codes(params) -> np.ndarray:
    """The 64-bit code (as int64) of every bit pattern b of every table: (ell, 2**z); bit t of b is h_t."""
    z = params.z
    patterns = (np.arange(2**z)[:, None] >> np.arange(z)[None, :]) & 1
    with np.errstate(over="ignore"):
        codes = (patterns[None, :, :].astype(np.uint64) * params.multipliers[:, None, :]).sum(axis=2, dtype=np.uint64)
    return codes.view(np.int64)


_OPERANDS: dict = {}


def _chunk_operands(params, plan: DensePlan, u0: int, u1: int, dim: int, device) -> tuple:
    """:func:`_make_chunk_operands`, cached per (parameters, chunk, device): built on the host and
    copied over, they cost about 1 ms per call, as long as the kernels themselves at 2**20."""
    key = (id(params), plan, u0, u1, dim, str(device))
    hit = _OPERANDS.get(key)
    if hit is None or hit[0] is not params:
        if len(_OPERANDS) >= 64:
            _OPERANDS.pop(next(iter(_OPERANDS)))
        hit = _OPERANDS[key] = (params, _make_chunk_operands(params, plan, u0, u1, dim, device))
    return hit[1]


def _make_chunk_operands(params, plan: DensePlan, u0: int, u1: int, dim: int, device) -> tuple:
    """A pieces (3, M_P, F_P) and the expansion matrix G (F_P, E_P) of tables [u0, u1)."""
    tables, z, nb = u1 - u0, plan.z, plan.buckets
    f_p, e_p = _pow2(tables * z), _pow2(tables * nb)
    proj, _ = linear_projection(Hyperplane(), params)
    a = torch.zeros((plan.dim_p, f_p), dtype=torch.float32)
    a[:dim, :tables * z] = torch.tensor(proj[:, u0 * z:u1 * z])
    g = torch.zeros((f_p, e_p), dtype=torch.float32)
    gt = torch.zeros((f_p, _table_columns(tables)), dtype=torch.float32)
    for u in range(tables):
        for t in range(z):
            g[u * z + t, u * nb:(u + 1) * nb] = float(2**t)
            gt[u * z + t, u] = float(2**t)
    return (_pieces(a.to(device)), g.to(_PIECE_TORCH).to(device), gt.to(_PIECE_TORCH).to(device), f_p, e_p,
            tables * nb, tables)


def _programs(device, n: int, per_sm: int = 4) -> int:
    """Programs of a persistent launch: ``per_sm`` per multiprocessor (at most 4 in the interpreter)."""
    if INTERPRET or device.type != "cuda":
        return max(1, min(4, triton.cdiv(n, _BLOCK)))
    return per_sm * _multiprocessors(device.index)


@functools.lru_cache(maxsize=None)
def _multiprocessors(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lsh: LSHConfig, params, causal: bool,
                    store_ids: bool = False, segment: int | None = None, tuning: DenseTuning | None = None):
    """Algorithm 2 on the dense path: ``(out, counts[, query_ids, key_ids])`` as torch tensors.

    ``q``, ``k``, ``v`` are contiguous (float32 or bfloat16) on one device; ``out`` has ``v``'s
    dtype. With ``store_ids`` the kernels also write each row's bucket (the table's bits) per
    table, (ell, N) int32, so that a check can rebuild the reference from the kernels' own codes.
    """
    device = v.device
    n_q, dim = q.shape
    n_k, dim_v = v.shape
    plan = dense_plan(lsh, dim, dim_v)
    out = torch.empty((n_q, dim_v), dtype=v.dtype, device=device)
    counts = torch.empty(n_q, dtype=torch.int64, device=device)  # every row is written by the first chunk
    acc = torch.empty((n_q, plan.dim_v_p), dtype=torch.float32, device=device) if len(plan.chunks) > 1 else out
    qid = torch.empty((lsh.ell, n_q), dtype=torch.int32, device=device) if store_ids else counts
    kid = torch.empty((lsh.ell, n_k), dtype=torch.int32, device=device) if store_ids else counts
    xp, vp, sp = _x_pieces(q.dtype), _value_pieces(v.dtype), _sum_pieces(v.dtype)
    tuning = TUNING if tuning is None else tuning
    if segment is not None:
        tuning = dataclasses.replace(tuning, segment=segment)
    kb, qb = (tuning.causal_block, tuning.causal_block) if causal else (tuning.key_block, tuning.query_block)
    if causal:
        segment = tuning.causal_segment(n_k, device)
    for index, (u0, u1) in enumerate(plan.chunks):
        first, last = index == 0, index == len(plan.chunks) - 1
        a, g, gt, f_p, e_p, tcnb, tc = _chunk_operands(params, plan, u0, u1, dim, device)
        per = segment if causal else triton.cdiv(triton.cdiv(max(n_k, 1), _programs(
            device, n_k, tuning.key_programs_per_sm)), kb) * kb
        n_prog = max(1, triton.cdiv(n_k, per))
        part = torch.empty((n_prog, e_p, plan.dim_v_p), dtype=torch.float32, device=device)
        pcnt = torch.empty((n_prog, e_p), dtype=torch.int32, device=device)
        common = dict(M_P=plan.dim_p, F_P=f_p, E_P=e_p, NB=plan.buckets, TCNB=tcnb, DV_P=plan.dim_v_p,
                      X_PIECES=xp, PIECE=_PIECE)
        _dense_key_sums[(n_prog,)](k, v, a, g, part, pcnt, kid[u0:] if store_ids else kid, n_k, dim, dim_v,
                                   k.stride(0), v.stride(0), per, BLOCK=kb, TC=tc, V_PIECES=vp,
                                   STORE_IDS=store_ids, PREFETCH=tuning.prefetch, **tuning.launch(tuning.key_warps),
                                   **common)
        if causal:  # exclusive prefix over segments: float64 sums, int64 counts
            running = (torch.cumsum(part, 0, dtype=torch.float64) - part).to(torch.float32).transpose(1, 2)
            seen = torch.cumsum(pcnt, 0, dtype=torch.int64) - pcnt
            _dense_causal[(n_prog,)](q, k, v, a, g, gt, running.contiguous(), seen, acc, counts, out, n_q, dim,
                                     dim_v, q.stride(0), k.stride(0), v.stride(0), out.stride(0), segment, BLOCK=kb,
                                     TC=tc, T_P=_table_columns(tc), V_PIECES=vp, S_PIECES=sp, FIRST=first,
                                     LAST=last, **tuning.launch(tuning.causal_warps), **common)
            if store_ids:  # the causal kernel hashes queries itself; ids for a check come from the key kernel
                _dense_query_ids(q, a, g, qid[u0:], n_q, dim, tc, **common)
        else:
            sums = part.sum(0, dtype=torch.float64).to(torch.float32)
            blocks = triton.cdiv(n_q, qb)
            n_qprog = blocks if tuning.query_programs_per_sm == 0 else min(blocks, _programs(
                device, n_q, tuning.query_programs_per_sm))
            _dense_query[(n_qprog,)](q, a, g, sums, pcnt.sum(0, dtype=torch.int64), acc, counts, out,
                                     qid[u0:] if store_ids else qid, n_q, dim, dim_v, q.stride(0), out.stride(0),
                                     triton.cdiv(blocks, n_qprog), BLOCK=qb, TC=tc, S_PIECES=sp, FIRST=first,
                                     LAST=last, STORE_IDS=store_ids, PREFETCH=tuning.prefetch,
                                     **tuning.launch(tuning.query_warps), **common)
    if store_ids:
        return out, counts, qid, kid
    return out, counts


def _dense_query_ids(q, a, g, qid, n_q, dim, tc, **common) -> None:
    """Bucket ids of the queries (the key-sum kernel over q, its sums discarded)."""
    n_prog = max(1, triton.cdiv(n_q, _BLOCK))
    part = torch.empty((n_prog, common["E_P"], common["DV_P"]), dtype=torch.float32, device=q.device)
    pcnt = torch.empty((n_prog, common["E_P"]), dtype=torch.int32, device=q.device)
    _dense_key_sums[(n_prog,)](q, q, a, g, part, pcnt, qid, n_q, dim, min(dim, common["DV_P"]), q.stride(0),
                               q.stride(0), _BLOCK, BLOCK=_BLOCK, TC=tc, V_PIECES=1, STORE_IDS=True, PREFETCH=False,
                               num_warps=4, **common)


# ------------------------------------------------------------------------------ general codes
def triton_codes(x: torch.Tensor, lsh: LSHConfig, params, tables: tuple[int, int]) -> torch.Tensor:
    """Codes (T, N) int64 of rows ``x`` for tables ``[u0, u1)``, equal to :mod:`anna.lsh`'s up to rounding ties."""
    family = lsh.family
    u0, u1 = tables
    n, dim = x.shape
    z = params.z
    device = x.device
    codes = torch.empty((u1 - u0, n), dtype=torch.int64, device=device)
    if n == 0:
        return codes
    m_p = _pow2(dim)
    xp = _x_pieces(x.dtype)
    mult = code_multipliers(params)[u0:u1]
    if isinstance(family, CrossPolytope):
        mats = rotation_stack(family, params)[u0 * z:u1 * z]  # (F, D, D): y = M x
        d_p = _pow2(mats.shape[1])
        r = torch.zeros((mats.shape[0], m_p, d_p), dtype=torch.float32)
        r[:, :dim, :mats.shape[1]] = torch.tensor(np.ascontiguousarray(mats[:, :, :dim].transpose(0, 2, 1)))
        r_pieces = _pieces(r).to(device)
        per = 8
        for t0 in range(0, u1 - u0, per):
            t1 = min(u1 - u0, t0 + per)
            _cross_polytope_codes[(triton.cdiv(n, _BLOCK),)](
                x, r_pieces[t0 * z:t1 * z], torch.tensor(mult[t0:t1].reshape(-1), device=device), codes[t0:t1],
                n, dim, x.stride(0), z, t1 - t0, BLOCK=_BLOCK, M_P=m_p, D_P=d_p, T_P=_pow2(per), X_PIECES=xp,
                PIECE=_PIECE, num_warps=4)
        return codes
    if not isinstance(family, (Hyperplane, E2LSH)):
        raise ParameterError(f"triton_codes hashes Hyperplane, E2LSH and CrossPolytope, got {family!r}")
    proj, offsets = linear_projection(family, params)
    per = max(1, min(u1 - u0, 128 // _pow2(z, 1)))
    f_p = _pow2(per * z)
    n_chunks = triton.cdiv(u1 - u0, per)
    a = torch.zeros((n_chunks, m_p, f_p), dtype=torch.float32)
    off = torch.zeros((n_chunks, f_p), dtype=torch.float64)
    mul = torch.zeros((n_chunks, f_p), dtype=torch.int64)
    for c in range(n_chunks):
        t0, t1 = u0 + c * per, min(u1, u0 + (c + 1) * per)
        width = (t1 - t0) * z
        a[c, :dim, :width] = torch.tensor(proj[:, t0 * z:t1 * z])
        off[c, :width] = torch.tensor(offsets[t0 * z:t1 * z])
        mul[c, :width] = torch.tensor(mult[t0 - u0:t1 - u0].reshape(-1))
    _linear_codes[(triton.cdiv(n, _BLOCK), n_chunks)](
        x, _pieces(a).to(device), off.to(device), mul.to(device), codes, n, dim, x.stride(0), z, per, u1 - u0,
        BLOCK=_BLOCK, M_P=m_p, F_P=f_p, T_P=_pow2(per), X_PIECES=xp, PIECE=_PIECE,
        IS_E2LSH=isinstance(family, E2LSH), num_warps=4)
    return codes
