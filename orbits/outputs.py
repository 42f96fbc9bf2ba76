"""Output types: how a model's output transforms, and how to map it back by ``g⁻¹``.

An output type is (how space moves, ρ on its channels), as in escnn's ``featurefield_action``:

================  =====================  ==================================================
type              space                  ρ on the channels
================  =====================  ==================================================
``invariant``     none                   identity (class logits, a scalar per sample)
``scalar_field``  pixels move            identity (dense labels move but do not change)
``vector_field``  pixels move            the element's linear part (flow vectors turn) and
                                         −1 under time reversal
``boxes``         box corners move       none (boxes ``x1, y1, x2, y2`` follow the content)
``points``        none                   the rotation (3-D points or vectors turn)
================  =====================  ==================================================

Each type has one :meth:`pull_back` that maps outputs computed at ``g·x`` back to the frame
of ``x``, so an equivariant model gives back its output at the identity, and a
:meth:`valid` region: where the pulled-back value came from inside the frame (``None`` when
everything is valid). :func:`equivariance_residual` is the one pure function that scores a
model from declared input and output types.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

import torch

from .groups import Group
from .image import ImageAction
from .planar import transform_points

Tensor = torch.Tensor


class InverseView(Group):
    """The same grid with every element replaced by its inverse (shares the group law)."""

    def __init__(self, group: Group):
        self.__dict__.update(group.__dict__)
        self.name = group.name
        self.param_names = group.param_names
        self._base = group
        self.elements = group.inverse(group.elements)

    def identity(self) -> Tensor:
        return self._base.identity()

    def _compose(self, a: Tensor, b: Tensor) -> Tensor:
        return self._base._compose(a, b)

    def _inverse(self, a: Tensor) -> Tensor:
        return self._base._inverse(a)

    def planar(self, elements: Tensor, size: tuple[int, int]) -> Tensor:
        return self._base.planar(elements, size)


def time_reversed(group: Group) -> list[bool]:
    """Per element, whether it reverses time (``t = 1`` in ``d4t``); all False otherwise."""
    if "t" not in group.param_names:
        return [False] * len(group)
    i = group.param_names.index("t")
    return [bool(v) for v in group.elements[:, i].tolist()]


class OutputType:
    """Base class: the identity pull-back with everything valid."""

    name: ClassVar[str] = ""

    def __init__(self, group: Group, size: tuple[int, int] | None = None, **image_options: Any):
        self.group = group
        self.size = size

    def pull_back(self, outputs: Tensor, indices: Sequence[int]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def valid(self, indices: Sequence[int], device: torch.device | None = None) -> Tensor | None:
        return None


class Invariant(OutputType):
    """Convention:
        - The output should not change under any element: ``pull_back`` is the identity.
        - Any shape ``(g, N, ...)``.
    """

    name = "invariant"

    def pull_back(self, outputs: Tensor, indices: Sequence[int]) -> Tensor:
        return outputs


class Field(OutputType):
    """Convention:
        - Dense outputs ``(g, N, C, H, W)`` on the image grid.
        - ``g⁻¹ · F``: the pixels move back as :class:`~orbits.image.ImageAction` moves them
          by ``g⁻¹`` (same interpolation and mask options, zeros padding), then ρ acts on the
          channels (the identity for a scalar field).
        - :meth:`valid` ``(g, H, W)`` is 1 where the pulled-back value came from inside the
          image; compare fields only there.
    """

    name = "scalar_field"

    def __init__(self, group: Group, size: tuple[int, int] | None = None, **image_options: Any):
        if size is None:
            raise ValueError(f"{self.name} outputs need the image size")
        super().__init__(group, size)
        opts = {**image_options, "padding": "zeros"}
        self.back = ImageAction(InverseView(group), size, **opts)
        self.forward = ImageAction(group, size, **opts)
        self._valid: Tensor | None = None

    def rho(self, moved: Tensor, indices: list[int]) -> Tensor:
        return moved

    def pull_back(self, outputs: Tensor, indices: Sequence[int]) -> Tensor:
        indices = list(indices)
        return self.rho(self.back.apply_each(outputs, indices), indices)

    def valid(self, indices: Sequence[int], device: torch.device | None = None) -> Tensor:
        if self._valid is None:
            h, w = self.size  # type: ignore[misc]
            ones = torch.ones(1, 1, h, w)
            masks = []
            for i in range(len(self.group)):
                there = self.forward(ones, [i])[0]
                back = self.back(there, [i])[0]
                masks.append((back[0, 0] > 0.999).to(torch.float32))
            self._valid = torch.stack(masks)
        return self._valid[list(indices)].to(device)


class ScalarField(Field):
    """A dense field of scalars (class logits or labels per pixel): pixels move, values do not."""

    name = "scalar_field"


class VectorField(Field):
    """Convention:
        - Channel 0 is ``u`` along +x (right), channel 1 is ``v`` along +y (down), in pixels.
        - ``g · F`` moves the pixels as the image action does *and* turns every vector by the
          element's linear part ``L``: ``(g·F)(p) = L F(M⁻¹ p)``. A quarter turn
          counter-clockwise as displayed maps ``(u, v)`` to ``(v, −u)``; a horizontal flip
          negates ``u``; time reversal negates the field.
        - :meth:`pull_back` applies ``g⁻¹`` to the output at ``g·x``, so that an equivariant
          model gives back ``f(x)`` exactly (for exact elements). Only affine groups.
    """

    name = "vector_field"

    def __init__(self, group: Group, size: tuple[int, int] | None = None, **image_options: Any):
        super().__init__(group, size, **image_options)
        inv = self.back.matrices
        if not torch.allclose(inv[:, 2, :2], torch.zeros_like(inv[:, 2, :2]), atol=1e-12):
            raise ValueError(f"group '{group.name}' is not affine; vectors cannot be mapped back")
        self.linear = inv[:, :2, :2].to(torch.float32)  # linear part of M⁻¹
        self.sign = torch.tensor([-1.0 if r else 1.0 for r in time_reversed(group)])

    def rho(self, moved: Tensor, indices: list[int]) -> Tensor:
        g = moved.shape[0]
        lin = self.linear[indices].to(moved.device, moved.dtype)
        turned = torch.einsum("gij,gnjhw->gnihw", lin, moved)
        return turned * self.sign[indices].to(moved.device, moved.dtype).view(g, 1, 1, 1, 1)


class Boxes(OutputType):
    """Convention:
        - Boxes ``(g, N, D, 4 + k)``: ``x1, y1, x2, y2`` in pixel-edge coordinates (see
          :func:`~orbits.boxes.map_boxes`), mapped back by ``g⁻¹``, then ``k`` columns that do
          not move (score, class). Returned in float64.
        - Exact for shifts and scalings; the axis-aligned envelope under rotations and tilts.
    """

    name = "boxes"

    def __init__(self, group: Group, size: tuple[int, int] | None = None, **image_options: Any):
        if size is None:
            raise ValueError("box outputs need the image size")
        super().__init__(group, size)
        self.inverses = torch.linalg.inv(group.planar(group.elements, size))

    def pull_back(self, outputs: Tensor, indices: Sequence[int]) -> Tensor:
        from .boxes import map_boxes

        inv = self.inverses[list(indices)]
        moved = torch.stack([map_boxes(inv[j : j + 1], outputs[j, ..., :4].double())[0] for j in range(len(inv))])
        return torch.cat([moved.to(outputs.device), outputs[..., 4:].double()], -1)


class Points(OutputType):
    """Convention:
        - 3-D points or vectors ``(g, N, P, 3)`` turned back by ``Rᵀ`` of each SO(3) element
          (the inverse of :class:`~orbits.points.PointAction`'s ``p ↦ R p``). Exact up to rounding.
    """

    name = "points"

    def __init__(self, group: Group, size: tuple[int, int] | None = None, **image_options: Any):
        super().__init__(group, size)
        if not hasattr(group, "matrices"):
            raise ValueError(f"group '{group.name}' does not act on points")
        self.matrices = group.matrices()

    def pull_back(self, outputs: Tensor, indices: Sequence[int]) -> Tensor:
        r = self.matrices[list(indices)].to(outputs.device, outputs.dtype)
        return torch.einsum("gji,gnpj->gnpi", r, outputs)


OUTPUT_TYPES: dict[str, type[OutputType]] = {t.name: t for t in (Invariant, ScalarField, VectorField, Boxes, Points)}


def make_output(kind: str, group: Group, size: tuple[int, int] | None = None, **image_options: Any) -> OutputType:
    """The output type ``kind`` (a key of :data:`OUTPUT_TYPES`) for ``group`` on images of ``size``."""
    if kind not in OUTPUT_TYPES:
        raise ValueError(f"unknown output type {kind!r}; known: {', '.join(OUTPUT_TYPES)}")
    return OUTPUT_TYPES[kind](group, size, **image_options)


def equivariance_residual(f: Callable[[Tensor], Tensor], x: Tensor, action: Callable[[Tensor, Sequence[int]], Tensor],
                          output: OutputType, indices: Sequence[int], identity: int) -> Tensor:
    """``‖g⁻¹·f(g·x) − f(x)‖ / ‖f(x)‖`` per element and sample ``(g, N)``, over the valid region.

    ``f`` maps a batch ``(M, ...)`` to outputs ``(M, ...)``; ``action`` is the input action,
    ``output`` the declared output type. 0 for an equivariant ``f`` on exact elements. The
    reference ``f(x)`` is the identity's own output where ``indices`` hold the identity (exactly 0
    there, whatever the kernels' rounding for another batch size), else one more call.
    """
    indices = list(indices)
    xs = action(x, indices)
    g, n = xs.shape[:2]
    out = f(xs.reshape(g * n, *xs.shape[2:]))
    out = out.reshape(g, n, *out.shape[1:]).double()
    back = output.pull_back(out, indices)
    if identity in indices:
        ref = out[indices.index(identity)][None]
    else:
        ref = f(action(x, [identity])[0]).double()[None]
    mask = output.valid(indices, back.device)
    diff, den = back - ref, ref.expand_as(back)
    if mask is not None:
        m = mask.to(back.dtype).view(g, 1, *([1] * (back.ndim - 4)), *mask.shape[-2:])
        diff, den = diff * m, den * m
    num = diff.flatten(2).norm(dim=-1)
    den = den.flatten(2).norm(dim=-1)
    return torch.where(den > 0, num / den.clamp_min(1e-300), num)


__all__ = ["OutputType", "Invariant", "ScalarField", "VectorField", "Boxes", "Points", "OUTPUT_TYPES",
           "make_output", "equivariance_residual", "InverseView", "time_reversed"]
