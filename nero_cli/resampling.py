"""What resampling alone does to a measurement: the round-trip floor and the content's coverage.

- **Floor.** For every orbit element that is not exact on the pixel grid, the model's
  equivariance error on the round trip ``g⁻¹·(g·x)`` against ``x``. The round trip resamples
  the input twice and transforms it not at all, so an error there is caused by resampling
  alone, as *this* model sees it; the error at ``g·x`` above that floor is the model's.
  Why this estimator: it needs no model of the interpolation kernel, it is computed with the
  model's own forward pass on the images it is actually shown, it is exactly 0 on exact
  elements, and it is conservative (two resamplings blur at least as much as one) — so an
  error below the floor is never blamed on the model. Exact elements get a floor of 0.
- **Coverage.** The share of the input's content (its mass above the background: the median
  of the border pixels) whose pixel centres the element maps inside the frame. It does not
  depend on the model or the interpolation; below 0.9 the orbit mostly measures content
  leaving the frame.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from orbits import ImageAction, OrbitSpec, planar_matrices, transform_points
from orbits.outputs import InverseView

Tensor = torch.Tensor
Action = Callable[[Tensor, Sequence[int]], Tensor]


def inexact(action: object, n_elements: int) -> list[int]:
    """Indices of the elements the input action resamples (all exact when it never does)."""
    exact = getattr(action, "exact", None) or getattr(getattr(action, "image", None), "exact", None)
    return [] if exact is None else [i for i in range(n_elements) if not exact[i]]


def round_trip(spec: OrbitSpec, size: tuple[int, int]) -> Action:
    """``x, idx -> g⁻¹·(g·x)`` for each element of ``idx`` ``(len(idx), B, C, H, W)``: the spatial
    action and its inverse (a time reversal in ``d4t`` swaps twice, so it is left out)."""
    fwd = ImageAction(spec.group, size, **spec.action)
    back = ImageAction(InverseView(spec.group), size, **spec.action)

    def act(x: Tensor, idx: Sequence[int]) -> Tensor:
        return back.apply_each(fwd(x, list(idx)), list(idx))

    return act


def content_mass(x: Tensor) -> Tensor:
    """``(B, H*W)``: per pixel, the input's mass above its background (per channel, the median of
    the border pixels), summed over channels."""
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., 1:-1, 0], x[..., 1:-1, -1]], -1)  # (B, C, P)
    bg = border.median(-1).values[..., None, None]
    return (x - bg).clamp_min(0).sum(1).flatten(1).double()


def in_frame(spec: OrbitSpec, size: tuple[int, int]) -> Tensor:
    """``(G, H*W)`` float64: 1 where the element maps the pixel centre inside the frame, else 0."""
    h, w = size
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    moved = transform_points(planar_matrices(spec.group, size), torch.stack([xs, ys], -1).reshape(-1, 2))
    return ((moved[..., 0] > -0.5) & (moved[..., 0] < w - 0.5) & (moved[..., 1] > -0.5)
            & (moved[..., 1] < h - 0.5)).double()


def coverage(x: Tensor, spec: OrbitSpec, size: tuple[int, int], inside: Tensor | None = None) -> Tensor:
    """``(G, B)``: share of each input's content mapped inside the frame by each element (1 when
    an input has no content above its background). ``inside``: :func:`in_frame` of the same spec
    and size, when the caller keeps it (a sweep computes it once per orbit, not per chunk)."""
    inside = in_frame(spec, size) if inside is None else inside
    mass = content_mass(x.cpu())  # (B, HW)
    total = mass.sum(-1)
    kept = inside @ mass.T  # (G, B)
    return torch.where(total > 0, kept / total.clamp_min(1e-300), torch.ones_like(kept))


def coverage_warnings(summary: dict) -> list[str]:
    """One line per group whose orbit keeps, on average, less than 90 % of the content in frame."""
    out, seen = [], set()
    for groups in summary.get("metrics", {}).values():
        for group, row in groups.items():
            cov = row.get("coverage")
            if cov is not None and cov < COVERAGE_WARN and group not in seen:
                seen.add(group)
                out.append(f"group {group}: its elements keep on average {cov:.2f} of the content in frame "
                           f"(< {COVERAGE_WARN}); its numbers mostly measure content leaving the frame, not the "
                           "model; use a smaller extent")
    return out


COVERAGE_WARN = 0.9
