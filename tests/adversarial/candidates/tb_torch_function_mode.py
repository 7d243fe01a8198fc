"""Attack (class 9): a TorchFunctionMode entered at import, acting on the runner's own calls after forward (it
could rewrite outputs as the runner encodes them).
Expected: guarded, `forbidden_access` (torch.overrides); unguarded, `recorder_tamper` (a function mode on the
stack).
"""

import torch
import torch.nn as nn
import triton
import triton.language as tl
from torch.overrides import TorchFunctionMode


class Rewrite(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


Rewrite().__enter__()


@triton.jit
def relu_kernel(x_ptr, out_ptr, n_elements, BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    x = tl.load(x_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, tl.where(x > 0, x, 0.0), mask=mask)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        out = torch.empty_like(x)
        n = x.numel()
        relu_kernel[(triton.cdiv(n, 1024),)](x, out, n, BLOCK_SIZE=1024)
        return out
