from __future__ import annotations

import json
import subprocess
import sys

from kernelrl.sandbox.problem import BUNDLED_DIR

RELU = BUNDLED_DIR / "relu"


def kernelrl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kernelrl.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_check_json_and_completion_file(tmp_path):
    completion = tmp_path / "completion.md"
    completion.write_text(
        "I'll fuse the mask into one pass.\n\n```python\n" + (RELU / "solution.py").read_text() + "```\n"
    )
    r = kernelrl(
        "check",
        "--problem",
        str(RELU / "problem.py"),
        "--candidate",
        str(completion),
        "--device",
        "cpu",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    v = json.loads(r.stdout)
    assert v["status"] == "ok" and v["schema_version"] == 2 and v["speedup"] is None


def test_check_human_summary_for_a_wrong_candidate():
    r = kernelrl(
        "check", "--problem", "bundled:relu", "--candidate", str(RELU / "wrong.py"), "--device", "cpu"
    )
    assert r.returncode == 0  # a verdict, whatever it is, is not a usage error
    assert "status     mismatch" in r.stdout and "FAIL" in r.stdout


def test_usage_errors_are_one_line_and_nonzero(tmp_path):
    r = kernelrl("check", "--problem", "/nope.py", "--candidate", str(RELU / "solution.py"))
    assert r.returncode == 2 and r.stderr.strip() == "kernelrl: error: problem file not found: /nope.py"
    r = kernelrl("check", "--problem", "bundled:relu", "--candidate", str(tmp_path / "missing.py"))
    assert r.returncode == 2 and "candidate file not found" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.py"
    bad.write_text("def f(:\n")
    r = kernelrl("check", "--problem", str(bad), "--candidate", str(RELU / "solution.py"))
    assert r.returncode == 2 and "syntax error at line 1" in r.stderr
    r = kernelrl("check", "--problem", "bundled:nope", "--candidate", str(RELU / "solution.py"))
    assert r.returncode == 2 and "no bundled problem 'nope'" in r.stderr
