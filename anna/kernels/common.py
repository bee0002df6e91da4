"""What every group of kernels shares: typed kernels, thread control, prefetching, row adds.

Entry-point kernels (the ones Python calls) are declared with :func:`typed_kernel`: explicit
numba signatures (every array C-contiguous; arrays a kernel only reads are typed read-only, which
also accepts writable arrays) and ``cache=True``. They compile -- or load from numba's on-disk
cache -- on their first call rather than at import, so importing :mod:`anna` stays cheap and a
program pays only for the kernels (and value dtypes) it runs.

Examples
--------
>>> import numpy as np
>>> finite_sum(np.arange(4.0)), finite_sum(np.ones(3, dtype=np.float32))   # two versions, by dtype
(6.0, 3.0)
>>> finite_sum.signatures[0]
(Array(float32, 1, 'C', True, aligned=True),)
"""
from __future__ import annotations

import functools
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..errors import ShapeError

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
"""The value dtypes kernels take."""
_NUMBA_FLOATS = {np.dtype(np.float32): types.float32, np.dtype(np.float64): types.float64}


def array(dtype: types.Type, ndim: int, *, readonly: bool = False) -> types.Array:
    """A C-contiguous numba array type (``readonly`` for arrays the kernel never writes)."""
    return types.Array(dtype, ndim, "C", readonly=readonly)


class TypedKernel:
    """A numba kernel with explicit signatures, each compiled (or loaded from the cache) on first use.

    Built by :func:`typed_kernel`. ``py_func`` is the plain Python function.
    """

    def __init__(self, function: Callable, signature: tuple | Callable[[types.Type], tuple],
                 options: dict) -> None:
        functools.update_wrapper(self, function)
        self.py_func = function
        self._per_dtype = callable(signature)
        self._signature = signature
        self._options = options
        self._dispatchers: dict = {}
        self._lock = threading.Lock()

    @property
    def signatures(self) -> tuple:
        """Every signature the kernel has (one per value dtype, or its one signature)."""
        if self._per_dtype:
            return tuple(self._signature(dtype) for dtype in FLOATS)
        return (self._signature,)

    def dispatcher(self, dtype: np.dtype | None = None):
        """The numba dispatcher of the version for values of ``dtype`` (None: the one signature)."""
        found = self._dispatchers.get(dtype)
        if found is None:
            if self._per_dtype:
                if dtype not in _NUMBA_FLOATS:
                    raise ShapeError(f"{self.__name__} takes float32 or float64 values, got {dtype}")
                signature = self._signature(_NUMBA_FLOATS[dtype])
            else:
                signature = self._signature
            with self._lock:
                found = self._dispatchers.get(dtype)
                if found is None:
                    found = njit([signature], cache=True, **self._options)(self.py_func)
                    self._dispatchers[dtype] = found
        return found

    def __call__(self, *args):
        return self.dispatcher(args[0].dtype if self._per_dtype else None)(*args)


def typed_kernel(signature: tuple | Callable[[types.Type], tuple], **options) -> Callable[[Callable], TypedKernel]:
    """Declare an entry-point kernel with explicit types and ``cache=True``.

    ``signature`` is a tuple of argument types, or a function of the value dtype (``float32`` or
    ``float64``) returning one: the kernel then has one version per dtype, picked by the dtype of
    its first argument and compiled only when first called with it. ``options`` go to
    :func:`numba.njit` (``parallel``, ``fastmath``...).
    """
    def wrap(function: Callable) -> TypedKernel:
        return TypedKernel(function, signature, options)
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


@typed_kernel(lambda dtype: (array(dtype, 1, readonly=True),), parallel=True, fastmath={"reassoc", "contract"})
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
