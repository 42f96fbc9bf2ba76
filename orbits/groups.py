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

from . import planar as _planar

Tensor = torch.Tensor


@dataclass(frozen=True)
class Option:
    """One ``key=value`` option of a group spec string."""

    name: str
    kind: type  # float, int or str
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    #: Inclusive ``(low, high)`` bounds of a numeric option, or None.
    bounds: tuple[float, float] | None = None


#: The most values one axis of a grid may hold (a guard against typos like step=1e-9).
MAX_AXIS = 1_000_000


def check_step(step: float, span: float | None = None, where: str = "", name: str = "step") -> None:
    """A grid step given by the user, checked before anything computed from it: positive and
    finite, and with ``span`` (the length of the range it divides, described by ``where``, e.g.
    "a full turn") no larger than a positive span and not so small that the grid over it would
    exceed :data:`MAX_AXIS` values."""
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"{name} must be positive and finite, got {step:g}")
    if span is None or not math.isfinite(span) or span <= 0:
        return
    if step > span * (1 + 1e-12):
        raise ValueError(f"{name} ({step:g}) is larger than {where} ({span:g}); give a {name} of at most {span:g}")
    count = span / step + 1
    if count > MAX_AXIS:
        raise ValueError(f"{name}={step:g} would make {count:.3g} values over {where} (at most {MAX_AXIS:,}); "
                         f"use a larger {name}")


def _arange_inclusive(start: float, stop: float, step: float) -> Tensor:
    """``start, start+step, ... <= stop`` in float64, robust to rounding."""
    check_step(step)
    if not (math.isfinite(start) and math.isfinite(stop)):
        raise ValueError(f"start and stop must be finite numbers, got {start:g} and {stop:g}")
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

    # -- representations ------------------------------------------------------------
    def planar(self, elements: Tensor, size: tuple[int, int]) -> Tensor:
        """The ``(G, 3, 3)`` float64 pixel-space matrices of ``elements`` for images of ``size``
        (see :mod:`orbits.planar` for the convention). Groups that do not act on the image
        plane raise ``ValueError``."""
        raise ValueError(f"group '{self.name}' does not act on images")

    @property
    def is_planar(self) -> bool:
        """Whether the group has a planar representation (acts on images)."""
        return type(self).planar is not Group.planar

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

    def element_weights(self) -> Tensor:
        """``(G,)`` float64: one over how many elements of the grid are the same group element as
        this one (by :meth:`equal`), so that a mean weighted by them counts every distinct
        element once. All ones when the grid repeats nothing; the weights of a set of copies sum
        to 1 and all of them sum to the number of distinct elements. ``O(G²)`` comparisons, made
        a block of rows at a time (2,808 elements: a few hundred milliseconds)."""
        els = self.elements
        counts = torch.empty(len(els), dtype=torch.float64)
        rows = max(1, 2 ** 20 // len(els))
        for i in range(0, len(els), rows):
            counts[i:i + rows] = self.equal(els[i:i + rows, None], els[None]).sum(-1).to(torch.float64)
        return 1.0 / counts

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


class _Additive(Group):
    """A group whose law is coordinate addition (angles modulo their period): identity 0."""

    def identity(self) -> Tensor:
        return torch.zeros(len(self.param_names), dtype=torch.float64)

    def _compose(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b

    def _inverse(self, a: Tensor) -> Tensor:
        return -a


class Rotation(_Additive):
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
        check_step(step, 360.0 if stop is None else stop - start,
                   "a full turn" if stop is None else f"the range from start={start:g} to stop={stop:g}")
        if stop is None:
            stop = start + 360.0 - step
        if stop - start >= 360.0 - 1e-9:
            raise ValueError(f"start={start:g} to stop={stop:g} covers more than a full turn; "
                             "the orbit would repeat elements (use stop <= start + 360 - step)")
        angles = _arange_inclusive(start, stop, step)
        return cls(angles[:, None], {"start": start, "stop": stop, "step": step})

    def planar(self, elements: Tensor, size: tuple[int, int]) -> Tensor:
        return _planar.rotation_matrices(elements[:, 0], size)


class Shift(_Additive):
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
        if extent < 0:
            raise ValueError(f"extent must not be negative, got {extent:g}")
        if step is None:  # a default step is not checked against the range
            step = float(max(1, round(extent / 8)))
        else:
            check_step(step, 2 * extent, "the range from -extent to extent")
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

    def planar(self, elements: Tensor, size: tuple[int, int]) -> Tensor:
        return _planar.translation_matrices(elements[:, 0], elements[:, 1])


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
        check_step(step, stop - start, f"the range from start={start:g} to stop={stop:g}")
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

    def planar(self, elements: Tensor, size: tuple[int, int]) -> Tensor:
        return _planar.scale_matrices(elements[:, 0], size)

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

    def planar(self, elements: Tensor, size: tuple[int, int]) -> Tensor:
        """Quarter turns (counter-clockwise as displayed) after an optional horizontal flip."""
        k, flip = elements[:, 0], elements[:, 1]
        rot = _planar.rotation_matrices(90.0 * k, size)[:, :2, :2]
        fx = torch.diag_embed(torch.stack([1 - 2 * flip, torch.ones_like(flip)], -1))
        return _planar.about_centre(rot @ fx, size)

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
