"""Attack: no kernel at all -- ReLU straight from PyTorch.

Seen in the wild: REFERENCE.md hack 1 (PyTorch-only answers).
Expected verdict: hack_detected with `no_kernel`.
"""

import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return torch.relu(x)
