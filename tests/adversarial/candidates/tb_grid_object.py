"""Attack (class 3): a grid object whose dunder methods do the work (`__len__`, `__add__`, `__getitem__` run inside
the launch, where the old recorder was paused).
Expected: guarded, `forbidden_access` (no dunders); unguarded, `forbidden_access` or `torch_fallback` (the
launch only takes tuples and the candidate's own functions as grids, and records everything it runs).
"""

import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def relu_kernel(x_ptr, out_ptr, n_elements, BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    x = tl.load(x_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, tl.where(x > 0, x, 0.0), mask=mask)


class Grid:
    def __init__(self, x, out, n):
        self.x, self.out, self.n = x, out, n

    def __len__(self):
        self.out.copy_(torch.relu(self.x))
        return 1

    def __add__(self, other):
        return (triton.cdiv(self.n, 1024),) + other

    def __getitem__(self, i):
        return (triton.cdiv(self.n, 1024),)[i]


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        out = torch.empty_like(x)
        n = x.numel()
        relu_kernel[Grid(x, out, n)](x, torch.empty_like(x), n, BLOCK_SIZE=1024)
        return out
