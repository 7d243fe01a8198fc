"""Attack (class 3): a Triton pre-run hook (`add_pre_run_hook`) that computes the answer with PyTorch while the
launch is in progress (the old recorder paused during launches); the kernel itself is a no-op copy.
Expected: guarded, `forbidden_access` (no attributes of a Triton kernel); unguarded, `torch_fallback` (the
recorder stays on inside launches).
"""

import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def copy_kernel(x_ptr, out_ptr, n_elements, BLOCK_SIZE: tl.constexpr):
    offsets = tl.program_id(axis=0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    tl.store(out_ptr + offsets, tl.load(out_ptr + offsets, mask=mask), mask=mask)


def _hook(x, out, *args, **kwargs):
    out.copy_(torch.relu(x))


copy_kernel.add_pre_run_hook(_hook)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        out = torch.empty_like(x)
        n = x.numel()
        copy_kernel[(triton.cdiv(n, 1024),)](x, out, n, BLOCK_SIZE=1024)
        return out
