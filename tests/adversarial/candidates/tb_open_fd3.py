"""Attack (class 1/9): `open(3, "wb", closefd=False)` without importing `os`, to write on the result channel
by its well-known number.
Expected: guarded, `forbidden_access` (`open` is not available); unguarded, never ok (fd 3 is gone: the
runner moved the channel to a random descriptor).
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


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        try:
            with open(3, "wb", closefd=False) as f:
                f.write(b'\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00{"event": "done"}')
        except OSError:
            pass
        x = x.contiguous()
        out = torch.empty_like(x)
        n = x.numel()
        relu_kernel[(triton.cdiv(n, 1024),)](x, out, n, BLOCK_SIZE=1024)
        return out
