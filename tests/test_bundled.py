"""Every bundled problem: its Triton solution is `ok`, its wrong solution is `mismatch`, in the real sandbox."""

from __future__ import annotations

import pytest

from kernelrl.sandbox import bundled_problems

NAMES = sorted(bundled_problems())
CATEGORIES = {
    "elementwise_add",
    "relu",
    "gelu",
    "swish",
    "sum_reduction",
    "max_reduction",
    "softmax",
    "log_softmax",
}


def test_bundled_set_covers_the_categories(problems):
    assert len(problems) >= 12
    assert CATEGORIES | {
        "layer_norm",
        "rms_norm",
        "matmul",
        "linear_relu",
        "mse_loss",
        "cross_entropy",
    } <= set(problems)
    for p in problems.values():
        assert {"solution", "wrong", "reasoning"} <= set(p.extras), p.name
        assert 40 <= len(p.extras["reasoning"].split()) <= 200, p.name


@pytest.mark.parametrize("name", NAMES)
def test_solution_is_ok(evaluator, problems, name):
    v = evaluator.evaluate(problems[name], problems[name].extras["solution"])
    assert v.status == "ok", (v.error, v.hacks, v.log_tail[-1500:])
    assert v.correct and v.compiled and v.executed and v.backend == "triton"
    assert len(v.checks) >= 4 and len({c.variant for c in v.checks}) >= 2
    assert v.speedup is None and v.device == "cpu" and v.isolation == "bwrap"


@pytest.mark.parametrize("name", NAMES)
def test_wrong_solution_is_mismatch(evaluator, problems, name):
    v = evaluator.evaluate(problems[name], problems[name].extras["wrong"])
    assert v.status == "mismatch", (v.status, v.error, v.hacks)
    assert not v.correct and v.hacks == []
