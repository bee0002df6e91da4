"""Every docstring example of the library runs and prints what it says.

Modules are found on disk (not by importing), so a module that fails to import is a failing
test here, never a silently missing one.
"""
import doctest
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mpc_sim", "anna", "reductions")
TOP_LEVEL_MODULES = ("_anna_mpc_numba_cache",)


def _module_names() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names + list(TOP_LEVEL_MODULES)


MODULES = _module_names()

# optional extras: their modules' examples run where the extra is installed, else skip saying why
OPTIONAL = {"anna.gpu": ("torch",), "anna.gpu.triton_path": ("torch", "triton"), "anna.gpu.check": ("torch",)}


def _missing_extra(name: str) -> str | None:
    for prefix in sorted(OPTIONAL, key=len, reverse=True):
        if name == prefix or name.startswith(prefix + "."):
            missing = [dep for dep in OPTIONAL[prefix] if importlib.util.find_spec(dep) is None]
            return f"{name} needs {', '.join(missing)} (an optional extra)" if missing else None
    return None


def test_every_package_is_searched():
    assert {name.split(".")[0] for name in MODULES} == set(PACKAGES) | set(TOP_LEVEL_MODULES)
    assert "mpc_sim.simulator" in MODULES and "mpc_sim" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    missing = _missing_extra(name)
    if missing:
        pytest.skip(missing)
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    for test in finder.find(module, name, extraglobs={"np": importlib.import_module("numpy")}):
        if test.examples:
            runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)
