from __future__ import annotations

import pytest

from kernelrl.sandbox import ProblemError, load_problem, load_problems
from kernelrl.sandbox.problem import BUNDLED_DIR

SRC = """import torch
import torch.nn as nn

class Model(nn.Module):
    def forward(self, x):
        return x * 2

n = 64

def get_inputs():
    return [torch.randn(n)]

def get_init_inputs():
    return []
"""


def test_load_from_source_file_and_directory(tmp_path):
    a = load_problem(SRC)
    (tmp_path / "level1").mkdir()
    f = tmp_path / "level1" / "7_double.py"
    f.write_text(SRC)
    (tmp_path / "level1" / "helper.py").write_text("x = 1\n")
    b = load_problem(f)
    assert a.id == b.id and len(a.id) == 16  # content hash: same source, same id
    assert b.name == "7_double" and b.level == "level1"
    found = load_problems(tmp_path)
    assert [p.name for p in found] == ["7_double"]  # non-problem files skipped
    assert load_problem(SRC.replace("x * 2", "x * 3")).id != a.id


@pytest.mark.parametrize(
    "arg, message",
    [
        ("/no/such/problem.py", "problem file not found"),
        ("import torch\nx = (\n", "syntax error at line 2"),
        ("import torch\ndef get_inputs():\n    return []\n", "defines no Model, get_init_inputs"),
    ],
)
def test_bad_problems_name_the_problem(arg, message):
    with pytest.raises(ProblemError, match=message):
        load_problem(arg)


def test_missing_directory():
    with pytest.raises(ProblemError, match="problem directory not found"):
        load_problems("/no/such/dir")


def test_bundled_dir_loads_recursively():
    assert len(load_problems(BUNDLED_DIR)) >= 12 * 1  # problem.py files; solutions define no Model
