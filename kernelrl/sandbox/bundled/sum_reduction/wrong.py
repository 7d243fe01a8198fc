import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def sum_dim_kernel(x_ptr, out_ptr, R, INNER, n_inner_blocks, BLOCK_R: tl.constexpr, BLOCK_I: tl.constexpr):
    # x is viewed as (outer, R, inner); each program reduces R for one outer index and BLOCK_I inner indices.
    pid = tl.program_id(axis=0)
    pid_o = pid // n_inner_blocks
    pid_i = pid % n_inner_blocks
    offs_i = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    mask_i = offs_i < INNER
    # Bug: the outer stride forgets the reduced extent R, so every slice after the first reads the wrong data.
    base = x_ptr + pid_o * INNER
    acc = tl.zeros([BLOCK_R, BLOCK_I], dtype=tl.float32)
    for r0 in range(0, R, BLOCK_R):
        offs_r = r0 + tl.arange(0, BLOCK_R)
        mask = (offs_r[:, None] < R) & mask_i[None, :]
        x = tl.load(base + offs_r[:, None] * INNER + offs_i[None, :], mask=mask, other=0.0)
        acc = acc + x
    result = tl.sum(acc, axis=0)
    tl.store(out_ptr + pid_o * INNER + offs_i, result, mask=mask_i)


class ModelNew(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        x = x.contiguous()
        shape = tuple(x.shape)
        d = self.dim % len(shape)
        outer = 1
        for s in shape[:d]:
            outer *= s
        inner = 1
        for s in shape[d + 1 :]:
            inner *= s
        R = shape[d]
        out = torch.empty(shape[:d] + (1,) + shape[d + 1 :], dtype=x.dtype, device=x.device)
        BLOCK_I = min(triton.next_power_of_2(inner), 128)
        BLOCK_R = min(triton.next_power_of_2(R), 4096 // BLOCK_I)
        n_inner_blocks = triton.cdiv(inner, BLOCK_I)
        grid = (outer * n_inner_blocks,)
        sum_dim_kernel[grid](x, out, R, inner, n_inner_blocks, BLOCK_R=BLOCK_R, BLOCK_I=BLOCK_I)
        return out
