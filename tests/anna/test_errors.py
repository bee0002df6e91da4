"""anna raises its typed errors (anna.errors), never a bare ValueError."""
import ast
import inspect
from pathlib import Path

import pytest

import anna
import anna.errors as errors

ANNA = Path(anna.__file__).parent


def _bare_value_errors(path: Path) -> list[int]:
    """Lines of ``raise ValueError(...)`` / ``raise ValueError`` in one source file."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id == "ValueError":
                lines.append(node.lineno)
    return lines


def test_the_walk_finds_a_bare_value_error(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f(x):\n    if x:\n        raise ValueError('x')\n    raise ShapeError('y')\n")
    assert _bare_value_errors(source) == [3]


def test_no_module_of_anna_raises_a_bare_value_error():
    files = sorted(ANNA.rglob("*.py"))
    assert len(files) > 20
    found = {p.relative_to(ANNA).as_posix(): lines for p in files if (lines := _bare_value_errors(p))}
    assert not found, f"raise a class of anna.errors instead of ValueError at {found}"


def test_every_error_class_is_an_anna_error_and_a_value_error():
    classes = [getattr(errors, name) for name in errors.__all__]
    assert all(inspect.isclass(c) and issubclass(c, errors.AnnaError) and issubclass(c, ValueError) for c in classes)
    assert {"ShapeError", "ParameterError", "InputError", "ModelError", "NonFiniteError", "LoadError"} <= set(
        errors.__all__)


@pytest.mark.parametrize("name", ["attention.py", "transformer/model.py"])
def test_bool_arguments_are_checked_by_the_one_shared_validator(name):
    assert "def _check_bool" not in (ANNA / name).read_text()
