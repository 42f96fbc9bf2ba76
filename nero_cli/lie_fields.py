"""The Lie derivative of a vector-field output (optical flow, PIV): ``nero lie --task flow``.

A flow model ``f`` maps a frame pair ``x`` to a field ``F = f(x)`` ``(2, H, W)`` in pixels (``u``
right, ``v`` down). Under an affine element with pixel matrix ``M`` and linear part ``L`` a field
transforms as ``(g·F)(p) = L F(M⁻¹ p)`` (:class:`orbits.outputs.VectorField`), so the output at
``g(t)·x`` mapped back to the frame of ``x`` is

    ``P_t(p) = L(t)⁻¹ f(g(t)·x)(M(t) p)``,

which is ``f(x)`` for every ``t`` when the model is equivariant. The Lie derivative is the field
``D(p) = dP_t(p)/dt`` at ``t = 0`` (pixels per degree, per pixel of shift, or per unit of
log-scale), and nero reports per sample

    ``mean over the valid pixels p of ‖D(p)‖₂``,

the rate at which the endpoint error between the pulled-back flow and the identity's grows,
per unit of the generator (unit ``mean EPE px/degree``, ``px/pixel``, ``px/log-scale``).

``P_t`` is differentiable in ``t``: the frames move through :func:`nero_cli.lie_warp.warp`, the
output is resampled at ``M(t) p`` with the same bilinear pair of samplers (its derivative at the
pixel centres is the central difference of ``F`` along the generator's velocity), then turned by
``L(t)⁻¹``. A pixel is *valid* when the points ``M(±h) p`` (``h`` = 0.001) stay within the pixel
centres of the frame, so the resampled output never reads the zero padding (and, with
``mask=circle``, when it lies in the inscribed disc): the limit of ``evaluate``'s valid region as
the element tends to the identity. Only affine groups pull vectors back: rotation, shift, scale.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

from .lie_warp import Generator, bilinear_pair, disc, generator_matrices, mapped_points

#: The groups whose generators act on flow (affine: the vectors turn by the element's linear part).
FLOW_GROUPS = ("rotation", "shift", "scale")
DOC = ("mean over valid pixels of ‖d/dt [g(t)⁻¹·f(g(t)·x)]‖₂ at the identity: pixels of flow per unit of the "
       "generator (the growth rate of the endpoint error of the pulled-back flow)")


def unit_of(generator_unit: str) -> str:
    """The unit of a flow Lie derivative along a generator, e.g. ``mean EPE px/degree``."""
    return f"mean EPE px/{generator_unit}"


def pull_back(flow: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """``L⁻¹ F(M p)`` ``(B, 2, H, W)`` of fields ``F`` ``(B, 2, H, W)`` under affine pixel matrices
    ``M`` ``(B, 3, 3)``: resampled (bilinear pair, zeros outside) at ``M p`` and turned by ``L⁻¹``."""
    mx, my = mapped_points(matrices, tuple(flow.shape[-2:]))
    moved = bilinear_pair(flow, mx.to(flow.device), my.to(flow.device), "zeros")
    inverse = torch.linalg.inv(matrices[:, :2, :2]).to(device=flow.device, dtype=flow.dtype)
    return torch.einsum("bij,bjhw->bihw", inverse, moved)


def pulled_back(runner: Any, task: Any, x: torch.Tensor, gen: Generator, t: torch.Tensor,
                wrapped: bool) -> torch.Tensor:
    """``P_t = g(t)⁻¹ · f(g(t)·x)`` ``(B, 2, H, W)`` in float64 for frame pairs ``x`` ``(B, 2C, H, W)``;
    ``wrapped``: through ``runner(x)`` (failures become one ModelError line), else ``runner.raw``."""
    frames = gen.act(x, t)
    raw = runner(frames) if wrapped else runner.raw(runner.prepare(frames))
    flow = task.prepare(raw, len(x), runner.name).double()
    return pull_back(flow, gen.matrices(t))


@lru_cache(maxsize=32)
def _valid(group: str, name: str, size: tuple[int, int], circle: bool, h: float = 1e-3) -> torch.Tensor:
    h_, w_ = size
    inside = torch.ones(size, dtype=torch.bool)
    for s in (h, -h):
        mx, my = mapped_points(generator_matrices(group, name, torch.tensor([s]), size), size)
        eps = 1e-9
        inside &= ((mx[0] >= -eps) & (mx[0] <= w_ - 1 + eps) & (my[0] >= -eps) & (my[0] <= h_ - 1 + eps))
    return inside & (disc(size) > 0) if circle else inside


def valid_pixels(gen: Generator) -> torch.Tensor:
    """``(H, W)`` bool: the pixels whose resampled output stays inside the frame for small ``t`` of
    either sign (and inside the disc with ``mask=circle``); the mean of :func:`field_rate` runs over them."""
    return _valid(gen.group, gen.name, tuple(gen.size), gen.circle)


def field_rate(derivative: torch.Tensor, gen: Generator) -> np.ndarray:
    """Per sample, the mean over :func:`valid_pixels` of ``‖D(p)‖₂`` for ``D`` ``(B, 2, H, W)``."""
    mask = valid_pixels(gen).to(derivative.device)
    norms = derivative.double().norm(dim=1)  # (B, H, W)
    if not bool(mask.any()):  # a frame too small to have pixels that stay inside: nothing to report
        return np.full(len(derivative), np.nan)
    return norms[:, mask].mean(-1).cpu().numpy()


__all__ = ["FLOW_GROUPS", "DOC", "unit_of", "pull_back", "pulled_back", "valid_pixels", "field_rate"]
