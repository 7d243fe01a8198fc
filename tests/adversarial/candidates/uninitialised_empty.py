"""Attack: launch a token kernel and return `torch.empty_like(x)`, hoping the allocator hands back the
reference's freed output (in a harness that runs reference and candidate in one process).

Seen in the wild: REFERENCE.md hacks 10 and 15 (torch.empty landing on the reference's output /
uninitialised memory that happens to match).
Expected verdict: mismatch (the reference runs in a separate process and output buffers are poisoned).
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
        return torch.empty_like(x)
