"""What every group of kernels shares: typed kernels, thread control, prefetching, row adds.

Entry-point kernels (the ones Python calls) are declared with :func:`typed_kernel`: explicit
numba signatures (every array C-contiguous; arrays a kernel only reads are typed read-only, which
also accepts writable arrays) and ``cache=True``. They compile -- or load from numba's on-disk
cache -- on their first call rather than at import, so importing :mod:`anna` stays cheap and a
program pays only for the kernels it runs.

Examples
--------
>>> import numpy as np
>>> from numba import types
>>> @typed_kernel((array(types.float64, 1, readonly=True),))
... def total(x):
...     s = 0.0
...     for value in x:
...         s += value
...     return s
>>> total(np.arange(4.0))
6.0
>>> total.signatures
((Array(float64, 1, 'C', True, aligned=True),),)
"""
from __future__ import annotations

import functools
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

import numba
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "FLOATS",
    "array",
    "typed_kernel",
    "TypedKernel",
    "PARALLEL_WORK",
    "threads_for",
    "finite_sum",
    "PREFETCH_AHEAD",
    "prefetch_row",
    "add_row",
]

FLOATS = (types.float32, types.float64)
"""The value dtypes every kernel is compiled for."""


def array(dtype: types.Type, ndim: int, *, readonly: bool = False) -> types.Array:
    """A C-contiguous numba array type (``readonly`` for arrays the kernel never writes)."""
    return types.Array(dtype, ndim, "C", readonly=readonly)


class TypedKernel:
    """A numba kernel with explicit signatures, compiled (or loaded from the cache) on first call.

    ``py_func`` is the plain Python function; ``dispatcher`` compiles on first access.
    """

    def __init__(self, function: Callable, signatures: tuple, options: dict) -> None:
        functools.update_wrapper(self, function)
        self.py_func = function
        self.signatures = tuple(signatures)
        self._options = options
        self._dispatcher = None
        self._lock = threading.Lock()

    @property
    def dispatcher(self):
        """The numba dispatcher holding one compiled version per signature."""
        if self._dispatcher is None:
            with self._lock:
                if self._dispatcher is None:
                    self._dispatcher = njit(list(self.signatures), cache=True, **self._options)(self.py_func)
        return self._dispatcher

    def __call__(self, *args):
        dispatcher = self._dispatcher
        return (dispatcher if dispatcher is not None else self.dispatcher)(*args)


def typed_kernel(*signatures: tuple, **options) -> Callable[[Callable], TypedKernel]:
    """Declare an entry-point kernel: ``signatures`` are tuples of argument types; ``options`` go
    to :func:`numba.njit` (``parallel``, ``fastmath``...), with ``cache=True`` always."""
    def wrap(function: Callable) -> TypedKernel:
        return TypedKernel(function, signatures, options)
    return wrap


PARALLEL_WORK = 2**20
"""Below this much work (roughly: scalar operations) kernels run on one thread: waking the pool
costs tens of microseconds on a quiet machine and milliseconds on a busy one."""


@contextmanager
def threads_for(work: int) -> Iterator[None]:
    """Run the numba kernels called inside on one thread if ``work < PARALLEL_WORK``."""
    if work >= PARALLEL_WORK or numba.get_num_threads() == 1:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


@typed_kernel(*[(array(dtype, 1, readonly=True),) for dtype in FLOATS],
              parallel=True, fastmath={"reassoc", "contract"})
def finite_sum(flat):
    """Sum of a 1-D array in float64; finite exactly when every entry is finite (unless it overflows).

    Only reassociation is allowed (no 'no-NaN' assumptions), so NaN and inf propagate; callers
    fall back to an element-wise check when the sum is not finite.
    """
    total = 0.0
    for i in prange(flat.shape[0]):
        total += flat[i]
    return total


@intrinsic
def _prefetch(typingctx, array, row, column):
    """Hint the CPU to fetch ``array[row, column]``'s cache line for writing (LLVM prefetch)."""
    signature = types.void(array, types.intp, types.intp)

    def codegen(context, builder, sig, args):
        array_type = sig.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, view, [args[1], args[2]],
                                           wraparound=False)
        byte_pointer = ir.IntType(8).as_pointer()
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer] + [ir.IntType(32)] * 3),
            "llvm.prefetch.p0")
        i32 = ir.IntType(32)
        builder.call(function, [builder.bitcast(pointer, byte_pointer), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()

    return signature, codegen


PREFETCH_AHEAD = 16
"""Rows to prefetch ahead: enough to cover an L3 / DRAM latency at a few ns per row."""


@njit(cache=True, inline="always")
def prefetch_row(array, row):
    """Prefetch every cache line of ``array[row]`` (2-D, C-contiguous)."""
    step = max(1, 64 // array.itemsize)
    for column in range(0, array.shape[1], step):
        _prefetch(array, row, column)


@njit(cache=True, fastmath=True, inline="always")
def add_row(dst, src):
    """``dst += src`` (1-D rows of equal length)."""
    for c in range(dst.shape[0]):
        dst[c] += src[c]
