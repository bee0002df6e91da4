"""Every script in examples/ runs to completion (each asserts its own result)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script):
    env = {**os.environ, "COLUMNS": "120"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_blocks(marker: str) -> list[str]:
    text = README.read_text()
    blocks = [part.split("```", 1)[0] for part in text.split("```python\n")[1:]]
    return [block for block in blocks if marker in block]


def test_readme_protocol_toolkit_example_runs_and_asserts_its_result():
    blocks = _readme_blocks("mpc_sim.protocols.toolkit")
    assert len(blocks) == 1
    exec(compile(blocks[0], "README.md (toolkit example)", "exec"), {})
