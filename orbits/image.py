"""The action of planar groups on images ``(N, C, H, W)``.

Every planar element is a 3×3 matrix ``M`` in pixel coordinates that maps a point of
the input image to where it lands in the output image. The output pixel ``p`` takes
the input value at ``M⁻¹ p``. Elements whose ``M⁻¹`` sends pixel centres to pixel
centres (the identity, integer shifts, multiples of 90 degrees on square images,
flips) are applied by index gathering and are exact; the rest are resampled with
``torch.nn.functional.grid_sample``, all elements of a chunk in one call.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .groups import Group
from .planar import centre as _centre
from .planar import rotation_matrices, transform_points

Tensor = torch.Tensor


def planar_matrices(group: Group, size: tuple[int, int], elements: Tensor | None = None) -> Tensor:
    """The ``(G, 3, 3)`` float64 matrices of ``group``'s elements for images of ``size`` (H, W)."""
    els = group.elements if elements is None else torch.as_tensor(elements, dtype=torch.float64).reshape(-1, len(group.param_names))
    return group.planar(els, (int(size[0]), int(size[1])))


def _exact_index(inv: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor] | None:
    """Integer source coordinates ``(ys, xs)`` if ``inv`` maps pixel centres to pixel centres."""
    if not torch.allclose(inv[2], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), atol=1e-12):
        return None
    lin, t = inv[:2, :2], inv[:2, 2]
    if not torch.allclose(lin, lin.round(), atol=1e-9) or not torch.allclose(t, t.round(), atol=1e-9):
        return None
    lin, t = lin.round(), t.round()
    # A signed permutation: one ±1 per row and column.
    if not (lin.abs().sum(0) == 1).all() or not (lin.abs().sum(1) == 1).all():
        return None
    h, w = size
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    src_x = lin[0, 0] * xs + lin[0, 1] * ys + t[0]
    src_y = lin[1, 0] * xs + lin[1, 1] * ys + t[1]
    return src_y.long(), src_x.long()


def _pad_index(i: Tensor, n: int, padding: str) -> tuple[Tensor, Tensor]:
    """Index into ``0..n-1`` and a validity mask, following ``grid_sample``'s padding modes."""
    valid = (i >= 0) & (i < n)
    if padding == "zeros":
        return i.clamp(0, n - 1), valid
    if padding == "border":
        return i.clamp(0, n - 1), torch.ones_like(valid)
    # reflection about the pixel edges (-0.5 and n - 0.5), as grid_sample with align_corners=False
    m = torch.remainder(i, 2 * n)
    return torch.where(m >= n, 2 * n - 1 - m, m), torch.ones_like(valid)


class ImageAction:
    """Apply the elements of a planar group to a batch of images.

    Convention:
        - Angles in degrees, positive = counter-clockwise as displayed (row 0 at the top,
          y axis down); ``rotation`` by 90 equals ``torch.rot90(x, 1, dims=(-2, -1))``.
        - Shifts in pixels: ``dx`` moves content right, ``dy`` moves it down.
        - Scale factors > 1 enlarge the content.
        - Centre of rotation and scaling: the true image centre ``((W-1)/2, (H-1)/2)`` in
          pixel-centre coordinates (``align_corners=False``).
        - Padding (what enters from outside): ``zeros`` (default), ``border`` or
          ``reflection`` (about the pixel edges), as in ``grid_sample``.
        - Interpolation: ``bilinear`` (default) or ``nearest`` for non-exact elements; elements
          that map pixel centres to pixel centres are gathered exactly, never interpolated.
        - ``mask="circle"`` zeroes everything outside the inscribed disc of every element,
          identity included, so no element sees corners that another cannot.
        - ``antialias=K`` (non-exact elements only): each output pixel is the mean of K×K
          samples spread evenly over its area (resample at K× resolution, then area-downsample),
          which lowers the aliasing that resampling adds; NERO's original code upsampled 3×.
        - Output ``(g, N, C, H, W)`` for ``g`` requested elements, same dtype and device.
    """

    def __init__(self, group: Group, size: tuple[int, int], interp: str = "bilinear",
                 padding: str = "zeros", mask: str = "none", antialias: int = 1):
        if interp not in ("bilinear", "nearest"):
            raise ValueError(f"interp must be bilinear or nearest, got {interp!r}")
        if padding not in ("zeros", "border", "reflection"):
            raise ValueError(f"padding must be zeros, border or reflection, got {padding!r}")
        if mask not in ("none", "circle"):
            raise ValueError(f"mask must be none or circle, got {mask!r}")
        if int(antialias) != antialias or not 1 <= antialias <= 16:
            raise ValueError(f"antialias must be a whole number from 1 to 16, got {antialias!r}")
        self.antialias = int(antialias)
        self.group = group
        self.size = (int(size[0]), int(size[1]))
        self.interp, self.padding, self.mask = interp, padding, mask
        self.matrices = planar_matrices(group, self.size)
        self.inverses = torch.linalg.inv(self.matrices)
        self._exact: list[tuple[Tensor, Tensor] | None] = []
        self.exact: list[bool] = []  # element i is applied with no interpolation at all
        for inv in self.inverses:
            idx = _exact_index(inv, self.size)
            self.exact.append(idx is not None)
            if idx is None and interp == "nearest":
                idx = self._nearest_index(inv)  # nearest neighbour is also a gather
            self._exact.append(idx)
        self._cache: dict[tuple, Tensor] = {}

    # -- public ---------------------------------------------------------------------
    def __call__(self, images: Tensor, indices: Sequence[int]) -> Tensor:
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        n, c, h, w = images.shape
        if (h, w) != self.size:
            raise ValueError(f"images are {h}×{w}, the action was built for {self.size[0]}×{self.size[1]}")
        indices = list(indices)
        gather = [j for j, i in enumerate(indices) if self._exact[i] is not None]
        warp = [j for j, i in enumerate(indices) if self._exact[i] is None]
        if not gather or not warp:  # one kind only: no copy into a shared output
            out = (self._gather(images, indices) if gather else self._warp(images, indices)).contiguous()
        else:
            out = images.new_empty((len(indices), n, c, h, w))
            pos = torch.tensor(gather, device=images.device)
            out.index_copy_(0, pos, self._gather(images, [indices[j] for j in gather]))
            pos = torch.tensor(warp, device=images.device)
            out.index_copy_(0, pos, self._warp(images, [indices[j] for j in warp]))
        if self.mask == "circle":
            out.mul_(self._disc(images.device, images.dtype))
        return out

    def apply_each(self, images: Tensor, indices: Sequence[int]) -> Tensor:
        """Apply element ``indices[j]`` to ``images[j]``: ``(g, N, C, H, W)`` in, same shape out.

        Used to map outputs back, where every element has its own output to transform.
        """
        g, n, c, h, w = images.shape
        indices = list(indices)
        if (h, w) != self.size or len(indices) != g:
            raise ValueError(f"apply_each needs (g={len(indices)}, N, C, {self.size[0]}, {self.size[1]}) images")
        out = images.new_empty(images.shape)
        gather = [j for j, i in enumerate(indices) if self._exact[i] is not None]
        warp = [j for j, i in enumerate(indices) if self._exact[i] is None]
        if gather:
            idx, valid = zip(*(self._flat_index(indices[j], images.device) for j in gather))
            src = images[gather].reshape(len(gather), n * c, h * w)
            got = torch.gather(src, 2, torch.stack(idx)[:, None].expand(-1, n * c, -1))
            if self.padding == "zeros":
                got = got * torch.stack(valid)[:, None].to(images.dtype)
            out[gather] = got.reshape(len(gather), n, c, h, w)
        if warp:
            res = self._sample(images[warp].reshape(len(warp), n * c, h, w), [indices[j] for j in warp])
            out[warp] = res.reshape(len(warp), n, c, h, w)
        if self.mask == "circle":
            out.mul_(self._disc(images.device, images.dtype))
        return out

    # -- internals --------------------------------------------------------------------
    def _nearest_index(self, inv: Tensor) -> tuple[Tensor, Tensor]:
        h, w = self.size
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
        den = inv[2, 0] * xs + inv[2, 1] * ys + inv[2, 2]
        sx = (inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]) / den
        sy = (inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]) / den
        # round half away from zero differs from grid_sample's nearest (half to even) only on ties
        return torch.round(sy).long(), torch.round(sx).long()

    def _flat_index(self, i: int, device: torch.device) -> tuple[Tensor, Tensor]:
        key = ("gather", i, device)
        if key not in self._cache:
            h, w = self.size
            ys, xs = self._exact[i]  # type: ignore[misc]
            yi, vy = _pad_index(ys, h, self.padding)
            xi, vx = _pad_index(xs, w, self.padding)
            self._cache[key] = ((yi * w + xi).flatten().to(device), (vy & vx).flatten().to(device))
        return self._cache[key]  # type: ignore[return-value]

    def _gather(self, images: Tensor, indices: list[int]) -> Tensor:
        n, c, h, w = images.shape
        flat = images.reshape(n * c, h * w)
        idx, valid = zip(*(self._flat_index(i, images.device) for i in indices))
        idx_t = torch.stack(idx)  # (g, HW); index_select copies the same values as flat[:, idx_t], 4x faster
        out = flat.index_select(1, idx_t.flatten()).view(n * c, len(indices), h * w)  # (NC, g, HW)
        if self.padding == "zeros":
            out = out * torch.stack(valid).to(images.dtype)
        return out.permute(1, 0, 2).reshape(len(indices), n, c, h, w)

    def _sample(self, src: Tensor, indices: list[int]) -> Tensor:
        """``grid_sample`` of ``src`` ``(g, NC, H, W)``, element ``indices[j]`` on ``src[j]``; with
        ``antialias=K`` each output pixel averages K×K samples spread over its area."""
        key = ("grids", tuple(indices), src.device, src.dtype)
        grid = self._cache.get(key)
        if grid is None and len(indices) == 1:  # one element: its own cached grid, not a second copy
            grid = self._grid(indices[0], src.device, src.dtype)[None]
        elif grid is None:  # (g, KH, KW, 2); a sweep asks for the same elements chunk after chunk
            grid = torch.stack([self._grid(i, src.device, src.dtype) for i in indices])
            if len(self._cache) < 4096:
                self._cache[key] = grid
        out = F.grid_sample(src, grid, mode=self.interp, padding_mode=self.padding, align_corners=False)
        return F.avg_pool2d(out, self.antialias) if self.antialias > 1 else out

    def _grid(self, i: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        key = ("grid", i, device, dtype)
        if key not in self._cache:
            h, w = self.size
            inv = self.inverses[i]
            k = self.antialias  # output sample positions: pixel centres, or K×K sub-pixel centres
            ys, xs = torch.meshgrid(*((torch.arange(k * s, dtype=torch.float64) + 0.5) / k - 0.5 if k > 1
                                      else torch.arange(s, dtype=torch.float64) for s in (h, w)), indexing="ij")
            den = inv[2, 0] * xs + inv[2, 1] * ys + inv[2, 2]
            sx = (inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]) / den
            sy = (inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]) / den
            grid = torch.stack([(2 * sx + 1) / w - 1, (2 * sy + 1) / h - 1], dim=-1)
            self._cache[key] = grid.to(device=device, dtype=dtype)
        return self._cache[key]

    def _warp(self, images: Tensor, indices: list[int]) -> Tensor:
        n, c, h, w = images.shape
        out = self._sample(images.reshape(1, n * c, h, w).expand(len(indices), n * c, h, w), indices)
        return out.reshape(len(indices), n, c, h, w)

    def _disc(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        key = ("disc", device, dtype)
        if key not in self._cache:
            h, w = self.size
            cx, cy = _centre(self.size)
            ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
            r = min(h, w) / 2.0
            self._cache[key] = (((xs - cx) ** 2 + (ys - cy) ** 2) <= r * r).to(device=device, dtype=dtype)
        return self._cache[key]


__all__ = ["ImageAction", "planar_matrices", "rotation_matrices", "transform_points"]
