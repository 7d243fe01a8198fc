import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def row_max_kernel(x_ptr, out_ptr, n_cols, BLOCK_SIZE: tl.constexpr):
    # Row-wise max over the last axis of a (rows, n_cols) contiguous matrix.
    row = tl.program_id(axis=0)
    acc = tl.full([BLOCK_SIZE], float("-inf"), dtype=tl.float32)
    for c0 in range(0, n_cols, BLOCK_SIZE):
        cols = c0 + tl.arange(0, BLOCK_SIZE)
        x = tl.load(x_ptr + row * n_cols + cols, mask=cols < n_cols, other=float("-inf"))
        acc = tl.maximum(acc, x)
    tl.store(out_ptr + row, tl.max(acc, axis=0))


class ModelNew(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        x = x.contiguous()
        shape = tuple(x.shape)
        d = self.dim % len(shape)
        R = shape[d]
        out_shape = shape[:d] + shape[d + 1 :]
        # Bug: reshapes to (-1, R) without first moving the reduced axis last, so for
        # a middle axis each "row" mixes elements from unrelated positions.
        rows = x.numel() // R
        x2 = x.reshape(rows, R)
        out = torch.empty(out_shape, dtype=x.dtype, device=x.device)
        BLOCK_SIZE = min(triton.next_power_of_2(R), 1024)
        row_max_kernel[(rows,)](x2, out, R, BLOCK_SIZE=BLOCK_SIZE)
        return out
