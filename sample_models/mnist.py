"""MNIST sample model architectures (torch only).

* :class:`MnistCNN` -- a small, fast CNN classifier for 28x28 grey-scale digits.
* :class:`C4Average` -- wraps any classifier and averages its logits over the
  four 90-degree rotations of the input, which makes it exactly invariant to
  the cyclic group C4 acting on square images.

Inputs are float32 tensors of shape ``(N, 1, 28, 28)`` with pixel values in
``[0, 1]`` (white digit on black background, as in MNIST); outputs are logits
of shape ``(N, 10)``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MnistCNN", "C4Average", "mnist_cnn", "mnist_c4"]


class MnistCNN(nn.Module):
    """Small CNN: three 3x3 conv blocks and a two-layer head (~98k parameters).

    Shapes for a 28x28 input::

        conv 1->16  (28x28) -> ReLU -> maxpool2 (14x14)
        conv 16->32 (14x14) -> ReLU -> maxpool2 (7x7)
        conv 32->64 (7x7)   -> ReLU -> maxpool2 (3x3)
        flatten 576 -> linear 128 -> ReLU -> linear 10

    About 2 M multiply-adds per image.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 3 * 3, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class C4Average(nn.Module):
    """Average a base classifier's logits over the four 90-degree rotations.

    ``forward(x) = mean_k base(rot90(x, k))`` for ``k = 0..3`` over the last two
    dimensions.  For square inputs this is exactly invariant to ``rot90``
    (up to floating point summation order).  The wrapped model is available as
    ``.base``, so a plain :class:`MnistCNN` state dict loads into
    ``C4Average(MnistCNN()).base``.
    """

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        # One batched pass over all four rotations (4N inputs), then average.
        rots = torch.cat([torch.rot90(x, k, dims=(-2, -1)) for k in range(4)], dim=0)
        logits = self.base(rots)
        return logits.reshape(4, n, *logits.shape[1:]).mean(dim=0)


def mnist_cnn() -> MnistCNN:
    """Factory: an untrained :class:`MnistCNN` (10 classes)."""
    return MnistCNN()


def mnist_c4() -> C4Average:
    """Factory: ``C4Average(MnistCNN())``; load plain CNN weights into ``.base``."""
    return C4Average(MnistCNN())
