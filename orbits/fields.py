"""Frame pairs and vector fields (optical flow) under D4, time reversal and rotations."""

from __future__ import annotations

from typing import Sequence

import torch

from .groups import Group
from .image import ImageAction
from .outputs import VectorField, time_reversed

Tensor = torch.Tensor


class FrameAction:
    """Apply elements to frame pairs ``(N, 2C, H, W)`` (frame 1 channels, then frame 2's).

    Convention:
        - The spatial part acts on both frames as :class:`~orbits.image.ImageAction` does
          (degrees, counter-clockwise as displayed, y axis down, true image centre, same
          padding, interpolation and masking options).
        - D4 elements ``(k, flip)``: a horizontal flip (x → −x) first, then ``k`` quarter turns;
          they are exact.
        - Time reversal (``t = 1`` in ``d4t``) swaps frame 1 and frame 2.
        - Output ``(g, N, 2C, H, W)``.
    """

    def __init__(self, group: Group, size: tuple[int, int], **image_options: str):
        self.group = group
        self.image = ImageAction(group, size, **image_options)
        self.reversed = time_reversed(group)

    def __call__(self, frames: Tensor, indices: Sequence[int]) -> Tensor:
        if frames.ndim != 4 or frames.shape[1] % 2:
            raise ValueError(f"frames must be (N, 2C, H, W), got shape {tuple(frames.shape)}")
        indices = list(indices)
        out = self.image(frames, indices)
        c = frames.shape[1] // 2
        swap = [j for j, i in enumerate(indices) if self.reversed[i]]
        if swap:
            out[swap] = torch.cat([out[swap][:, :, c:], out[swap][:, :, :c]], 2)
        return out


#: Kept under its earlier name: the vector-field output type.
VectorFieldAction = VectorField
