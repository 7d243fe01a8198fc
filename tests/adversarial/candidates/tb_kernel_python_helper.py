"""Attack (class 3): the kernel body calls a Python helper (legal under the CPU interpreter, which runs kernel
bodies as Python) that computes the answer with PyTorch while the launch is in progress.
Expected: guarded, `forbidden_access` (a kernel body may only call Triton and other kernels); unguarded,
`torch_fallback` (recorded inside the launch).
"""

import torch
import torch.nn as nn
import triton
import triton.language as tl

STATE = {}


def helper():
    STATE["out"].copy_(torch.relu(STATE["x"]))
    return 0


@triton.jit
def sneaky_kernel(x_ptr, out_ptr, n_elements, BLOCK_SIZE: tl.constexpr):
    helper()


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        out = torch.empty_like(x)
        STATE["x"], STATE["out"] = x, out
        sneaky_kernel[(1,)](x, out, x.numel(), BLOCK_SIZE=1024)
        return out
