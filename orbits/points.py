"""The action of SO(3) grids on point clouds ``(N, P, 3)``."""

from __future__ import annotations

from typing import Sequence

import torch

from .so3 import SO3Grid

Tensor = torch.Tensor


class PointAction:
    """Rotate point clouds by the elements of an SO(3) grid.

    Convention:
        - Points ``(N, P, 3)`` in a right-handed frame; an element with rotation matrix
          ``R`` (from its unit quaternion) maps each point ``p`` to ``R p`` (an active
          rotation about the origin; centre the clouds first if they are not).
        - Angles in degrees, right-hand rule about the rotation axis.
        - Exact up to float32 rounding: no interpolation or padding is involved.
        - Output ``(g, N, P, 3)`` for ``g`` requested elements, same dtype and device.
    """

    def __init__(self, group: SO3Grid):
        if not isinstance(group, SO3Grid):
            raise ValueError(f"group '{group.name}' does not act on point clouds")
        self.group = group
        self.matrices = group.matrices()
        self._cache: dict[tuple, Tensor] = {}

    def __call__(self, points: Tensor, indices: Sequence[int]) -> Tensor:
        if points.ndim != 3 or points.shape[-1] != 3:
            raise ValueError(f"points must be (N, P, 3), got shape {tuple(points.shape)}")
        key = (points.device, points.dtype)
        if key not in self._cache:
            self._cache[key] = self.matrices.to(device=points.device, dtype=points.dtype)
        r = self._cache[key][list(indices)]
        return torch.einsum("gij,npj->gnpi", r, points)
