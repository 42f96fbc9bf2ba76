"""Frame pairs and vector fields (optical flow) under D4, time reversal and rotations."""

from __future__ import annotations

from typing import Sequence

import torch

from .groups import Group
from .image import ImageAction

Tensor = torch.Tensor


class _InverseView(Group):
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


def _time_reversed(group: Group) -> list[bool]:
    if "t" not in group.param_names:
        return [False] * len(group)
    i = group.param_names.index("t")
    return [bool(v) for v in group.elements[:, i].tolist()]


class FrameAction:
    """Apply elements to frame pairs ``(N, 2C, H, W)`` (frame 1 channels, then frame 2's).

    Convention:
        - The spatial part acts on both frames as :class:`~orbits.image.ImageAction` does
          (degrees, counter-clockwise as displayed, y axis down, true image centre, same
          padding, interpolation and masking options).
        - D4 elements ``(k, flip)``: a horizontal flip (x → −x) first, then ``k`` quarter turns;
          they are exact.
        - Time reversal (``t = 1`` in ``d4t``) swaps frame 1 and frame 2.
        - Output ``(g, N, 2C, H, W)``.
    """

    def __init__(self, group: Group, size: tuple[int, int], **image_options: str):
        self.group = group
        self.image = ImageAction(group, size, **image_options)
        self.reversed = _time_reversed(group)

    def __call__(self, frames: Tensor, indices: Sequence[int]) -> Tensor:
        if frames.ndim != 4 or frames.shape[1] % 2:
            raise ValueError(f"frames must be (N, 2C, H, W), got shape {tuple(frames.shape)}")
        indices = list(indices)
        out = self.image(frames, indices)
        c = frames.shape[1] // 2
        swap = [j for j, i in enumerate(indices) if self.reversed[i]]
        if swap:
            out[swap] = torch.cat([out[swap][:, :, c:], out[swap][:, :, :c]], 2)
        return out


class VectorFieldAction:
    """Map model outputs back: ``g⁻¹ · F`` for vector fields ``F`` of shape ``(…, 2, H, W)``.

    Convention:
        - Channel 0 is ``u`` along +x (right), channel 1 is ``v`` along +y (down), in pixels.
        - ``g · F`` moves the pixels as the image action does *and* turns every vector by the
          element's linear part ``L``: ``(g·F)(p) = L F(M⁻¹ p)``. A quarter turn
          counter-clockwise as displayed maps ``(u, v)`` to ``(v, −u)``; a horizontal flip
          negates ``u``; time reversal negates the field.
        - :meth:`pull_back` applies ``g⁻¹`` to the output at ``g·x``, so that an equivariant
          model gives back ``f(x)`` exactly (for exact elements).
        - :meth:`valid` is 1 where the pulled-back field saw the image (not padding); with
          interpolated rotations, compare fields only there.
    """

    def __init__(self, group: Group, size: tuple[int, int], **image_options: str):
        self.group = group
        opts = dict(image_options)
        opts["padding"] = "zeros"
        self.back = ImageAction(_InverseView(group), size, **opts)
        self.forward = ImageAction(group, size, **opts)
        inv = self.back.matrices
        self.linear = inv[:, :2, :2].to(torch.float32)  # linear part of M⁻¹ (affine elements)
        if not torch.allclose(inv[:, 2, :2], torch.zeros_like(inv[:, 2, :2]), atol=1e-12):
            raise ValueError(f"group '{group.name}' is not affine; vectors cannot be mapped back")
        self.sign = torch.tensor([-1.0 if r else 1.0 for r in _time_reversed(group)])

    def pull_back(self, fields: Tensor, indices: Sequence[int]) -> Tensor:
        """``fields``: ``(g, N, 2, H, W)`` outputs at ``g·x`` → ``g⁻¹ · fields``, same shape."""
        indices = list(indices)
        g, n = fields.shape[:2]
        moved = self.back.apply_each(fields, indices)
        lin = self.linear[indices].to(fields.device, fields.dtype)
        turned = torch.einsum("gij,gnjhw->gnihw", lin, moved)
        return turned * self.sign[indices].to(fields.device, fields.dtype).view(g, 1, 1, 1, 1)

    def valid(self, indices: Sequence[int], device: torch.device | None = None) -> Tensor:
        """``(g, H, W)`` mask of pixels whose pulled-back value came from inside the image."""
        h, w = self.forward.size
        ones = torch.ones(1, 1, h, w, device=device)
        out = []
        for i in indices:
            there = self.forward(ones, [i])[0]
            back = self.back(there, [i])[0]
            out.append((back[0, 0] > 0.999).to(torch.float32))
        return torch.stack(out)
