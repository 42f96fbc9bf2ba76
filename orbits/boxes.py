"""Boxes under planar elements: exact for shifts and scalings, an envelope otherwise."""

from __future__ import annotations

import torch

from .image import transform_points

Tensor = torch.Tensor


def map_boxes(matrices: Tensor, boxes: Tensor) -> Tensor:
    """Map boxes ``(..., 4)`` by ``(G, 3, 3)`` planar matrices: ``(G, ..., 4)``.

    Convention:
        - Boxes ``x1, y1, x2, y2`` in pixel-edge coordinates: the image spans ``[0, W] × [0, H]``
          and pixel column ``i`` spans ``[i, i + 1)``; x right, y down.
        - The matrices are those of :class:`~orbits.image.ImageAction` (pixel-centre
          coordinates, centre of rotation ``((W-1)/2, (H-1)/2)``), so a box follows its
          image content exactly.
        - Shifts and scalings map boxes to boxes exactly. Rotations and perspective tilts
          map a box to a quadrilateral; the result is its axis-aligned envelope (the
          smallest box holding the four mapped corners), which grows with the angle.
        - Nothing is clipped to the image.
    """
    b = torch.as_tensor(boxes, dtype=torch.float64)
    x1, y1, x2, y2 = b.unbind(-1)
    corners = torch.stack([torch.stack([x1, y1], -1), torch.stack([x2, y1], -1),
                           torch.stack([x1, y2], -1), torch.stack([x2, y2], -1)], -2) - 0.5  # (..., 4, 2)
    mapped = transform_points(matrices, corners) + 0.5  # (G, ..., 4, 2)
    lo = mapped.amin(-2)
    hi = mapped.amax(-2)
    return torch.cat([lo, hi], -1)
