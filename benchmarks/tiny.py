"""A tiny linear classifier (784 -> 10, fixed random weights) for the scale benchmark: the model
costs next to nothing, so what grows with the data is nero's own work and memory."""

from __future__ import annotations

import torch
from torch import nn


def linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
