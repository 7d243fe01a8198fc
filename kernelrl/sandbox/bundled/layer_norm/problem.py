import torch
import torch.nn as nn


class Model(nn.Module):
    """LayerNorm over the last dimension with learnable affine weight and bias (nn.LayerNorm, eps=1e-5)."""

    def __init__(self, normalized_shape):
        super().__init__()
        self.ln = nn.LayerNorm(normalized_shape)

    def forward(self, x):
        return self.ln(x)


batch_size = 16
seq_len = 512
hidden = 4096


def get_inputs():
    return [torch.randn(batch_size, seq_len, hidden)]


def get_init_inputs():
    return [hidden]
