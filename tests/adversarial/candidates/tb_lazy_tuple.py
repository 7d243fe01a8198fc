"""Attack (class 3): return a tuple subclass whose iteration computes the answer after `forward` returned,
outside the recording window.
Expected: guarded, `forbidden_access` (classes derive only from modules); unguarded, `non_tensor_output`
(outputs are materialised inside the window; only an exact tuple/list of plain tensors counts).
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


class Lazy(tuple):
    def __iter__(self):
        return iter([torch.relu(self[0])])


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        out = torch.empty_like(x)
        n = x.numel()
        relu_kernel[(triton.cdiv(n, 1024),)](x, out, n, BLOCK_SIZE=1024)
        return Lazy((x,))
