import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def sq_diff_partial_kernel(a_ptr, b_ptr, partial_ptr, n_elements, BLOCK_SIZE: tl.constexpr):
    # Stage 1: each program writes the sum of squared differences over its block.
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    a = tl.load(a_ptr + offsets, mask=mask, other=0.0)
    b = tl.load(b_ptr + offsets, mask=mask, other=0.0)
    d = a - b
    tl.store(partial_ptr + pid, tl.sum(d * d, axis=0))


@triton.jit
def mean_kernel(x_ptr, out_ptr, n, denom, BLOCK_SIZE: tl.constexpr):
    # Single program: deterministic sum of n values, divided by denom, written to a 0-dim output.
    acc = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    for start in range(0, n, BLOCK_SIZE):
        offs = start + tl.arange(0, BLOCK_SIZE)
        acc += tl.load(x_ptr + offs, mask=offs < n, other=0.0)
    tl.store(out_ptr, tl.sum(acc, axis=0) / denom)


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, predictions, targets):
        a = predictions.contiguous()
        b = targets.contiguous()
        n_elements = a.numel()
        BLOCK_SIZE = 4096
        n_blocks = triton.cdiv(n_elements, BLOCK_SIZE)
        partials = torch.empty(n_blocks, dtype=torch.float32, device=a.device)
        sq_diff_partial_kernel[(n_blocks,)](a, b, partials, n_elements, BLOCK_SIZE=BLOCK_SIZE)
        out = torch.empty((), dtype=a.dtype, device=a.device)
        mean_kernel[(1,)](partials, out, n_blocks, n_elements, BLOCK_SIZE=1024)
        return out
