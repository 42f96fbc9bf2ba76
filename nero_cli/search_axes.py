"""The axes ``nero search`` searches: one continuous parameter of a group at a time.

``angle`` for rotation (degrees, in [-180, 180]), ``dx`` and ``dy`` for shift (pixels, each with the
other at 0), ``log2_scale`` for scale (log2 of the factor, so 0.5× and 2× are equally far from the
identity), ``yaw`` and ``pitch`` for perspective (degrees, each with the other at 0). The spec's grid
along the axis (plus the identity) is the coarse grid, e.g. ``rotation:step=5`` (73 points).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from orbits.groups import Group, Rotation, Scale, Shift
from orbits.so3 import Perspective, tilt_elements

from .errors import OptionError, identity_only, positive_number

#: Groups nero can search, and the default bisection tolerance of each axis (in its unit).
SEARCHABLE = ("rotation", "shift", "scale", "perspective")
DEFAULT_TOL = {"angle": 0.1, "dx": 0.05, "dy": 0.05, "log2_scale": 0.005, "yaw": 0.1, "pitch": 0.1}
#: A grid to search along, per group (for messages).
EXAMPLES = {"rotation": "rotation:step=5", "shift": "shift:extent=4,step=1", "scale": "scale:start=0.5,stop=2",
            "perspective": "perspective:extent=20,step=5"}
UNITS = {"angle": "degrees", "dx": "pixels", "dy": "pixels", "log2_scale": "log2 of the factor", "yaw": "degrees",
         "pitch": "degrees"}


@dataclass(frozen=True)
class Axis:
    """One continuous parameter of a group: its coarse grid (sorted, with the identity at 0)."""

    group: str
    name: str
    grid: np.ndarray
    tol: float
    build: Callable[[torch.Tensor], Group]
    action: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.group}/{self.name}"


def _on_axis(values: torch.Tensor, others: torch.Tensor) -> np.ndarray:
    """The grid values of one coordinate where the other coordinate is 0."""
    return values[others.abs() < 1e-12].numpy()


def _axis_values(spec: Any) -> dict[str, np.ndarray]:
    """Each axis of the spec's group and its grid values (before adding the identity)."""
    g = spec.group
    if spec.name == "rotation":
        a = ((g.elements[:, 0].numpy() + 180.0) % 360.0) - 180.0
        return {"angle": np.concatenate([a, [180.0]]) if np.isclose(a, -180.0).any() else a}
    if spec.name == "shift":
        dx, dy = g.elements[:, 0], g.elements[:, 1]
        return {"dx": _on_axis(dx, dy), "dy": _on_axis(dy, dx)}
    if spec.name == "scale":
        return {"log2_scale": np.log2(g.elements[:, 0].numpy())}
    yaw, pitch = torch.tensor(g.coords["yaw"]), torch.tensor(g.coords["pitch"])
    return {"yaw": _on_axis(yaw, pitch), "pitch": _on_axis(pitch, yaw)}


def _builder(spec: Any, axis: str) -> Callable[[torch.Tensor], Group]:
    """Parameters ``(M,)`` along ``axis`` to a group of exactly those ``M`` elements."""
    zero = torch.zeros
    if spec.name == "rotation":
        return lambda p: Rotation(p[:, None])
    if spec.name == "shift":
        return lambda p: Shift(torch.stack([p, zero(len(p), dtype=p.dtype)] if axis == "dx"
                                           else [zero(len(p), dtype=p.dtype), p], 1))
    if spec.name == "scale":
        return lambda p: Scale(torch.exp2(p)[:, None])
    pivot = spec.group.settings.get("pivot", "object")

    def tilt(p: torch.Tensor) -> Group:
        yaw, pitch = (p, zero(len(p), dtype=p.dtype)) if axis == "yaw" else (zero(len(p), dtype=p.dtype), p)
        return Perspective(tilt_elements(yaw, pitch, pivot), {"yaw": yaw.tolist(), "pitch": pitch.tolist()})

    return tilt


def check_tol(tol: float | None) -> float | None:
    """``--tol``: None (each axis's default) or a positive, finite number."""
    return None if tol is None else positive_number(tol, "--tol", example="the bisection tolerance, e.g. 0.1")


def axes_for(spec: Any, tol: float | None = None) -> list[Axis]:
    """The axes searched for a parsed group spec (an axis with no grid point besides 0 is skipped;
    a spec with none is a usage error)."""
    if spec.name not in SEARCHABLE:
        raise OptionError(f"nero search: group {spec.name!r} has no continuous parameter to search; "
                          f"use one of {', '.join(SEARCHABLE)}")
    tol = check_tol(tol)
    out, values = [], _axis_values(spec)
    for name, on_axis in values.items():
        grid = np.unique(np.round(np.concatenate([on_axis, [0.0]]), 9))
        if len(grid) > 1:
            out.append(Axis(spec.name, name, grid, DEFAULT_TOL[name] if tol is None else tol,
                            _builder(spec, name), dict(spec.action)))
    if not out:
        g = spec.group
        if bool(g.equal(g.elements, g.identity()).all()):
            raise identity_only(spec.text, EXAMPLES[spec.name])
        raise OptionError(f"--group {spec.text}: no element on the {' or '.join(values)} axis, which nero search "
                          f"follows; give a grid through the identity, e.g. {EXAMPLES[spec.name]}")
    return out


__all__ = ["Axis", "axes_for", "check_tol", "SEARCHABLE", "DEFAULT_TOL", "UNITS", "EXAMPLES"]
