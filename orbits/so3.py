"""Grids parameterised by 3-D rotations: perspective tilts of images (homographies) and viewpoints
of point clouds (unit quaternions)."""

from __future__ import annotations

import math
from typing import Any

import torch

from . import planar as _planar
from .groups import Group, Option, _arange_inclusive, _fmt, check_step

Tensor = torch.Tensor


def quat_mul(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product of quaternions ``(w, x, y, z)``; ``R(a*b) = R(a) R(b)``."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], -1)


def axis_angle_quat(axis: Tensor, angle_deg: Tensor) -> Tensor:
    """Unit quaternions for rotations by ``angle_deg`` (right-handed) about unit ``axis`` (…, 3)."""
    half = torch.deg2rad(torch.as_tensor(angle_deg, dtype=torch.float64)) / 2
    axis = torch.as_tensor(axis, dtype=torch.float64)
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    return torch.cat([torch.cos(half)[..., None], torch.sin(half)[..., None] * axis], -1)


def quat_matrix(q: Tensor) -> Tensor:
    """Rotation matrices ``(…, 3, 3)`` of unit quaternions ``(…, 4)``."""
    q = torch.as_tensor(q, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


class _CoordGrid(Group):
    """A grid whose elements also carry the grid's own coordinates (``coords``: yaw and pitch, or
    axis and rotation angles), listed before the element's parameters in tables and labels."""

    def __init__(self, elements: Tensor, coords: dict[str, list], settings: dict[str, Any] | None = None):
        super().__init__(elements, settings)
        self.coords = coords  # the grid's own coordinates per element, for tables and plots

    def columns(self) -> dict[str, list]:
        return {**self.coords, **super().columns()}

    def with_identity(self) -> "Group":
        if self.identity_index is not None:
            return self
        new = super().with_identity()
        new.coords = {k: [*v, self._identity_coord(k)] for k, v in self.coords.items()}
        return new

    def _identity_coord(self, key: str) -> Any:
        return 0.0

    def labels(self) -> list[str]:
        keys = list(self.coords)
        return [",".join(f"{k}={_fmt(self.coords[k][i])}" for k in keys) for i in range(len(self))]


class SO3Grid(_CoordGrid):
    """A grid on SO(3); elements are unit quaternions ``(qw, qx, qy, qz)``, ``q ~ −q``."""

    param_names = ("qw", "qx", "qy", "qz")

    def identity(self) -> Tensor:
        return torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)

    def _compose(self, a: Tensor, b: Tensor) -> Tensor:
        return quat_mul(a, b)

    def _inverse(self, a: Tensor) -> Tensor:
        return a * torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=torch.float64)

    def _canonical(self, a: Tensor) -> Tensor:
        a = a / a.norm(dim=-1, keepdim=True)
        return torch.where(a[..., :1] < 0, -a, a)

    def equal(self, a: Tensor, b: Tensor, atol: float = 1e-9) -> Tensor:
        a = torch.as_tensor(a, dtype=torch.float64)
        b = torch.as_tensor(b, dtype=torch.float64)
        dot = (a * b).sum(-1).abs()
        return (1 - dot) <= atol

    def matrices(self, elements: Tensor | None = None) -> Tensor:
        return quat_matrix(self.elements if elements is None else elements)


#: Where a perspective tilt turns about: the image plane about its centre, or the camera.
PIVOTS = ("object", "camera")


def tilt_rotations(yaw: Tensor, pitch: Tensor) -> Tensor:
    """``R_y(yaw) · R_x(pitch)`` ``(G, 3, 3)`` in camera coordinates (x right, y down, z forward),
    angles in degrees: yaw about the image's vertical axis, then pitch about its horizontal one."""
    yaw = torch.as_tensor(yaw, dtype=torch.float64)
    pitch = torch.as_tensor(pitch, dtype=torch.float64)
    qy = axis_angle_quat(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand(len(yaw), 3), yaw)
    qx = axis_angle_quat(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).expand(len(pitch), 3), pitch)
    return quat_matrix(quat_mul(qy, qx))


def tilt_elements(yaw: Tensor, pitch: Tensor, pivot: str = "object") -> Tensor:
    """``(G, 9)`` :class:`Perspective` elements (row-major homographies of camera coordinates,
    ``det = 1``) of the tilts by ``yaw`` and ``pitch`` (degrees) about ``pivot``."""
    if pivot not in PIVOTS:
        raise ValueError(f"pivot must be one of {', '.join(PIVOTS)}, got {pivot!r}")
    r = tilt_rotations(yaw, pitch)
    h = _planar.plane_tilt(r) if pivot == "object" else r
    return _homography_canonical(h.flatten(-2))


def _homography_canonical(a: Tensor) -> Tensor:
    """Flattened 3×3 homographies scaled to ``det = 1`` (the one real cube root: unique)."""
    det = torch.linalg.det(a.unflatten(-1, (3, 3)))
    return a / (torch.sign(det) * det.abs().pow(1.0 / 3.0))[..., None]


class Perspective(_CoordGrid):
    """Tilts by yaw and pitch, as homographies of the image.

    ``pivot=object`` (default): the image plane turns about its centre in front of a fixed
    pinhole camera, so the centre stays put and the content foreshortens (ImageNet-P's tilt; a
    sheet of paper turned in front of the camera); the homography of camera coordinates is
    ``[r1 r2 e3]`` (derived in :func:`orbits.planar.plane_tilt`). ``pivot=camera``: the camera
    turns about its own optical centre, ``K R K⁻¹``, and the whole image slides (the centre moves
    ``f·tan θ``: 7 px at 10° on 28×28). Focal length = the image diagonal; ``R = R_y(yaw) ·
    R_x(pitch)`` in camera coordinates (x right, y down, z forward).

    Elements are the homographies themselves, in camera coordinates (``K⁻¹ p`` for a pixel
    ``p``), row-major ``h11..h33`` scaled to ``det = 1``: the group is that of the homographies
    of the image plane, with the matrix product and inverse. Tilts about the object are not
    closed under composition (no non-trivial homomorphism of SO(3) into the homographies fixes
    the centre), so the quaternion of ``R`` cannot be the element; with homographies
    ``M(a ∘ b) = M(a) · M(b)`` holds for both pivots, and ``g⁻¹`` undoes ``g`` exactly.
    """

    name = "perspective"
    summary = ("tilt by yaw and pitch (degrees) as a homography, focal length = image diagonal: "
               "the image plane about its centre (pivot=object) or the camera (pivot=camera)")
    param_names = tuple(f"h{i}{j}" for i in (1, 2, 3) for j in (1, 2, 3))
    plot_kind = "heatmap"
    plot_params = ("yaw", "pitch")
    options = (
        Option("extent", float, 30.0, "largest |yaw| and |pitch| (degrees)"),
        Option("step", float, 5.0, "grid step (degrees)"),
        Option("pivot", str, "object", "object: the image plane turns about its centre (the centre stays, "
               "the content foreshortens); camera: the camera turns (the image slides)", PIVOTS),
    )

    @classmethod
    def from_options(cls, extent: float = 30.0, step: float = 5.0, pivot: str = "object") -> "Perspective":
        check_step(step, 2 * extent, "the range from -extent to extent")
        if not 0 <= extent < 90:
            raise ValueError(f"extent must be in [0, 90) degrees, got {extent:g}")
        values = _arange_inclusive(-extent, extent, step)
        gp, gy = torch.meshgrid(values, values, indexing="ij")  # pitch-major, yaw fastest
        yaw, pitch = gy.flatten(), gp.flatten()
        return cls(tilt_elements(yaw, pitch, pivot), {"yaw": yaw.tolist(), "pitch": pitch.tolist()},
                   {"extent": extent, "step": step, "pivot": pivot})

    def identity(self) -> Tensor:
        return torch.eye(3, dtype=torch.float64).flatten()

    def _compose(self, a: Tensor, b: Tensor) -> Tensor:
        return (a.unflatten(-1, (3, 3)) @ b.unflatten(-1, (3, 3))).flatten(-2)

    def _inverse(self, a: Tensor) -> Tensor:
        return torch.linalg.inv(a.unflatten(-1, (3, 3))).flatten(-2)

    def _canonical(self, a: Tensor) -> Tensor:
        return _homography_canonical(a)

    def equal(self, a: Tensor, b: Tensor, atol: float = 1e-9) -> Tensor:
        """Same homography up to scale: entries of the ``det = 1`` forms within ``atol`` relative
        to the larger entry (at least 1)."""
        a = self._canonical(torch.as_tensor(a, dtype=torch.float64))
        b = self._canonical(torch.as_tensor(b, dtype=torch.float64))
        scale = torch.maximum(a.abs().amax(-1), b.abs().amax(-1)).clamp_min(1.0)
        return (a - b).abs().amax(-1) <= atol * scale

    def planar(self, elements: Tensor, size: tuple[int, int]) -> Tensor:
        """``K H K⁻¹`` (``det = 1``): the homography ``H`` of camera coordinates in pixels."""
        return _planar.from_camera(torch.as_tensor(elements, dtype=torch.float64).unflatten(-1, (3, 3)), size)


class Viewpoint(SO3Grid):
    """Rotations of 3-D point clouds on two grids.

    ``grid=planes`` (NERO's layout): rotation axes lying in the xy, xz or yz plane, at
    axis angles ``0..360-axis_step``, times rotation angles ``0..180`` step ``rot_step``.
    ``grid=sphere``: ``axes`` rotation axes spread evenly over the sphere (Fibonacci
    lattice), times rotation angles ``rot_step..180`` step ``rot_step``, plus the identity.

    Distinct elements and orbit means. The planes grid repeats rotations: every axis at
    rotation angle 0 is the identity (216 copies at the default steps), an axis at ``a`` and
    at ``a + 180`` with rotation 180 are one rotation, and an axis shared by two planes (±x,
    ±y, ±z) appears twice at every angle: 564 of the 2,808 default elements repeat another,
    2,416 are distinct. The layout is kept for the plots; :meth:`element_weights` gives
    each element ``1 / (its number of copies)``, so weighted orbit means count each distinct
    rotation once. The sphere grid repeats nothing (all weights 1).

    Neither grid is Haar-uniform. Haar measure on SO(3) is a uniform axis times the
    rotation angle θ with density ``(1 − cos θ) / π`` on ``[0, π]``. The sphere grid is
    (nearly) uniform in the axis — a Fibonacci lattice, equal-area in z — but its angles are
    equally spaced, so its orbit means over-weight small rotations against Haar (Haar
    density per radian 0.011 at θ = 15°, 0.32 at 90°, 0.64 at 180°, yet each is one grid
    angle). The planes grid samples only axes in three coordinate planes, and is
    uniform over neither axes nor angles. Orbit means are means over the grid's distinct
    elements, not Haar integrals; to approximate one on the sphere grid, weight each element
    by ``1 − cos θ``.
    """

    name = "viewpoint"
    summary = "3-D rotations of point clouds: axis in a coordinate plane (planes) or over the sphere"
    options = (
        Option("grid", str, "planes", "planes (three disks) or sphere (Fibonacci axes)", ("planes", "sphere")),
        Option("axis_step", float, 5.0, "planes: step of the axis angle (degrees)"),
        Option("rot_step", float, 15.0, "rotation-angle step (degrees), up to 180"),
        Option("axes", int, 64, "sphere: number of rotation axes"),
    )

    @classmethod
    def from_options(cls, grid: str = "planes", axis_step: float = 5.0, rot_step: float = 15.0, axes: int = 64) -> "Viewpoint":
        check_step(rot_step, 180.0, "a half turn (180)", "rot_step")
        check_step(axis_step, 360.0, "a full turn", "axis_step")
        if grid == "planes":
            axis_angles = _arange_inclusive(0.0, 360.0 - axis_step, axis_step)
            rot_angles = _arange_inclusive(0.0, 180.0, rot_step)
            planes, aa, ra, axs = [], [], [], []
            for plane, (i, j) in (("xy", (0, 1)), ("xz", (0, 2)), ("yz", (1, 2))):
                for a in axis_angles.tolist():
                    axis = [0.0, 0.0, 0.0]
                    axis[i], axis[j] = math.cos(math.radians(a)), math.sin(math.radians(a))
                    for r in rot_angles.tolist():
                        planes.append(plane)
                        aa.append(a)
                        ra.append(r)
                        axs.append(axis)
            q = axis_angle_quat(torch.tensor(axs), torch.tensor(ra))
            coords = {"plane": planes, "axis_angle": aa, "rot_angle": ra}
            settings = {"grid": grid, "axis_step": axis_step, "rot_step": rot_step}
            new = cls(q, coords, settings)
            new.plot_kind = "disks"
            new.plot_params = ("plane", "axis_angle", "rot_angle")
            return new
        if axes < 1:
            raise ValueError(f"axes must be at least 1, got {axes}")
        i = torch.arange(axes, dtype=torch.float64) + 0.5
        lat = torch.asin(1 - 2 * i / axes)  # equal-area in z
        lon = torch.remainder(i * math.pi * (3 - math.sqrt(5)), 2 * math.pi) - math.pi
        axis = torch.stack([torch.cos(lat) * torch.cos(lon), torch.cos(lat) * torch.sin(lon), torch.sin(lat)], -1)
        rot_angles = _arange_inclusive(rot_step, 180.0, rot_step)
        ax = axis.repeat_interleave(len(rot_angles), 0)
        ra = rot_angles.repeat(axes)
        q = torch.cat([torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64), axis_angle_quat(ax, ra)], 0)
        coords = {"axis_lon": [0.0] + torch.rad2deg(lon).repeat_interleave(len(rot_angles)).tolist(),
                  "axis_lat": [90.0] + torch.rad2deg(lat).repeat_interleave(len(rot_angles)).tolist(),
                  "rot_angle": [0.0] + ra.tolist()}
        new = cls(q, coords, {"grid": grid, "rot_step": rot_step, "axes": axes})
        new.plot_kind = "sphere"
        new.plot_params = ("axis_lon", "axis_lat", "rot_angle")
        return new
