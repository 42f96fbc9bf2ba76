"""Planar representation: every element of a planar group as a 3×3 matrix in pixel coordinates.

Convention:
    - Pixel-centre coordinates: pixel ``(row i, column j)`` is the point ``(x=j, y=i)``; x right,
      y down; the true image centre is ``((W-1)/2, (H-1)/2)``.
    - A matrix ``M`` maps a point of the input image to where it lands in the output image;
      the output pixel ``p`` takes the input value at ``M⁻¹ p``.
    - Angles in degrees, positive = counter-clockwise as displayed.
    - float64 throughout, so that exact elements are recognised exactly.

Each group builds its own matrices (``Group.planar``) from these helpers; this module knows
no group.
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor


def centre(size: tuple[int, int]) -> tuple[float, float]:
    """``(cx, cy)`` of an image of ``size`` (H, W) in pixel-centre coordinates."""
    h, w = size
    return (w - 1) / 2.0, (h - 1) / 2.0


def about_centre(linear: Tensor, size: tuple[int, int]) -> Tensor:
    """``T(c) · L · T(-c)`` for a batch of 2×2 linear maps ``L``: the map acts about the centre."""
    cx, cy = centre(size)
    g = linear.shape[0]
    m = torch.zeros(g, 3, 3, dtype=torch.float64)
    m[:, :2, :2] = linear
    c = torch.tensor([cx, cy], dtype=torch.float64)
    m[:, :2, 2] = c - linear @ c
    m[:, 2, 2] = 1.0
    return m


def rotation_matrices(angles_deg: Tensor, size: tuple[int, int]) -> Tensor:
    """Counter-clockwise as displayed (y axis down) about the image centre."""
    theta = torch.deg2rad(torch.as_tensor(angles_deg, dtype=torch.float64))
    # Snap cos/sin of multiples of 90 degrees to exact 0/±1 so they are recognised as exact.
    cos, sin = torch.cos(theta), torch.sin(theta)
    cos = torch.where(cos.abs() < 1e-12, torch.zeros_like(cos), cos)
    sin = torch.where(sin.abs() < 1e-12, torch.zeros_like(sin), sin)
    lin = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    return about_centre(lin, size)


def translation_matrices(dx: Tensor, dy: Tensor) -> Tensor:
    """``(G, 3, 3)`` translations by ``dx`` (right) and ``dy`` (down) pixels."""
    m = torch.eye(3, dtype=torch.float64).repeat(len(dx), 1, 1)
    m[:, 0, 2] = dx
    m[:, 1, 2] = dy
    return m


def scale_matrices(factors: Tensor, size: tuple[int, int]) -> Tensor:
    """Isotropic zoom by ``factors`` about the image centre (> 1 enlarges)."""
    lin = torch.zeros(len(factors), 2, 2, dtype=torch.float64)
    lin[:, 0, 0] = factors
    lin[:, 1, 1] = factors
    return about_centre(lin, size)


def camera_rotation_matrices(rotations: Tensor, size: tuple[int, int]) -> Tensor:
    """``K R K⁻¹``: the image seen by a camera rotated by ``R`` ``(G, 3, 3)`` (pinhole, focal = image diagonal)."""
    h, w = size
    cx, cy = centre(size)
    f = math.hypot(h, w)
    k = torch.tensor([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)
    m = k @ rotations @ torch.linalg.inv(k)
    return m / m[:, 2:3, 2:3]


def transform_points(matrices: Tensor, points: Tensor) -> Tensor:
    """Apply ``(G, 3, 3)`` matrices to ``(..., 2)`` pixel coordinates: ``(G, ..., 2)``."""
    pts = torch.as_tensor(points, dtype=torch.float64)
    ones = torch.ones(*pts.shape[:-1], 1, dtype=torch.float64)
    hom = torch.cat([pts, ones], -1)
    out = torch.einsum("gij,...j->g...i", matrices.to(torch.float64), hom)
    return out[..., :2] / out[..., 2:3]


__all__ = ["centre", "about_centre", "rotation_matrices", "translation_matrices", "scale_matrices",
           "camera_rotation_matrices", "transform_points"]
