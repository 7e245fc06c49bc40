"""Every Python block of the README runs, in order, in one namespace: a documented call cannot break."""
import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_python_blocks():
    assert len(python_blocks()) >= 2


@pytest.mark.slow
def test_every_python_block_of_the_readme_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever a block writes lands here
    torch.set_num_threads(2)
    namespace: dict = {"__name__": "readme"}
    for k, block in enumerate(python_blocks()):
        try:
            exec(compile(block, f"README.md python block {k}", "exec"), namespace)
        except Exception as exc:  # name the block, so the failure points at the README
            raise AssertionError(f"README python block {k} fails: {type(exc).__name__}: {exc}\n{block}") from exc
