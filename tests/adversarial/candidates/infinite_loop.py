"""Attack (escape): spin forever inside forward after a kernel launch.

Only ever runs inside the sandboxed child.
Seen in the wild: REFERENCE.md hack 16 (resource exhaustion).
Expected verdict: timeout, returned within the run timeout plus a small margin.
"""

import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def touch_kernel(x_ptr, n_elements, BLOCK_SIZE: tl.constexpr):
    offsets = tl.arange(0, BLOCK_SIZE)
    tl.load(x_ptr + offsets, mask=offsets < n_elements)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        touch_kernel[(1,)](x, x.numel(), BLOCK_SIZE=16)
        while True:
            pass
