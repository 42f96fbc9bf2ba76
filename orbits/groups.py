"""Transformation groups: elements, grids, composition and inverses.

A :class:`Group` knows nothing about images, points or vector fields. It holds a
finite grid of elements sampled from a (possibly continuous) group, each element
given by its coordinates ``param_names`` (``angle`` for rotation, ``dx, dy`` for
shift ...), and implements the group law on those coordinates: ``compose``,
``inverse``, ``identity`` and ``equal``. How an element moves an input or an
output is an *action*, kept in :mod:`orbits.image` and friends.

Composition convention: ``compose(a, b)`` is the element "apply ``b`` first, then
``a``" (``a ∘ b``), so that ``action(compose(a, b)) == action(a) @ action(b)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class Option:
    """One ``key=value`` option of a group spec string."""

    name: str
    kind: type  # float, int or str
    default: Any
    help: str
    choices: tuple[str, ...] | None = None


#: The most values one axis of a grid may hold (a guard against typos like step=1e-9).
MAX_AXIS = 1_000_000


def _arange_inclusive(start: float, stop: float, step: float) -> Tensor:
    """``start, start+step, ... <= stop`` in float64, robust to rounding."""
    if step <= 0:
        raise ValueError(f"step must be positive, got {step:g}")
    if stop < start:
        raise ValueError(f"stop ({stop:g}) must not be below start ({start:g})")
    count = (stop - start) / step + 1
    if not math.isfinite(count) or count > MAX_AXIS:
        raise ValueError(f"start={start:g}, stop={stop:g}, step={step:g} would make {count:.3g} values on one axis "
                         f"(at most {MAX_AXIS:,}); use a larger step")
    n = int(math.floor((stop - start) / step + 1e-9)) + 1
    values = start + step * torch.arange(n, dtype=torch.float64)
    # Round away float noise (0.1 * 3 = 0.30000000000000004) so labels stay clean.
    return torch.round(values * 1e9) / 1e9


class Group:
    """A finite grid of elements of a transformation group.

    Subclasses set the class attributes and implement ``_compose``/``_inverse``.
    ``elements`` is a float64 tensor ``(G, P)`` of element coordinates.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    param_names: ClassVar[tuple[str, ...]] = ()
    #: How NERO plots this group: polar, heatmap, curve, disks, sphere, mosaic.
    plot_kind: ClassVar[str] = "curve"
    #: Options of the spec string that shape the grid (action options live elsewhere).
    options: ClassVar[tuple[Option, ...]] = ()
    #: Coordinates that are periodic, with their period (angles).
    periods: ClassVar[dict[str, float]] = {}
    #: Columns of ``columns()`` that a NERO plot is drawn over (default: all parameters).
    plot_params: tuple[str, ...] = ()

    def __init__(self, elements: Tensor, settings: dict[str, Any] | None = None):
        elements = torch.as_tensor(elements, dtype=torch.float64)
        if elements.ndim != 2 or elements.shape[1] != len(self.param_names):
            raise ValueError(f"{self.name}: elements must be (G, {len(self.param_names)})")
        if elements.shape[0] == 0:
            raise ValueError(f"{self.name}: the grid is empty")
        self.elements = elements
        self.settings = dict(settings or {})

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_options(cls, **opts: Any) -> "Group":  # pragma: no cover - abstract
        raise NotImplementedError

    # -- group law ------------------------------------------------------------------
    def identity(self) -> Tensor:
        raise NotImplementedError

    def compose(self, a: Tensor, b: Tensor) -> Tensor:
        """``a ∘ b``: apply ``b`` first, then ``a``. Broadcasts over leading dims."""
        return self._canonical(self._compose(torch.as_tensor(a, dtype=torch.float64),
                                             torch.as_tensor(b, dtype=torch.float64)))

    def inverse(self, a: Tensor) -> Tensor:
        return self._canonical(self._inverse(torch.as_tensor(a, dtype=torch.float64)))

    def _compose(self, a: Tensor, b: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _inverse(self, a: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _canonical(self, a: Tensor) -> Tensor:
        """Bring coordinates to their canonical range (angles into [0, period))."""
        if not self.periods:
            return a
        a = a.clone()
        for i, p in enumerate(self.param_names):
            if p in self.periods:
                period = self.periods[p]
                a[..., i] = torch.remainder(a[..., i], period)
                a[..., i] = torch.where(period - a[..., i] < 1e-9, torch.zeros_like(a[..., i]), a[..., i])
        return a

    def equal(self, a: Tensor, b: Tensor, atol: float = 1e-9) -> Tensor:
        """Elementwise test that ``a`` and ``b`` are the same group element."""
        d = torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)
        for i, p in enumerate(self.param_names):
            if p in self.periods:
                period = self.periods[p]
                di = torch.remainder(d[..., i] + period / 2, period) - period / 2
                d = d.clone()
                d[..., i] = di
        return (d.abs() <= atol).all(dim=-1)

    # -- the grid -------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.elements.shape[0])

    @property
    def identity_index(self) -> int | None:
        """Index of the identity in the grid, or None when the grid lacks it."""
        hits = torch.nonzero(self.equal(self.elements, self.identity())).flatten()
        return int(hits[0]) if len(hits) else None

    def with_identity(self) -> "Group":
        """This grid with the identity added when it lacks it (sorted in, for 1-D grids)."""
        if self.identity_index is not None:
            return self
        els = torch.cat([self.elements, self.identity()[None]], 0)
        if els.shape[1] == 1:
            els = els[torch.argsort(els[:, 0], stable=True)]
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.elements = els
        return new

    @property
    def plot_columns(self) -> tuple[str, ...]:
        return tuple(self.plot_params) or self.param_names

    def columns(self) -> dict[str, list]:
        """Columns describing each element in a results table (coordinates by default)."""
        return {p: self.elements[:, i].tolist() for i, p in enumerate(self.param_names)}

    def labels(self) -> list[str]:
        """Short human label of each element, e.g. ``angle=90``."""
        out = []
        for row in self.elements.tolist():
            out.append(",".join(f"{p}={_fmt(v)}" for p, v in zip(self.param_names, row)))
        return out

    @property
    def spec(self) -> str:
        """Canonical spec string that rebuilds this grid."""
        if not self.settings:
            return self.name
        body = ",".join(f"{k}={_fmt(v)}" for k, v in self.settings.items())
        return f"{self.name}:{body}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec} ({len(self)} elements)>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


# ----------------------------------------------------------------------------------------
# The plane: rotation, shift, scale
# ----------------------------------------------------------------------------------------


class Rotation(Group):
    """SO(2), the angle in degrees (counter-clockwise as displayed)."""

    name = "rotation"
    summary = "rotation about the centre, angle in degrees, counter-clockwise as displayed"
    param_names = ("angle",)
    plot_kind = "polar"
    periods = {"angle": 360.0}
    options = (
        Option("start", float, 0.0, "first angle (degrees)"),
        Option("stop", float, None, "last angle (degrees, inclusive); default a full turn, start + 360 - step"),
        Option("step", float, 5.0, "angle step (degrees)"),
    )

    @classmethod
    def from_options(cls, start: float = 0.0, stop: float | None = None, step: float = 5.0) -> "Rotation":
        if step <= 0:
            raise ValueError(f"step must be positive, got {step:g}")
        if stop is None:
            stop = start + 360.0 - step
        if stop - start >= 360.0 - 1e-9:
            raise ValueError(f"start={start:g} to stop={stop:g} covers more than a full turn; "
                             "the orbit would repeat elements (use stop <= start + 360 - step)")
        angles = _arange_inclusive(start, stop, step)
        return cls(angles[:, None], {"start": start, "stop": stop, "step": step})

    def identity(self) -> Tensor:
        return torch.zeros(1, dtype=torch.float64)

    def _compose(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b

    def _inverse(self, a: Tensor) -> Tensor:
        return -a


class Shift(Group):
    """(R², +): a translation by ``dx`` (right) and ``dy`` (down), in pixels."""

    name = "shift"
    summary = "2-D translation in pixels, dx to the right, dy down"
    param_names = ("dx", "dy")
    plot_kind = "heatmap"
    options = (
        Option("extent", float, None, "largest |dx| and |dy| (pixels); default 8 for 28 px, scaled with the image size"),
        Option("step", float, None, "grid step (pixels); default 1 for 28 px, scaled with the image size"),
        Option("axis", str, "xy", "which shifts: xy (2-D grid), x or y", ("xy", "x", "y")),
    )

    @classmethod
    def from_options(cls, extent: float | None = None, step: float | None = None, axis: str = "xy",
                     image_size: tuple[int, int] | None = None) -> "Shift":
        side = min(image_size) if image_size else 28
        if extent is None:
            extent = float(max(1, round(8 * side / 28)))
        if step is None:
            step = float(max(1, round(extent / 8)))
        if extent < 0:
            raise ValueError(f"extent must not be negative, got {extent:g}")
        values = _arange_inclusive(-extent, extent, step)
        zero = torch.zeros(1, dtype=torch.float64)
        xs = values if axis in ("xy", "x") else zero
        ys = values if axis in ("xy", "y") else zero
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # dy-major, dx fastest
        elements = torch.stack([gx.flatten(), gy.flatten()], dim=1)
        settings = {"extent": extent, "step": step}
        if axis != "xy":
            settings["axis"] = axis
        return cls(elements, settings)

    def identity(self) -> Tensor:
        return torch.zeros(2, dtype=torch.float64)

    def _compose(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b

    def _inverse(self, a: Tensor) -> Tensor:
        return -a


class Scale(Group):
    """(R>0, ×): zoom by a factor about the centre (> 1 enlarges)."""

    name = "scale"
    summary = "zoom about the centre by a factor (> 1 enlarges)"
    param_names = ("scale",)
    plot_kind = "curve"
    options = (
        Option("start", float, 0.5, "smallest factor"),
        Option("stop", float, 1.5, "largest factor (inclusive)"),
        Option("step", float, 0.05, "factor step"),
    )

    @classmethod
    def from_options(cls, start: float = 0.5, stop: float = 1.5, step: float = 0.05) -> "Scale":
        if start <= 0:
            raise ValueError(f"start must be a positive factor, got {start:g}")
        values = _arange_inclusive(start, stop, step)
        return cls(values[:, None], {"start": start, "stop": stop, "step": step})

    def identity(self) -> Tensor:
        return torch.ones(1, dtype=torch.float64)

    def _compose(self, a: Tensor, b: Tensor) -> Tensor:
        return a * b

    def _inverse(self, a: Tensor) -> Tensor:
        return 1.0 / a

    def equal(self, a: Tensor, b: Tensor, atol: float = 1e-9) -> Tensor:
        a = torch.as_tensor(a, dtype=torch.float64)
        b = torch.as_tensor(b, dtype=torch.float64)
        return ((a - b).abs() <= atol * torch.maximum(a.abs(), b.abs()).clamp_min(1.0)).all(dim=-1)


# ----------------------------------------------------------------------------------------
# Finite groups of the square: D4 and D4 × time reversal
# ----------------------------------------------------------------------------------------


class D4(Group):
    """The dihedral group of the square: ``k`` quarter turns after an optional horizontal flip.

    Element ``(k, flip)`` = rot90^k ∘ flip_x^flip (flip first). With ``F R = R⁻¹ F``,
    ``(k1, f1) ∘ (k2, f2) = (k1 + (−1)^f1 · k2 mod 4, f1 xor f2)``.
    """

    name = "d4"
    summary = "the 8 quarter turns and reflections of the square (exact)"
    param_names = ("k", "flip")
    plot_kind = "mosaic"
    options = ()

    @classmethod
    def from_options(cls) -> "D4":
        els = [[k, f] for f in (0, 1) for k in range(4)]
        return cls(torch.tensor(els, dtype=torch.float64), {})

    def identity(self) -> Tensor:
        return torch.zeros(len(self.param_names), dtype=torch.float64)

    def _compose(self, a: Tensor, b: Tensor) -> Tensor:
        a, b = torch.broadcast_tensors(a, b)
        sign = 1 - 2 * a[..., 1]
        out = a.clone()
        out[..., 0] = torch.remainder(a[..., 0] + sign * b[..., 0], 4)
        out[..., 1] = torch.remainder(a[..., 1] + b[..., 1], 2)
        return out

    def _inverse(self, a: Tensor) -> Tensor:
        out = a.clone()
        # (R^k F^f)^-1 = F^f R^-k = R^{(-1)^(f+1) k} F^f
        out[..., 0] = torch.remainder(torch.where(a[..., 1] > 0, a[..., 0], -a[..., 0]), 4)
        return out

    def labels(self) -> list[str]:
        out = []
        for row in self.elements.tolist():
            k, f = int(row[0]), int(row[1])
            out.append(("flip·" if f else "") + f"rot{90 * k}")
        return out


class D4T(D4):
    """D4 × time reversal: ``t = 1`` swaps the two frames of a pair (16 elements)."""

    name = "d4t"
    summary = "D4 × time reversal (swap the frames): 16 exact elements, for flow"
    param_names = ("k", "flip", "t")

    @classmethod
    def from_options(cls) -> "D4T":
        els = [[k, f, t] for t in (0, 1) for f in (0, 1) for k in range(4)]
        return cls(torch.tensor(els, dtype=torch.float64), {})

    def _compose(self, a: Tensor, b: Tensor) -> Tensor:
        a, b = torch.broadcast_tensors(a, b)
        out = super()._compose(a, b)
        out[..., 2] = torch.remainder(a[..., 2] + b[..., 2], 2)
        return out

    def labels(self) -> list[str]:
        base = super().labels()
        return [lbl + ("·T" if row[2] else "") for lbl, row in zip(base, self.elements.tolist())]


# ----------------------------------------------------------------------------------------
# SO(3): quaternion elements; perspective tilts of images and viewpoints of point clouds
# ----------------------------------------------------------------------------------------


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


class SO3Grid(Group):
    """A grid on SO(3); elements are unit quaternions ``(qw, qx, qy, qz)``, ``q ~ −q``."""

    param_names = ("qw", "qx", "qy", "qz")

    def __init__(self, elements: Tensor, coords: dict[str, list], settings: dict[str, Any] | None = None):
        super().__init__(elements, settings)
        self.coords = coords  # the grid's own coordinates per element, for tables and plots

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


class Perspective(SO3Grid):
    """A virtual camera tilt: yaw about the image's vertical axis, then pitch about its horizontal axis.

    Element = R_y(yaw) · R_x(pitch) in camera coordinates (x right, y down, z forward).
    """

    name = "perspective"
    summary = "camera tilt by yaw and pitch (degrees) as a homography, focal length = image diagonal"
    plot_kind = "heatmap"
    plot_params = ("yaw", "pitch")
    options = (
        Option("extent", float, 30.0, "largest |yaw| and |pitch| (degrees)"),
        Option("step", float, 5.0, "grid step (degrees)"),
    )

    @classmethod
    def from_options(cls, extent: float = 30.0, step: float = 5.0) -> "Perspective":
        if not 0 <= extent < 90:
            raise ValueError(f"extent must be in [0, 90) degrees, got {extent:g}")
        values = _arange_inclusive(-extent, extent, step)
        gp, gy = torch.meshgrid(values, values, indexing="ij")  # pitch-major, yaw fastest
        yaw, pitch = gy.flatten(), gp.flatten()
        qy = axis_angle_quat(torch.tensor([0.0, 1.0, 0.0]).expand(len(yaw), 3), yaw)
        qx = axis_angle_quat(torch.tensor([1.0, 0.0, 0.0]).expand(len(pitch), 3), pitch)
        q = quat_mul(qy, qx)
        return cls(q, {"yaw": yaw.tolist(), "pitch": pitch.tolist()}, {"extent": extent, "step": step})


class Viewpoint(SO3Grid):
    """Rotations of 3-D point clouds on two grids.

    ``grid=planes`` (NERO's layout): rotation axes lying in the xy, xz or yz plane, at
    axis angles ``0..360-axis_step``, times rotation angles ``0..180`` step ``rot_step``.
    ``grid=sphere``: ``axes`` rotation axes spread evenly over the sphere (Fibonacci
    lattice), times rotation angles ``rot_step..180`` step ``rot_step``, plus the identity.
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
        if rot_step <= 0 or axis_step <= 0:
            raise ValueError("axis_step and rot_step must be positive")
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
