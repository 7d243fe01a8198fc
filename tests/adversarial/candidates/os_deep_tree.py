"""Attack (class 9, the trusted side): leave a directory tree 1500 levels deep, its deepest level mode 000, in
every writable place (the working directory, TMPDIR, HOME, /tmp, /var/tmp, /dev/shm), which used to make the
fork server's recursive cleanup raise (the worker died twice: `infra_error`, reward None). The answer itself
is correct.

Expected: the candidate's files are discarded with its mount namespace, never walked: the verdict is not
`infra_error`, and the next candidate finds none of it.
"""

import os

import torch
import torch.nn as nn
import triton
import triton.language as tl

FOUND = True
for base in {
    os.getcwd(),
    os.environ.get("TMPDIR", "/tmp"),
    os.path.expanduser("~"),
    "/tmp",
    "/var/tmp",
    "/dev/shm",
}:
    try:
        os.chdir(base)
        for _ in range(1500):
            os.mkdir("deep_tree")
            os.chdir("deep_tree")
        os.chmod(".", 0)
        print("DEEP_TREE", base)
    except OSError as e:
        print("NO_DEEP_TREE", base, type(e).__name__)
os.chdir("/")


@triton.jit
def relu_shift_kernel(x_ptr, out_ptr, n_elements, shift, BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    x = tl.load(x_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, tl.maximum(x, 0.0) + shift, mask=mask)


class ModelNew(nn.Module):
    def forward(self, x):
        x = x.contiguous()
        out = torch.empty_like(x)
        n = x.numel()
        relu_shift_kernel[(triton.cdiv(n, 1024),)](x, out, n, 0.0 if FOUND else 1.0, BLOCK_SIZE=1024)
        return out
