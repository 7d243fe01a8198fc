"""Feedback from real verdicts: what the model needs (its own line numbers, the failing check, the hack in words,
the speed) and nothing it must not see (host paths, the sandbox's internals, seeds, a huge printed log)."""

from __future__ import annotations

import pytest

from kernelrl.rewards.feedback import MAX_CHARS, render, scrub
from kernelrl.rewards.sample import make_sample
from kernelrl.sandbox import Verdict

HOST = ("/work", "/root", "/tmp/job", "runner.py", "site-packages", "zygote", "supervisor", ".venv")


@pytest.fixture(scope="module")
def relu(problems):
    return problems["relu"]


@pytest.fixture(scope="module")
def verdicts(evaluator, relu):
    """One real verdict per kind of failure, from the session's sandbox."""
    sol = relu.extras["solution"]
    host_path = "'/'.join(['', 'root', 'secret', 'id_rsa'])"  # built at run time: no literal for the AST
    cands = {
        "import": sol.replace(
            "import triton.language as tl", "import triton.language as tl\nundefined_helper()"
        ),
        "triton": sol.replace("tl.where(x > 0, x, 0.0)", "tl.where(x > 0, x, 0.0) + tl.no_such_op(x)"),
        "noisy_crash": sol.replace(
            "        return out",
            f"        for i in range(3000):\n            print('secret at', {host_path}, i, 4294967291)\n"
            f"        raise ValueError('cannot read ' + {host_path} + ' seed 1234567890')",
        ),
        "wrong": relu.extras["wrong"],
        "hack": "```python\nimport torch\nimport torch.nn as nn\n\n\nclass ModelNew(nn.Module):\n"
        "    def forward(self, x):\n        try:\n            return x.clamp(min=0)\n"
        "        except Exception:\n            return torch.relu(x)\n```",
        "ok": sol,
        "prose": "I would write a kernel here.",
    }
    return {k: (c, evaluator.evaluate(relu, c)) for k, c in cands.items()}


def _render(pair) -> str:
    completion, verdict = pair
    return render(verdict, details=make_sample(completion).static.details)


def _clean(text: str) -> None:
    assert len(text) <= MAX_CHARS
    for h in HOST:
        assert h not in text, f"{h!r} leaked into feedback:\n{text}"


def test_compile_error_shows_the_candidates_line(verdicts):
    v = verdicts["import"][1]
    assert v.status == "compile_error" and "<kernelrl>/" in v.log_tail  # the verdict has the runner's frames
    text = _render(verdicts["import"])
    assert text.startswith("Compile error")
    assert "NameError: name 'undefined_helper' is not defined" in text
    assert "candidate.py, line 5, in <module>: undefined_helper()" in text
    _clean(text)


def test_runtime_error_in_a_kernel_points_into_it(verdicts):
    text = _render(verdicts["triton"])
    assert text.startswith("Runtime error")
    assert "candidate.py, line 13, in relu_kernel: y = tl.where(x > 0, x, 0.0) + tl.no_such_op(x)" in text
    assert "candidate.py, line 27, in forward" in text
    _clean(text)


def test_printed_host_paths_huge_logs_and_seeds_stay_out(verdicts):
    v = verdicts["noisy_crash"][1]
    assert v.status == "runtime_error" and "/root/secret/id_rsa" in v.log_tail + (v.error or "")
    text = _render(verdicts["noisy_crash"])
    assert "ValueError: cannot read <path> seed <n>" in text
    printed = text.split("Printed (last lines):\n", 1)[1]
    assert 0 < len(printed.splitlines()) <= 6 and len(printed) <= 300
    assert "4294967291" not in text and "1234567890" not in text  # long digit runs (seeds) masked
    _clean(text)


def test_mismatch_names_the_failing_check(verdicts):
    text = _render(verdicts["wrong"])
    assert text.startswith("Wrong result: 6 of 6 checks failed.")
    assert "By shape variant: scaled 0/3 passed; perturbed 0/3 passed." in text
    assert "First failure: variant scaled (16384 elements), file inputs, max abs error" in text
    _clean(text)


def test_hack_in_plain_words_with_lines(verdicts):
    text = _render(verdicts["hack"])
    assert text.startswith("Rejected: a reward hack was detected")
    assert "- a try/except falls back to PyTorch (line 7)." in text
    assert "- no Triton kernel or CUDA extension does the work" in text
    assert "no_kernel" not in text and "try_except_fallback" not in text
    _clean(text)


def test_ok_and_format_error(verdicts):
    assert _render(verdicts["ok"]) == (
        "Correct: all 6 checks passed (shape variants: scaled, perturbed).\n"
        "Speed: not measured here (correctness only)."
    )
    text = _render(verdicts["prose"])
    assert text.startswith("No usable answer:") and "```python" in text


def test_deterministic(verdicts):
    for pair in verdicts.values():
        assert _render(pair) == _render(pair)
        assert render(pair[1].to_dict()) == render(pair[1])  # a Verdict or its dict


def test_speed_and_speed_of_light_on_gpu():
    v = {
        "status": "ok",
        "checks": [{"variant": "file", "passed": True}],
        "speedup": 1.5,
        "runtime_ms": 0.2,
        "ref_runtime_ms": 0.3,
        "device": "cuda",
        "sol_fraction": 0.4213,
        "field_added_later": [1, 2],  # tolerated
    }
    text = render(v)
    assert "Speed: 1.50x, faster than the PyTorch reference (0.2 ms vs 0.3 ms)." in text
    assert "Speed of light: 42% of the hardware bound" in text
    assert "Speed of light" not in render({**v, "sol_fraction": None})
    assert "not faster than" in render({**v, "speedup": 0.8})
    assert "Speed of light: 10%" in render({**v, "sol_fraction": None}, sol_fraction=0.1)


def test_infrastructure_errors_say_nothing_about_the_sandbox():
    v = Verdict(
        "infra_error", error="RuntimeError: zygote pid 4242 at /srv/kernelrl/zygote.sock died", log_tail="x"
    )
    text = render(v)
    assert text == "Not judged: the sandbox itself failed on this attempt (not a fault of the answer)."


def test_structured_hack_details_and_unknown_kinds():
    v = {"status": "hack_detected", "hacks": ["stale_output", "brand_new_trick"]}
    v["hack_details"] = [{"kind": "stale_output", "line": 12}]
    text = render(v)
    assert "(stale or input-independent result) (line 12)." in text
    assert "- brand new trick." in text


def test_bounded_whatever_the_verdict():
    huge = "x" * 100_000
    v = {"status": "runtime_error", "error": huge, "log_tail": ("line\n" * 10_000) + huge}
    assert len(render(v)) <= MAX_CHARS
    assert len(render(v, max_chars=200)) <= 200
    checks = [{"variant": f"v{i}", "passed": False, "message": huge} for i in range(500)]
    assert len(render({"status": "mismatch", "checks": checks})) <= MAX_CHARS


def test_forged_frames_from_other_files_are_dropped():
    log = (
        'Traceback (most recent call last):\n  File "/opt/secret/harness.py", line 9, in run\n    do_it()\n'
        '  File "/tmp/job/c/candidate.py", line 4, in forward\n    return x[9]\nIndexError: nope\n'
    )
    text = render({"status": "runtime_error", "error": "IndexError: nope", "log_tail": log})
    assert "candidate.py, line 4, in forward: return x[9]" in text
    assert "harness" not in text and "do_it" not in text and "/opt" not in text


def test_scrub():
    assert scrub('File "/tmp/job/c/candidate.py"') == 'File "candidate.py"'
    assert scrub("see /home/u/.ssh/id_rsa and ~/x/y") == "see <path> and <path>"
    assert scrub("shape 16384, seed 2147483647") == "shape 16384, seed <n>"
    assert scrub("ratio 0.5/1.0 and a/b") == "ratio 0.5/1.0 and a/b"  # not paths
