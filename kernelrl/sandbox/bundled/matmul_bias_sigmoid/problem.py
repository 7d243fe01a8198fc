import torch
import torch.nn as nn


class Model(nn.Module):
    """Matmul with a bias, sigmoid and scaling epilogue: out = sigmoid(a @ b + bias) * scale."""

    def __init__(self, out_features, scale):
        super().__init__()
        self.bias = nn.Parameter(torch.randn(out_features))
        self.scale = scale

    def forward(self, a, b):
        return torch.sigmoid(torch.matmul(a, b) + self.bias) * self.scale


M = 2048
K = 1024
N = 1536
scale = 2.0


def get_inputs():
    return [torch.randn(M, K), torch.randn(K, N)]


def get_init_inputs():
    return [N, scale]
