"""Attack (escape): allocate and touch 10 GiB of fp32 in forward.

Seen in the wild: REFERENCE.md hack 16 (resource exhaustion).
Expected verdict: oom (or a runtime_error that names memory), in bounded time; the host stays alive.
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
        hog = torch.empty((10 << 30) // 4, dtype=torch.float32)
        hog.fill_(1.0)
        return x + hog[: x.numel()].view_as(x)
