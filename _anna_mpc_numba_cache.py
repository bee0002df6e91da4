"""numba's on-disk cache, keyed by the project's kernel sources (so an edited callee is never stale).

numba files a ``cache=True`` kernel under an index stamped with the hash of the kernel's *own*
source file. A kernel that calls a jitted function of another module keeps the machine code it
built from the old callee after only the callee's module changes (an edit, a ``git pull``): it
silently returns stale results. :func:`configure_numba_cache` closes that gap by pointing numba's
cache at a directory named after a hash of every module that imports numba (kernels and the
jitted helpers they call)::

    <numba's user cache root>/anna-mpc-<sha256[:16]>      e.g. ~/.cache/numba/anna-mpc-3f0c...

Any change to one of those modules gives a new directory, hence a clean cache; an unchanged tree
(another run, another worktree with the same sources) reuses it. ``anna``, ``mpc_sim`` and
``reductions`` call it first thing in their ``__init__``, before any kernel module is imported:
numba reads ``numba.config.CACHE_DIR`` when a cached dispatcher is created (``@njit(cache=True)``
at import of the kernel module; :func:`anna.kernels.common.typed_kernel` at a kernel's first
call), in ``numba.core.caching.UserProvidedCacheLocator``, which numba tries before the
``__pycache__`` one (``InTreeCacheLocator``). The module lives at the top level because
``anna`` and ``mpc_sim`` never import each other, and both packages must agree on one directory:
the setting is global to the process.

* If you set ``NUMBA_CACHE_DIR`` yourself (or ``numba.config.CACHE_DIR`` before importing the
  packages), that directory is used as it is, without the key: numba's own rules apply there, so
  after editing a jitted callee clear it by hand.
* If the keyed directory cannot be created or written, numba's default is left in place
  (``__pycache__`` next to each module, else numba's user cache root), silently.
* Cache files from before (``*.nbi``/``*.nbc`` under ``__pycache__/``) are no longer used; delete
  them at will. Keyed directories of old source versions accumulate under the cache root
  (``rm -rf ~/.cache/numba/anna-mpc-*`` reclaims the space).
* What the key does not see: plain-Python constants that a kernel reads from a module which does
  not import numba (numba freezes global values into the machine code). Keep such constants in
  the kernel's module or in one that imports numba.

The chosen directory is exported as ``NUMBA_CACHE_DIR`` too (with a marker saying it is ours), so
numba's ``reload_config`` keeps it and child processes (Dask workers, the test suite's
subprocesses) recompute the key for the tree they import rather than mistaking it for a user
setting.

Examples
--------
>>> import pathlib, tempfile
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "kernels.py").write_text("import numba\\n")
>>> _ = (folder / "plain.py").write_text("x = 1\\n")
>>> [path.name for path in numba_sources([folder])]    # only modules that import numba
['kernels.py']
>>> key = sources_key(numba_sources([folder]))
>>> len(key), key == sources_key(numba_sources([folder]))
(16, True)
>>> _ = (folder / "kernels.py").write_text("import numba\\nY = 2\\n")
>>> key == sources_key(numba_sources([folder]))
False
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NumbaCache", "configure_numba_cache", "numba_sources", "sources_key", "PROJECT_PACKAGES", "MARKER"]

PROJECT_PACKAGES = ("anna", "mpc_sim", "reductions")
"""The packages whose numba modules make the project's key (folders next to this module)."""

MARKER = "ANNA_MPC_NUMBA_CACHE_DIR"
"""Environment variable holding the directory this module exported as ``NUMBA_CACHE_DIR``."""

_IMPORTS_NUMBA = re.compile(rb"^[ \t]*(?:import numba\b|from numba[ .])", re.MULTILINE)
_SOURCES = ("keyed", "user", "numba-default")


@dataclass(frozen=True)
class NumbaCache:
    """Where numba caches kernels in this process, and why.

    Parameters
    ----------
    source : {"keyed", "user", "numba-default"}
        ``"keyed"``: the directory named after the sources' key; ``"user"``: ``NUMBA_CACHE_DIR``
        (or ``numba.config.CACHE_DIR``) as the user set it; ``"numba-default"``: the keyed
        directory could not be written, numba's own choice applies.
    directory : str or None
        The cache directory (None for ``"numba-default"``).
    key : str
        The hash of the numba sources (computed in every case, for reports).
    """

    source: str
    directory: str | None
    key: str

    def __post_init__(self) -> None:
        if self.source not in _SOURCES:
            raise ValueError(f"source must be one of {_SOURCES}, got {self.source!r}")
        if (self.directory is None) != (self.source == "numba-default"):
            raise ValueError(f"directory {self.directory!r} does not fit source {self.source!r}")


def numba_sources(folders: Iterable[str | os.PathLike]) -> tuple[Path, ...]:
    """The ``.py`` files under ``folders`` (recursively, ``__pycache__`` skipped) that import numba.

    Sorted by path. A module that defines jitted functions imports numba, whether its kernels
    are cached or are helpers inlined into other modules' kernels.
    """
    return tuple(path for path, _ in _numba_modules(folders))


def sources_key(paths: Iterable[str | os.PathLike]) -> str:
    """The first 16 hex digits of a SHA-256 over the files' names and contents, in order.

    Names enter as the file's last two path parts (``package/module.py``), so the same sources
    give the same key wherever the tree lies.
    """
    return _digest((Path(path), Path(path).read_bytes()) for path in paths)


def _numba_modules(folders: Iterable[str | os.PathLike]) -> list[tuple[Path, bytes]]:
    """(path, content) of each module under ``folders`` that imports numba, sorted by path."""
    found = []
    for folder in folders:
        for path in Path(folder).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            content = path.read_bytes()
            if b"numba" in content and _IMPORTS_NUMBA.search(content):    # the cheap test first
                found.append((path, content))
    return sorted(found)


def _digest(modules: Iterable[tuple[Path, bytes]]) -> str:
    digest = hashlib.sha256()
    for path, content in modules:
        digest.update(f"{path.parent.name}/{path.name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()[:16]


def _writable(directory: str) -> bool:
    try:
        os.makedirs(directory, exist_ok=True)
        tempfile.TemporaryFile(dir=directory).close()    # numba's own test of a cache path
    except OSError:
        return False
    return True


def _default_root() -> str:
    from numba.misc.appdirs import AppDirs
    return AppDirs(appname="numba", appauthor=False).user_cache_dir


def configure_numba_cache(folders: Sequence[str | os.PathLike] | None = None, *, name: str = "anna-mpc",
                          root: str | os.PathLike | None = None) -> NumbaCache:
    """Point numba's cache at ``<root>/<name>-<key>``, the key hashing the numba modules of ``folders``.

    Call it before the modules defining ``cache=True`` kernels are imported. The project calls it
    with no arguments (``folders``: :data:`PROJECT_PACKAGES` next to this module) at the top of
    each package's ``__init__``; repeated calls with the same arguments reuse the first result.

    Parameters
    ----------
    folders : sequence of path-like, optional
        Folders whose modules importing numba make the key.
    name : str
        Prefix of the directory's name.
    root : path-like, optional
        Where the directory goes; numba's user cache root (``~/.cache/numba`` on Linux) by default.

    Returns
    -------
    NumbaCache
        The directory chosen and why; ``source="user"`` when ``NUMBA_CACHE_DIR`` was set by the
        user, ``"numba-default"`` when the keyed directory is not writable.
    """
    if folders is None:
        here = Path(__file__).resolve().parent
        folders = tuple(here / package for package in PROJECT_PACKAGES)
    return _configure(tuple(str(folder) for folder in folders), name, None if root is None else str(root))


@functools.lru_cache(maxsize=None)
def _configure(folders: tuple[str, ...], name: str, root: str | None) -> NumbaCache:
    from numba.core import config

    key = _digest(_numba_modules(folders))    # each file read once
    ours = os.environ.get(MARKER)
    from_environment = os.environ.get("NUMBA_CACHE_DIR", "")
    if from_environment and from_environment != ours:
        return NumbaCache("user", from_environment, key)
    if config.CACHE_DIR and config.CACHE_DIR != ours:
        return NumbaCache("user", config.CACHE_DIR, key)
    directory = os.path.join(_default_root() if root is None else root, f"{name}-{key}")
    if not _writable(directory):
        if ours:    # a directory inherited from a parent process, keyed for its tree: drop it
            _export(config, "")
        return NumbaCache("numba-default", None, key)
    _export(config, directory)
    return NumbaCache("keyed", directory, key)


def _export(config, directory: str) -> None:
    """Set numba's cache directory ("" for numba's default) in ``config`` and the environment."""
    config.CACHE_DIR = directory
    for variable in ("NUMBA_CACHE_DIR", MARKER):
        if directory:
            os.environ[variable] = directory
        else:
            os.environ.pop(variable, None)
    # numba re-reads every NUMBA_* variable when the environment changed since it last looked;
    # record ours as seen, so that re-read does not also undo settings made on numba.config
    seen = getattr(getattr(config, "_env_reloader", None), "old_environ", None)
    if isinstance(seen, dict):
        if directory:
            seen["NUMBA_CACHE_DIR"] = directory
        else:
            seen.pop("NUMBA_CACHE_DIR", None)
