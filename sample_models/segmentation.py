"""Digit semantic-segmentation sample model (torch only).

:class:`DigitSeg` labels every pixel of a grey-scale digit image: class 0 is
background, class ``k + 1`` is digit ``k`` ("0".."9").  Inputs are float32
tensors ``(N, 1, H, W)`` with pixel values in ``[0, 1]`` (white digit on black,
as in MNIST; trained on 28x28); outputs are logits ``(N, 11, H, W)`` of the same
spatial size, for any ``H`` and ``W``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DigitSeg", "digit_seg", "NUM_SEG_CLASSES"]

NUM_SEG_CLASSES = 11  # background + 10 digits


def _block(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 convolutions (padding 1, size preserving), each followed by ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class DigitSeg(nn.Module):
    """Tiny U-Net with a global context branch (61k parameters).

    Shapes for a 28x28 input::

        enc1     2 x conv3x3 1->8, ReLU               28x28  (skip)
        maxpool 2, enc2  2 x conv3x3 8->24, ReLU      14x14  (skip)
        maxpool 2, enc3  2 x conv3x3 24->48, ReLU     7x7
        context  global average of enc3 -> 1x1 conv 48->48, ReLU, broadcast back
        fuse     1x1 conv (48+48)->32, ReLU            7x7
        upsample to 14x14, concat enc2, conv3x3 (32+24)->24, ReLU
        upsample to 28x28, concat enc1, conv3x3 (24+8)->16, ReLU
        head     1x1 conv 16->11                       28x28 logits

    About 10 M multiply-adds per 28x28 image.  Max pooling floors odd sizes and
    the decoder upsamples (nearest) to the exact size of each skip connection,
    so any ``H, W >= 4`` works and the output keeps the input's size.  The
    context branch tells every pixel which digit the whole image shows.  No
    dropout or batch norm: eval mode is deterministic and each image is
    processed independently of the rest of the batch.
    """

    def __init__(self, num_classes: int = NUM_SEG_CLASSES) -> None:
        super().__init__()
        self.enc1 = _block(1, 8)
        self.enc2 = _block(8, 24)
        self.enc3 = _block(24, 48)
        self.context = nn.Sequential(nn.Conv2d(48, 48, 1), nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(nn.Conv2d(96, 32, 1), nn.ReLU(inplace=True))
        self.dec2 = nn.Sequential(nn.Conv2d(32 + 24, 24, 3, padding=1), nn.ReLU(inplace=True))
        self.dec1 = nn.Sequential(nn.Conv2d(24 + 8, 16, 3, padding=1), nn.ReLU(inplace=True))
        self.head = nn.Conv2d(16, num_classes, 1)

    @staticmethod
    def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=like.shape[-2:], mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        ctx = self.context(e3.mean(dim=(-2, -1), keepdim=True)).expand_as(e3)
        d3 = self.fuse(torch.cat([e3, ctx], dim=1))
        d2 = self.dec2(torch.cat([self._up(d3, e2), e2], dim=1))
        d1 = self.dec1(torch.cat([self._up(d2, e1), e1], dim=1))
        return self.head(d1)


def digit_seg() -> DigitSeg:
    """Factory: an untrained :class:`DigitSeg` (11 classes: background, "0".."9")."""
    return DigitSeg()
