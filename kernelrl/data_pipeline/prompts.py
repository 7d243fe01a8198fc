"""Prompt templates: the one place that says how a problem is put to a model (curation, training, eval).

KernelBench-style one-shot: a short system message, an example problem with its answer, then the task.
The model is asked for brief reasoning followed by exactly one fenced Python block defining ``ModelNew``;
that is the shape `kernelrl.sandbox.candidate.extract_candidate` reads. Code must be device-agnostic (take the device
from the inputs) so the same answer runs under the CPU Triton interpreter and on a GPU.
"""

from __future__ import annotations

BACKENDS = ("triton", "cuda")

SYSTEM = (
    "You are an expert GPU kernel engineer. You rewrite PyTorch programs as faster, numerically equivalent "
    "custom kernels. Answer with brief reasoning, then exactly one ```python code block."
)

_RULES = {
    "triton": (
        "Write `class ModelNew(nn.Module)` with the same constructor and forward signature as `Model`, doing "
        "the work in `@triton.jit` kernels launched from `forward`. Do not call the PyTorch operator you are "
        "replacing, do not fall back to PyTorch, and do not use `Model`. Allocate outputs on the inputs' "
        "device; never hard-code the device or the sizes. Keep the reasoning short."
    ),
    "cuda": (
        "Write `class ModelNew(nn.Module)` with the same constructor and forward signature as `Model`, doing "
        "the work in CUDA kernels compiled with `torch.utils.cpp_extension.load_inline` and called from "
        "`forward`. Do not call the PyTorch operator you are replacing, do not fall back to PyTorch, and do "
        "not use `Model`. Never hard-code the sizes. Keep the reasoning short."
    ),
}

_EXAMPLE_PROBLEM = """import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, a, b):
        return a + b


N = 4096


def get_inputs():
    return [torch.randn(N), torch.randn(N)]


def get_init_inputs():
    return []
"""

_EXAMPLE_ANSWER = {
    "triton": """Elementwise addition is memory-bound: one flat pass, 1024 elements per program, masked tail.

```python
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def add_kernel(a_ptr, b_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    a = tl.load(a_ptr + offs, mask=mask)
    b = tl.load(b_ptr + offs, mask=mask)
    tl.store(out_ptr + offs, a + b, mask=mask)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, a, b):
        a, b = a.contiguous(), b.contiguous()
        out = torch.empty_like(a)
        n = a.numel()
        add_kernel[(triton.cdiv(n, 1024),)](a, b, out, n, BLOCK=1024)
        return out
```""",
    "cuda": '''Elementwise addition is memory-bound: one thread per element, 256 threads per block.

```python
import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

source = """
#include <torch/extension.h>

__global__ void add_kernel(const float* a, const float* b, float* out, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
}

torch::Tensor add(torch::Tensor a, torch::Tensor b) {
    auto out = torch::empty_like(a);
    int64_t n = a.numel();
    add_kernel<<<(n + 255) / 256, 256>>>(a.data_ptr<float>(), b.data_ptr<float>(), out.data_ptr<float>(), n);
    return out;
}
"""

ext = load_inline(name="add_ext", cpp_sources="torch::Tensor add(torch::Tensor a, torch::Tensor b);",
                  cuda_sources=source, functions=["add"])


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, a, b):
        return ext.add(a.contiguous(), b.contiguous())
```''',
}


def _task(source: str) -> str:
    return f"```python\n{source.rstrip()}\n```"


def user_prompt(problem_source: str, backend: str = "triton", one_shot: bool = True) -> str:
    """The user turn: rules, the one-shot example (unless ``one_shot`` is False: a model fine-tuned on this
    format does not need it, and on a CPU its ~400 tokens dominate every step), then the problem."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    example = (
        f"Example problem:\n{_task(_EXAMPLE_PROBLEM)}\n\nExample answer:\n{_EXAMPLE_ANSWER[backend]}\n\n"
        if one_shot
        else ""
    )
    return f"{_RULES[backend]}\n\n{example}Now the problem to solve:\n{_task(problem_source)}"


def build_prompt(problem_source: str, backend: str = "triton", one_shot: bool = True) -> list[dict[str, str]]:
    """Chat messages (system + user) for one problem, in the conversational format TRL takes."""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": user_prompt(problem_source, backend, one_shot)},
    ]
