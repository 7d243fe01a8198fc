"""Attack (class 9): shell processes started through the CUDA build with compiler flags (`-ccbin`, a compiler
wrapper), contained today only by the process limit.
Expected: `forbidden_access` (load_inline takes only optimisation/architecture/define flags).
"""

import torch
import torch.nn as nn
import triton
import triton.language as tl
from torch.utils.cpp_extension import load_inline

_ext = load_inline(
    name="relu_ext",
    cpp_sources="torch::Tensor relu(torch::Tensor x);",
    cuda_sources="torch::Tensor relu(torch::Tensor x) { return x; }",
    functions=["relu"],
    extra_cuda_cflags=["-ccbin=/bin/sh"],
)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return _ext.relu(x)
