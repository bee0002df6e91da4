"""Every notebook in examples/ runs: its code cells executed in order with plain json + exec
(no nbclient or nbformat: nothing beyond the project's dependencies); none stores outputs."""
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.ipynb"))


def test_there_is_a_notebook():
    assert NOTEBOOKS


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_cells_run_and_no_outputs_are_stored(notebook, tmp_path, monkeypatch):
    cells = json.loads(notebook.read_text())["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert code, f"{notebook.name} has no code cell"
    for cell in code:
        assert cell.get("outputs") == [] and cell.get("execution_count") is None, f"{notebook.name} stores outputs"
    monkeypatch.chdir(tmp_path)                 # whatever a cell writes stays out of the repository
    namespace = {"__name__": "__main__"}
    for index, cell in enumerate(code):
        source = "".join(cell["source"])
        exec(compile(source, f"{notebook.name}[code cell {index}]", "exec"), namespace)
