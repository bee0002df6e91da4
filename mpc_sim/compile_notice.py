"""Saying when numba compiles kernels: the first run of a command compiles (tens of seconds on
a slow machine), later runs load them from numba's cache and say nothing.

:func:`announce_compiles` listens to numba's ``numba:compile`` events, which fire only for real
compilations (a kernel loaded from the cache fires none): at the first one it prints that kernels
are being compiled, and when the block ends how many were compiled and how long that took.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from numba.core import event

__all__ = ["announce_compiles", "CompileListener"]


class CompileListener(event.Listener):
    """Counts numba compilations (nested ones inside a compilation count once) and their time;
    calls ``on_first`` at the first one."""

    def __init__(self, on_first: Callable[[], None]):
        self.on_first = on_first
        self.kernels = 0
        self.seconds = 0.0
        self._announced = False
        self._depth = threading.local()
        self._started = threading.local()

    def on_start(self, ev: event.Event) -> None:
        depth = getattr(self._depth, "value", 0)
        if depth == 0:
            if not self._announced:
                self._announced = True
                self.on_first()
            self._started.value = time.perf_counter()
        self._depth.value = depth + 1

    def on_end(self, ev: event.Event) -> None:
        self._depth.value = getattr(self._depth, "value", 1) - 1
        if self._depth.value == 0:
            self.kernels += 1
            self.seconds += time.perf_counter() - self._started.value


@contextmanager
def announce_compiles(say: Callable[[str], None]) -> Iterator[CompileListener]:
    """Within the block, ``say`` a line when numba starts compiling kernels and, at the end, how
    many it compiled and how long that took (nothing when every kernel came from the cache).

    Examples
    --------
    >>> lines = []
    >>> with announce_compiles(lines.append) as listener:
    ...     pass
    >>> lines, listener.kernels
    ([], 0)
    """
    listener = CompileListener(lambda: say("compiling numba kernels (first run only: they are cached for later runs)"))
    event.register("numba:compile", listener)
    try:
        yield listener
    finally:
        event.unregister("numba:compile", listener)
        if listener.kernels:
            say(f"compiled {listener.kernels} numba kernels in {listener.seconds:.1f} s (cached from now on)")
