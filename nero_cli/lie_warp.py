"""The differentiable action of ``nero lie`` on images: ``g(t) · x`` built from the parameter ``t``.

For a generator (rotation by ``t`` degrees, a shift by ``t`` pixels, a zoom by ``exp(t)``, a tilt
by ``t`` degrees of yaw or pitch) :func:`generator_matrices` builds the element's 3×3 pixel matrix
from ``t`` with torch operations only, and :func:`warp` resamples the image through it with a
bilinear sampler written with ``gather`` (``grid_sample`` has no forward-mode derivative), so
``torch.func.jvp`` sees the whole chain. Bilinear resampling is not differentiable at the pixel
centres (the identity's grid): one-sided it gives a forward difference of the image. :func:`warp`
therefore averages two samplers that differ only in which corner a pixel centre counts as (the same
values everywhere), whose derivatives at the pixel centres are the forward and the backward
differences: their mean is the central difference, the limit of the central finite differences of
nero's own bilinear action.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from orbits import planar, so3

from .errors import OptionError

#: Generators of each planar group: (name, unit of its parameter). Matrices are built by :func:`generator_matrices`.
IMAGE_GENERATORS: dict[str, tuple[tuple[str, str], ...]] = {
    "rotation": (("rotation", "degree"),),
    "shift": (("dx", "pixel"), ("dy", "pixel")),
    "scale": (("log_scale", "log-scale"),),
    "perspective": (("yaw", "degree"), ("pitch", "degree")),
}


def generator_matrices(group: str, generator: str, t: torch.Tensor, size: tuple[int, int],
                       pivot: str = "object") -> torch.Tensor:
    """``(B, 3, 3)`` float64 pixel matrices (input point → output point) of the elements ``g(t)``,
    one per entry of ``t`` ``(B,)``; differentiable in ``t`` (built only from torch operations)."""
    t = t.to(torch.float64)
    zero = torch.zeros_like(t)
    if generator == "rotation":  # planar.rotation_matrices snaps sin(0) to an exact 0, which drops its tangent
        cos, sin = torch.cos(torch.deg2rad(t)), torch.sin(torch.deg2rad(t))
        return planar.about_centre(torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2), size)
    if generator in ("dx", "dy"):
        return planar.translation_matrices(t, zero) if generator == "dx" else planar.translation_matrices(zero, t)
    if generator == "log_scale":
        return planar.scale_matrices(torch.exp(t), size)
    if generator in ("yaw", "pitch"):
        r = so3.tilt_rotations(t, zero) if generator == "yaw" else so3.tilt_rotations(zero, t)
        if pivot == "camera":
            return planar.camera_rotation_matrices(r, size)
        return planar.from_camera(planar.plane_tilt(r), size)
    raise OptionError(f"group {group}: no generator {generator!r}")


def mapped_points(matrices: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the pixel matrices ``(B, 3, 3)`` send each pixel centre ``p`` of an image of ``size``:
    ``(x, y)`` of ``M p`` ``(B, H, W)`` each, in pixel-centre coordinates (differentiable in ``M``)."""
    h, w = size
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    pts = torch.stack([xs.flatten(), ys.flatten(), torch.ones(h * w, dtype=torch.float64)])  # (3, HW)
    out = matrices @ pts  # (B, 3, HW)
    return (out[:, 0] / out[:, 2]).reshape(-1, h, w), (out[:, 1] / out[:, 2]).reshape(-1, h, w)


def source_points(matrices: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each output pixel reads the input, ``(sx, sy)`` ``(B, H, W)`` each in pixel-centre
    coordinates, for the pixel matrices ``(B, 3, 3)``: output pixel ``p`` reads ``M⁻¹ p`` (the
    convention of :mod:`orbits.image`)."""
    return mapped_points(torch.linalg.inv(matrices), size)


def _padded(s: torch.Tensor, n: int, padding: str) -> torch.Tensor:
    """Coordinates as ``grid_sample`` (``align_corners=False``) pads: reflected about the pixel
    edges, clamped to the border, or (zeros) left as they are."""
    if padding == "reflection":
        r = torch.remainder(s + 0.5, 2 * n)
        s = torch.where(r > n, 2 * n - r, r) - 0.5
    return s.clamp(0, n - 1) if padding in ("border", "reflection") else s


def _corners(s: torch.Tensor) -> torch.Tensor:
    """The corner below each point ``(2, ...)``: ``floor`` and ``ceil − 1`` (equal except at pixel
    centres), chosen on ``s`` without its tangent and, within 1e-6 of a pixel centre, snapped onto it
    (the identity's points carry the round-off of a matrix inverse)."""
    s = s.detach()
    s = torch.where((s - s.round()).abs() < 1e-6, s.round(), s)
    return torch.stack([torch.floor(s), torch.ceil(s) - 1])


def bilinear_pair(x: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor, padding: str) -> torch.Tensor:
    """The mean of two bilinear samplers of ``x`` ``(B, C, H, W)`` at ``(sx, sy)`` ``(B, H', W')`` that
    differ only in the corner a pixel centre counts as (:func:`_corners`): their values equal
    ``grid_sample``'s (``align_corners=False``), their derivatives at a pixel centre are the forward and
    the backward difference. Built from ``gather``, so ``torch.func.jvp`` differentiates it."""
    b, c, h, w = x.shape
    if padding == "zeros":  # a ring of zeros, and points beyond it moved onto it
        x, h, w = F.pad(x, (1, 1, 1, 1)), h + 2, w + 2
        sx, sy = sx.clamp(-1, w - 2) + 1, sy.clamp(-1, h - 2) + 1
    else:
        sx, sy = _padded(sx, w, padding), _padded(sy, h, padding)
    x0, y0 = _corners(sx), _corners(sy)  # (2, B, H', W')
    fx, fy = (sx - x0).to(x.dtype), (sy - y0).to(x.dtype)
    xl, yl = x0.long(), y0.long()
    cols = torch.stack([xl.clamp(0, w - 1), (xl + 1).clamp(0, w - 1)], 1)  # (2, 2, B, H', W'): pair, dx
    rows = torch.stack([yl.clamp(0, h - 1) * w, (yl + 1).clamp(0, h - 1) * w], 1)
    wx, wy = torch.stack([1 - fx, fx], 1), torch.stack([1 - fy, fy], 1)
    idx = (rows[:, :, None] + cols[:, None]).permute(3, 0, 1, 2, 4, 5).reshape(b, 1, -1)  # (B, 1, 8·H'W')
    weight = (wy[:, :, None] * wx[:, None]).permute(3, 0, 1, 2, 4, 5).reshape(b, 1, 8, -1)
    got = x.reshape(b, c, h * w).gather(2, idx.expand(b, c, -1)).reshape(b, c, 8, -1)
    return 0.5 * (got * weight).sum(2).reshape(b, c, *sx.shape[1:])


def warp(x: torch.Tensor, matrices: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """Bilinear ``g · x`` for images ``x`` ``(B, C, H, W)`` and their matrices ``(B, 3, 3)``: the values
    of nero's action, with the central difference as its derivative at the pixel centres (the mean
    of two bilinear samplers that differ only in which corner a pixel centre counts as: their values
    are equal, their derivatives there are the forward and the backward difference)."""
    sx, sy = source_points(matrices, tuple(x.shape[-2:]))
    sx, sy = sx.to(x.device), sy.to(x.device)
    return bilinear_pair(x, sx, sy, padding)


@dataclass
class Generator:
    """One generator of the measured group: how to build ``g(t) · x``."""

    group: str
    name: str
    unit: str
    size: tuple[int, int]
    pivot: str = "object"
    padding: str = "zeros"
    #: ``mask=circle`` of the spec: everything outside the inscribed disc is zeroed, as in :mod:`orbits.image`.
    circle: bool = False

    def matrices(self, t: torch.Tensor) -> torch.Tensor:
        """The pixel matrices ``(B, 3, 3)`` of ``g(t)``, differentiable in ``t``."""
        return generator_matrices(self.group, self.name, t, self.size, self.pivot)

    def act(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = warp(x, self.matrices(t), self.padding)
        return out * disc(self.size).to(device=x.device, dtype=x.dtype) if self.circle else out


def disc(size: tuple[int, int]) -> torch.Tensor:
    """The inscribed disc of an image of ``size`` (1 inside, 0 outside), as ``mask=circle`` cuts it."""
    h, w = size
    cx, cy = planar.centre(size)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return (((xs - cx) ** 2 + (ys - cy) ** 2) <= (min(h, w) / 2.0) ** 2).to(torch.float32)


def image_generators(spec: Any, size: tuple[int, int]) -> list[Generator]:
    """The generators of the parsed planar group ``spec`` (an :class:`orbits.spec.OrbitSpec`), with
    its action's padding and ``mask=circle``."""
    pivot = spec.group.settings.get("pivot", "object")
    padding, circle = spec.action.get("padding", "zeros"), spec.action.get("mask", "none") == "circle"
    return [Generator(spec.name, n, u, size, pivot, padding, circle) for n, u in IMAGE_GENERATORS[spec.name]]


__all__ = ["IMAGE_GENERATORS", "generator_matrices", "mapped_points", "source_points", "bilinear_pair", "warp",
           "Generator", "disc", "image_generators"]
