"""numba's cache is keyed by the project's numba sources: an edited callee in another module is
never served stale (:mod:`_anna_mpc_numba_cache`).

The end-to-end tests build a two-module package in a temporary folder (a callee module and a
caller module with ``cache=True`` kernels), configured through ``configure_numba_cache`` the way
``anna``, ``mpc_sim`` and ``reductions`` configure themselves, and run it in fresh processes.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import anna  # noqa: F401  (configures the process's cache, as every use of the project does)
from _anna_mpc_numba_cache import (MARKER, PROJECT_PACKAGES, NumbaCache, configure_numba_cache, numba_sources,
                                   sources_key)

ROOT = Path(__file__).resolve().parents[1]

CALLEE = """
import numba

@numba.njit(cache=True)
def offset():
    return {value}
"""

CALLER = """
import numba

from .callee import offset

@numba.njit(cache=True)
def shifted(x):
    return x + offset()
"""

CONFIGURED_INIT = """
from pathlib import Path

from _anna_mpc_numba_cache import configure_numba_cache as _configure_numba_cache

CACHE = _configure_numba_cache([Path(__file__).parent], name="toy", root={root!r})
"""

REPORT = """
import dataclasses, json, numba, toy, toy.caller
print(json.dumps({"value": int(toy.caller.shifted(1)), "hits": sum(toy.caller.shifted.stats.cache_hits.values()),
                  "cache": dataclasses.astuple(toy.CACHE) if hasattr(toy, "CACHE") else None,
                  "numba_dir": numba.config.CACHE_DIR}))
"""


def _make_package(tmp_path: Path, *, configured: bool, root: str | os.PathLike = "") -> Path:
    package = tmp_path / "toy"
    package.mkdir()
    init = CONFIGURED_INIT.format(root=str(root or tmp_path / "cache")) if configured else ""
    (package / "__init__.py").write_text(init)
    (package / "caller.py").write_text(CALLER)
    _set_offset(package, 1)
    return package


def _set_offset(package: Path, value: int) -> None:
    (package / "callee.py").write_text(CALLEE.format(value=value))


def _run(tmp_path: Path, **environment: str) -> dict:
    """Import the toy package in a fresh process; its result, cache hits and cache setting."""
    env = {name: value for name, value in os.environ.items() if name not in ("NUMBA_CACHE_DIR", MARKER)}
    env.update(PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]), PYTHONDONTWRITEBYTECODE="1", **environment)
    done = subprocess.run([sys.executable, "-W", "error", "-c", REPORT], cwd=tmp_path, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_editing_only_the_callee_module_gives_the_new_result_in_the_next_process(tmp_path):
    package = _make_package(tmp_path, configured=True)
    first = _run(tmp_path)
    assert first["value"] == 2 and first["hits"] == 0
    assert first["cache"][0] == "keyed" and first["numba_dir"] == first["cache"][1]
    assert Path(first["cache"][1]).parent == tmp_path / "cache"
    assert _run(tmp_path)["hits"] == 1              # unchanged sources: loaded from the cache
    _set_offset(package, 10)                           # the caller's module is untouched
    edited = _run(tmp_path)
    assert edited["value"] == 11 and edited["hits"] == 0
    assert edited["cache"][1] != first["cache"][1]
    assert _run(tmp_path)["hits"] == 1


def test_plain_numba_caching_serves_the_stale_callee_the_gap_being_closed(tmp_path):
    package = _make_package(tmp_path, configured=False)
    assert _run(tmp_path)["value"] == 2
    _set_offset(package, 10)
    stale = _run(tmp_path)
    assert stale["value"] == 2 and stale["hits"] == 1     # the caller's old machine code, from __pycache__


def test_a_cache_dir_set_by_the_user_is_used_as_it_is(tmp_path):
    _make_package(tmp_path, configured=True)
    mine = str(tmp_path / "mine")
    report = _run(tmp_path, NUMBA_CACHE_DIR=mine)
    assert report["cache"][:2] == ["user", mine] and report["numba_dir"] == mine


def test_a_directory_inherited_from_our_parent_process_is_recomputed_for_this_tree(tmp_path):
    _make_package(tmp_path, configured=True)
    parent = str(tmp_path / "anna-mpc-0000000000000000")
    report = _run(tmp_path, NUMBA_CACHE_DIR=parent, **{MARKER: parent})
    assert report["cache"][0] == "keyed" and report["numba_dir"] == report["cache"][1] != parent


def test_an_unwritable_cache_root_leaves_numbas_default_without_warnings(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    _make_package(tmp_path, configured=True, root=blocker)
    report = _run(tmp_path)                            # -W error: any warning fails the run
    assert report["cache"][:2] == ["numba-default", None] and report["numba_dir"] == ""
    assert report["value"] == 2 and list((tmp_path / "toy" / "__pycache__").glob("caller.*.nbi"))


def _project_folders(root: Path) -> list[Path]:
    return [root / package for package in PROJECT_PACKAGES]


def test_the_project_key_changes_with_a_kernel_module_and_not_with_other_modules(tmp_path):
    for package in PROJECT_PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    key = sources_key(numba_sources(_project_folders(tmp_path)))
    assert key == sources_key(numba_sources(_project_folders(ROOT)))     # wherever the tree lies
    with open(tmp_path / "mpc_sim" / "cli.py", "a") as module:            # no numba there
        module.write("\n# a comment\n")
    assert sources_key(numba_sources(_project_folders(tmp_path))) == key
    with open(tmp_path / "anna" / "kernels" / "common.py", "a") as module:    # jitted helpers
        module.write("\n# a comment\n")
    assert sources_key(numba_sources(_project_folders(tmp_path))) != key


def test_every_module_with_cached_kernels_is_in_the_project_key():
    decorated = re.compile(r"^\s*@.*(cache=True|typed_kernel)", re.MULTILINE)
    cached = {path for folder in _project_folders(ROOT) for path in folder.rglob("*.py")
              if "__pycache__" not in path.parts and decorated.search(path.read_text())}
    assert len(cached) >= 10 and cached <= set(numba_sources(_project_folders(ROOT)))


def test_the_project_configures_its_cache_from_its_own_key():
    setting = configure_numba_cache()
    assert setting.key == sources_key(numba_sources(_project_folders(ROOT)))
    if setting.source == "keyed":
        assert setting.directory.endswith(f"anna-mpc-{setting.key}")


def test_a_setting_that_contradicts_itself_is_rejected():
    with pytest.raises(ValueError, match="source"):
        NumbaCache("somewhere", "/tmp", "0" * 16)
    with pytest.raises(ValueError, match="does not fit"):
        NumbaCache("keyed", None, "0" * 16)
