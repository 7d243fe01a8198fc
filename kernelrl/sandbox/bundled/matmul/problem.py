import torch
import torch.nn as nn


class Model(nn.Module):
    """Dense fp32 matrix multiplication: out = a @ b with a of shape (M, K) and b of shape (K, N)."""

    def __init__(self):
        super().__init__()

    def forward(self, a, b):
        return torch.matmul(a, b)


M = 1024
K = 1536
N = 2048


def get_inputs():
    return [torch.randn(M, K), torch.randn(K, N)]


def get_init_inputs():
    return []
