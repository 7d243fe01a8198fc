"""CUDA candidates on a CPU machine, format errors, and the process-only fallback profile."""

from __future__ import annotations

import pytest

from kernelrl.sandbox import Evaluator

CUDA_RELU = r'''
import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

cuda_src = """
__global__ void relu_kernel(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] > 0.f ? x[i] : 0.f;
}
torch::Tensor relu_cuda(torch::Tensor x) {
    auto y = torch::empty_like(x);
    int n = x.numel();
    relu_kernel<<<(n + 255) / 256, 256>>>(x.data_ptr<float>(), y.data_ptr<float>(), n);
    return y;
}
"""
mod = load_inline(name="relu_ext", cpp_sources="torch::Tensor relu_cuda(torch::Tensor x);", cuda_sources=cuda_src, functions=["relu_cuda"])


class ModelNew(nn.Module):
    def forward(self, x):
        return mod.relu_cuda(x)
'''


def test_cuda_candidate_compiles_and_is_not_executed_on_cpu(evaluator, problems):
    v = evaluator.evaluate(problems["relu"], CUDA_RELU)
    assert v.backend == "cuda" and v.status == "not_executed", (v.error, v.log_tail[-2000:])
    assert v.compiled and not v.executed and v.speedup is None


def test_cuda_compile_error_is_reported(evaluator, problems):
    v = evaluator.evaluate(problems["relu"], CUDA_RELU.replace("x[i] > 0.f", "undeclared_thing(x[i]) > 0.f"))
    assert v.status == "compile_error" and "undeclared_thing" in v.error


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty"),
        ("Just prose, no code at all.", "no code block"),
        ("```python\nimport torch\n```", "ModelNew"),
    ],
)
def test_format_errors(evaluator, problems, text, fragment):
    v = evaluator.evaluate(problems["relu"], text)
    assert v.status == "format_error" and fragment in v.error and not v.executed


def test_process_only_profile_runs_and_is_recorded(problems):
    with Evaluator(device="cpu", isolation_profile="process-only", run_timeout_s=30) as ev:
        ok = ev.evaluate(problems["relu"], problems["relu"].extras["solution"])
        bad = ev.evaluate(problems["relu"], problems["relu"].extras["wrong"])
    assert ok.status == "ok" and ok.isolation == "process-only"
    assert bad.status == "mismatch"


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown isolation profile"):
        Evaluator(device="cpu", isolation_profile="docker")
