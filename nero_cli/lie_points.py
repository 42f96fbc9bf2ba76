"""The differentiable action of ``nero lie`` on point clouds: rotations about the x, y and z axes.

A point cloud ``(N, P, 3)`` turns as :class:`orbits.points.PointAction` turns it, ``p ↦ R p``
(an active rotation about the origin, right-hand rule, angles in degrees). The generators of
``viewpoint`` are the three one-parameter subgroups ``R_x(t)``, ``R_y(t)``, ``R_z(t)``; each
``R(t)`` is built from ``cos`` and ``sin`` of ``t`` with torch operations only, so the action is
exactly differentiable (no resampling is involved) and ``torch.func.jvp`` goes through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

#: Generators of the point-cloud group: (name, unit of its parameter).
POINT_GENERATORS: dict[str, tuple[tuple[str, str], ...]] = {
    "viewpoint": (("rot_x", "degree"), ("rot_y", "degree"), ("rot_z", "degree")),
}
#: The axis each generator turns about, and the pair of coordinates it mixes (``(i, j)``: ``e_i → e_j``).
_PLANES = {"rot_x": (1, 2), "rot_y": (2, 0), "rot_z": (0, 1)}


def axis_rotations(name: str, t: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)`` float64 rotation matrices by ``t`` ``(B,)`` degrees about the generator's axis
    (right-hand rule: ``rot_z`` turns x towards y), differentiable in ``t``."""
    if name not in _PLANES:
        raise ValueError(f"no point-cloud generator {name!r}; known: {', '.join(_PLANES)}")
    i, j = _PLANES[name]
    t = torch.deg2rad(t.to(torch.float64))
    cos, sin = torch.cos(t), torch.sin(t)
    one, zero = torch.ones_like(t), torch.zeros_like(t)
    rows = [[one, zero, zero], [zero, one, zero], [zero, zero, one]]
    rows[i][i], rows[j][j], rows[i][j], rows[j][i] = cos, cos, -sin, sin
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


@dataclass
class PointGenerator:
    """One rotation axis of ``viewpoint``: how to build ``g(t) · x`` for points ``(B, P, 3)``."""

    group: str
    name: str
    unit: str = "degree"

    def act(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        r = axis_rotations(self.name, t).to(device=x.device, dtype=x.dtype)
        return torch.einsum("bij,bpj->bpi", r, x)


def point_generators(spec: Any) -> list[PointGenerator]:
    """The generators of the parsed point-cloud group ``spec`` (an :class:`orbits.spec.OrbitSpec`)."""
    return [PointGenerator(spec.name, n, u) for n, u in POINT_GENERATORS[spec.name]]


__all__ = ["POINT_GENERATORS", "axis_rotations", "PointGenerator", "point_generators"]
