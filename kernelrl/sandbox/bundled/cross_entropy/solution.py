import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def cross_entropy_row_kernel(logits_ptr, targets_ptr, losses_ptr, n_cols, BLOCK_SIZE: tl.constexpr):
    # Stage 1: per-row loss = logsumexp(row) - row[target], via one online-softmax pass.
    row = tl.program_id(axis=0)
    x_row = logits_ptr + row * n_cols
    m = tl.full([BLOCK_SIZE], float("-inf"), dtype=tl.float32)
    s = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    for c0 in range(0, n_cols, BLOCK_SIZE):
        cols = c0 + tl.arange(0, BLOCK_SIZE)
        x = tl.load(x_row + cols, mask=cols < n_cols, other=float("-inf"))
        m_new = tl.maximum(m, x)
        # Lanes that have only seen padding keep m_new = -inf; shift them by 0 to avoid inf - inf.
        shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        s = s * tl.exp(m - shift) + tl.exp(x - shift)
        m = m_new
    row_max = tl.max(m, axis=0)
    lse = row_max + tl.log(tl.sum(s * tl.exp(m - row_max), axis=0))
    target = tl.load(targets_ptr + row)
    target_logit = tl.load(x_row + target)
    tl.store(losses_ptr + row, lse - target_logit)


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

    def forward(self, logits, targets):
        logits = logits.contiguous()
        targets = targets.contiguous()
        n_rows, n_cols = logits.shape
        losses = torch.empty(n_rows, dtype=torch.float32, device=logits.device)
        BLOCK_SIZE = min(triton.next_power_of_2(n_cols), 4096)
        num_warps = 8 if BLOCK_SIZE >= 2048 else 4
        cross_entropy_row_kernel[(n_rows,)](
            logits, targets, losses, n_cols, BLOCK_SIZE=BLOCK_SIZE, num_warps=num_warps
        )
        out = torch.empty((), dtype=logits.dtype, device=logits.device)
        mean_kernel[(1,)](losses, out, n_rows, n_rows, BLOCK_SIZE=1024)
        return out
