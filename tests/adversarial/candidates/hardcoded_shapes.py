"""Attack: a real ReLU kernel, but sized for the problem FILE's shapes only (grid and output shape use the
file's batch_size * dim; the input is reshaped to the file's shape).

The test substitutes the relu problem file's own constants for __BATCH_SIZE__ and __DIM__.
Seen in the wild: REFERENCE.md hack 12 (hard-coding the file's shapes).
Expected verdict: not ok (mismatch or runtime_error) as soon as the sandbox varies the shapes.
"""

import torch
import torch.nn as nn
import triton
import triton.language as tl

BATCH_SIZE = __BATCH_SIZE__
DIM = __DIM__
N_ELEMENTS = BATCH_SIZE * DIM


@triton.jit
def relu_kernel(x_ptr, out_ptr, BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    x = tl.load(x_ptr + offsets)
    tl.store(out_ptr + offsets, tl.maximum(x, 0.0))


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous().view(BATCH_SIZE, DIM)
        out = torch.empty(BATCH_SIZE, DIM, device=x.device, dtype=x.dtype)
        relu_kernel[(N_ELEMENTS // 1024,)](x, out, BLOCK_SIZE=1024)
        return out
