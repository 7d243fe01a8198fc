import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def rms_norm_kernel(x_ptr, w_ptr, out_ptr, n_cols, eps, BLOCK_SIZE: tl.constexpr):
    row = tl.program_id(axis=0)
    x_row = x_ptr + row * n_cols
    out_row = out_ptr + row * n_cols
    # Pass 1: mean of squares.
    acc = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    for c0 in range(0, n_cols, BLOCK_SIZE):
        cols = c0 + tl.arange(0, BLOCK_SIZE)
        x = tl.load(x_row + cols, mask=cols < n_cols, other=0.0)
        acc += x * x
    inv_rms = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / n_cols + eps)
    # Pass 2: scale and apply the weight.
    for c0 in range(0, n_cols, BLOCK_SIZE):
        cols = c0 + tl.arange(0, BLOCK_SIZE)
        mask = cols < n_cols
        x = tl.load(x_row + cols, mask=mask, other=0.0)
        # Bug: the learnable weight is never applied.
        y = x * inv_rms
        tl.store(out_row + cols, y, mask=mask)


class ModelNew(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.randn(dim))

    def forward(self, x):
        x = x.contiguous()
        n_cols = x.shape[-1]
        n_rows = x.numel() // n_cols
        out = torch.empty_like(x)
        BLOCK_SIZE = min(triton.next_power_of_2(n_cols), 4096)
        num_warps = 8 if BLOCK_SIZE >= 2048 else 4
        rms_norm_kernel[(n_rows,)](
            x, self.weight, out, n_cols, self.eps, BLOCK_SIZE=BLOCK_SIZE, num_warps=num_warps
        )
        return out
