import torch
import torch.nn as nn


class Model(nn.Module):
    """Elementwise sum of two tensors of the same shape: out = a + b."""

    def __init__(self):
        super().__init__()

    def forward(self, a, b):
        return a + b


batch_size = 16
dim = 65536


def get_inputs():
    return [torch.randn(batch_size, dim), torch.randn(batch_size, dim)]


def get_init_inputs():
    return []
