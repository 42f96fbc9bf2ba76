"""Optical flow / PIV: frame pairs ``(N, 2C, H, W)`` -> flow ``(N, 2, H, W)`` in pixels; a vector field."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from .. import data as _data
from .. import metrics as M
from ..measures import metric
from .base import Chunk, TaskRecord, as_tensor_output, checked, first_frame


def prepare_flow(out: Any, n: int, model_name: str, finite: bool = True) -> torch.Tensor:
    flow = as_tensor_output(out, model_name, "a flow tensor (N, 2, H, W)")
    return checked(flow, "flow", model_name, n, 4, f"(N={n}, 2, H, W)", channels=(1, 2), what="flow",
                   finite=finite).float()


def score_flow(back: torch.Tensor, chunk: Chunk) -> Mapping[str, Any]:
    """``back``: pulled-back flow ``(G, B, 2, H, W)``; the reference is the ground truth or the
    mean of the pulled-back fields over the orbit (valid pixels only)."""
    valid = chunk.valid(back.device)[:, None, None]  # (G, 1, 1, H, W)
    if chunk.reference == "labels":
        ref = chunk.targets["flow"].to(back.device)
    else:
        ref = M.masked_mean(back, valid, dim=0)
    aee, rmse = M.flow_errors(back, ref[None], valid[:, :, 0])
    eq = M.relative_field_error(back, back[chunk.identity : chunk.identity + 1], valid[:, :, 0])
    return {"back": back, "valid": valid, "ref": ref, "aee": aee, "rmse": rmse, "eq": eq}


def flow_error_map(back: torch.Tensor, chunk: Chunk) -> torch.Tensor:
    """Per-pixel endpoint error ``(G, B, H, W)`` against the reference (NaN outside the valid region)."""
    c = score_flow(back, chunk)
    err = M.endpoint_error(back, c["ref"][None])
    return torch.where(c["valid"][:, :, 0] > 0, err, torch.full_like(err, float("nan")))


AEE = metric("aee", lambda c: c["aee"], label="average endpoint error (px)", unit="px", higher=False, range=None,
             doc="mean over valid pixels of the endpoint error ‖Δ(u, v)‖₂ against the reference")
RMSE = metric("rmse", lambda c: c["rmse"], label="RMS vector error (px)", unit="px", higher=False, range=None,
              doc="root of the mean over valid pixels of the squared endpoint error")
FIELD_ERROR = metric("equivariance_error", lambda c: c["eq"], label="equivariance error", unit="relative L2",
                     higher=False, standard=False, range=None,
                     doc="‖g⁻¹·f(g·x) − f(x)‖ / ‖f(x)‖ over valid pixels; where f(x) vanishes on the valid "
                     "pixels: 0 if the pulled-back field does too, else 1 (the ratio is undefined there)",
                     extra=(("equivariance_error", "orbit"), ("max_equivariance_error", "max")))

FLOW = TaskRecord(
    name="flow", doc="optical flow / PIV", contract="frame pairs (N, 2C, H, W) → flow (N, 2, H, W)",
    input_kind="frames", output="vector_field", arrays=_data.frames_from_arrays, input_key="frames",
    prepare=prepare_flow, score=score_flow, columns=(AEE, RMSE, FIELD_ERROR), metrics=(AEE, RMSE, FIELD_ERROR),
    plot_metrics=("aee", "rmse", "equivariance_error"), groups=("d4", "d4t", "rotation"), default_groups=("d4t",),
    probe_shapes=((2, 32, 32), (6, 32, 32), (2, 64, 64), (6, 224, 224)), truth="flow",
    table_columns=("aee", "orbit_aee", "worst_element_aee", "orbit_rmse", "equivariance_error", "max_equivariance_error"),
    pixel_map=flow_error_map, pixel_map_label="endpoint error (px)", thumbnail=first_frame,
)
