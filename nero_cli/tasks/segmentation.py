"""Semantic segmentation: images ``(N, C, H, W)`` in [0, 1] -> logits ``(N, K, H, W)``; a scalar field.

The per-pixel class distributions (softmax) are pulled back by ``g⁻¹`` (they move with the
pixels and do not change), and compared only on the valid region: pixels whose pulled-back
value came from inside the frame. Masks are ``(N, H, W)`` class ids, 255 = ignore.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from .. import data as _data
from ..errors import DataError, ModelError
from ..measures import metric
from .base import Chunk, TaskRecord, as_tensor_output, checked

IGNORE = 255


def prepare_probs(out: Any, n: int, model_name: str, finite: bool = True) -> torch.Tensor:
    """Logits ``(N, K, H, W)`` -> per-pixel class probabilities (float64). The logits are checked
    for NaN and inf whatever ``finite`` says: the softmax would hide a -inf logit."""
    logits = as_tensor_output(out, model_name, "a tensor of logits (N, K, H, W)")
    logits = checked(logits, "segmentation", model_name, n, 4, f"logits (N={n}, K, H, W)", what="logits")
    return torch.softmax(logits.double(), dim=1)


def check_masks(outputs: torch.Tensor, data: Any, model_name: str, reference: str = "labels") -> None:
    k, size = outputs.shape[2], tuple(outputs.shape[-2:])
    if size != data.size:
        raise ModelError(f"model {model_name}: returned {size[0]}x{size[1]} maps for {data.size[0]}x{data.size[1]} "
                         "images; a segmentation model must keep the input's size")
    masks = data.targets.get("masks")
    if masks is not None:
        top = int(masks[masks != IGNORE].max()) if bool((masks != IGNORE).any()) else -1
        if top >= k:
            raise DataError(f"masks go up to class {top} but model {model_name} has {k} classes; check --data")
        blank = (masks == IGNORE).flatten(1).all(1).nonzero().flatten().tolist() if reference == "labels" else []
        if blank:  # against the labels such a sample has no pixel to score: it would count as perfect
            shown = ", ".join(str(int(data.index[i])) for i in blank[:5]) + (" ..." if len(blank) > 5 else "")
            raise DataError(f"the masks of {len(blank)} sample(s) ({shown}) are ignored ({IGNORE}) everywhere: nothing "
                            "in them can be scored against the labels; leave them out of --data or pass --reference "
                            "consensus")


def _vote(labels: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """Per-pixel majority vote of ``labels`` ``(G, B, H, W)`` over valid elements (ties: lowest id);
    :data:`IGNORE` where no element is valid."""
    votes = torch.nn.functional.one_hot(labels, k).to(torch.float64) * valid[..., None]
    counts = votes.sum(0)  # (B, H, W, K)
    return torch.where(counts.sum(-1) > 0, counts.argmax(-1), torch.full_like(labels[0], IGNORE))


def _mean_iou(pred: torch.Tensor, ref: torch.Tensor, scored: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over classes present in prediction or reference of IoU, per row ``(G, B)``."""
    p = torch.nn.functional.one_hot(pred, k).bool() & scored[..., None]
    r = torch.nn.functional.one_hot(ref.clamp_max(k - 1), k).bool()[None] & scored[..., None]
    inter = (p & r).sum((-3, -2)).double()
    union = (p | r).sum((-3, -2)).double()
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(union))
    present = (union > 0).sum(-1)
    return torch.where(present > 0, iou.sum(-1) / present.clamp_min(1), torch.ones_like(iou[..., 0]))


def score_probs(back: torch.Tensor, chunk: Chunk) -> Mapping[str, Any]:
    """``back``: pulled-back probabilities ``(G, B, K, H, W)``."""
    k, i = back.shape[2], chunk.identity
    valid = chunk.valid(back.device)[:, None].bool().expand(-1, back.shape[1], -1, -1)  # (G, B, H, W)
    labels = back.argmax(2)
    if chunk.reference == "labels":
        ref = chunk.targets["masks"].to(back.device).long()
    else:
        ref = _vote(labels, valid, k)
    scored = valid & (ref != IGNORE)[None]
    n_scored = scored.sum((-2, -1)).double()
    agree = ((labels == ref[None]) & scored).sum((-2, -1)).double()
    differ = ((labels != labels[i : i + 1]) & valid).sum((-2, -1)).double()
    d = (back - back[i : i + 1]) * valid[:, :, None]
    num, den = d.flatten(2).norm(dim=-1), (back[i : i + 1] * valid[:, :, None]).flatten(2).norm(dim=-1)
    return {"labels": labels, "ref": ref, "valid": valid,
            "pixel_accuracy": torch.where(n_scored > 0, agree / n_scored.clamp_min(1), torch.ones_like(agree)),
            "mean_iou": _mean_iou(labels, ref, scored, k),
            "disagreement": differ / valid.sum((-2, -1)).double().clamp_min(1),
            "probability_error": torch.where(den > 0, num / den.clamp_min(1e-300), num)}


def disagreement_map(back: torch.Tensor, chunk: Chunk) -> torch.Tensor:
    """Per pixel ``(G, B, H, W)``: 1 where the pulled-back label differs from the reference, 0 where it
    agrees, NaN outside the valid region or on ignored pixels."""
    c = score_probs(back, chunk)
    miss = (c["labels"] != c["ref"][None]).double()
    keep = c["valid"] & (c["ref"] != IGNORE)[None]
    return torch.where(keep, miss, torch.full_like(miss, float("nan")))


PIXEL_ACCURACY = metric("pixel_accuracy", lambda c: c["pixel_accuracy"], label="pixel accuracy", unit="fraction",
                        higher=True, doc="share of valid, non-ignored pixels whose pulled-back label equals the "
                        "reference (the mask, or the per-pixel majority vote over the orbit)")
MEAN_IOU = metric("mean_iou", lambda c: c["mean_iou"], label="mean IoU", unit="IoU", higher=True,
                  doc="mean over classes present in the prediction or the reference of the IoU on valid, "
                  "non-ignored pixels")
LABEL_ERROR = metric("equivariance_error", lambda c: c["disagreement"], label="equivariance error",
                     unit="fraction of pixels", higher=False, standard=False,
                     doc="share of valid pixels whose pulled-back label differs from the label at the identity",
                     extra=(("equivariance_error", "orbit"), ("max_equivariance_error", "max")))
PROB_ERROR = metric("probability_error", lambda c: c["probability_error"], label="probability error",
                    unit="relative L2", higher=False, range=None, standard=False,
                    doc="‖g⁻¹·p(g·x) − p(x)‖ / ‖p(x)‖ of the per-pixel probabilities over valid pixels",
                    extra=(("probability_error", "orbit"), ("max_probability_error", "max")))

SEGMENTATION = TaskRecord(
    name="segmentation", doc="semantic segmentation", contract="(N, C, H, W) in [0, 1] → logits (N, K, H, W)",
    input_kind="image", output="scalar_field", arrays=_data.segmentation_from_arrays, prepare=prepare_probs,
    score=score_probs, check=check_masks,
    columns=(PIXEL_ACCURACY, MEAN_IOU, LABEL_ERROR, PROB_ERROR), metrics=(PIXEL_ACCURACY, MEAN_IOU, LABEL_ERROR, PROB_ERROR),
    plot_metrics=("mean_iou", "pixel_accuracy", "equivariance_error", "probability_error"),
    groups=("rotation", "shift", "scale", "d4"), default_groups=("rotation", "d4"),
    probe_shapes=((1, 28, 28), (3, 64, 64), (3, 224, 224)), truth="masks",
    table_columns=("mean_iou", "orbit_mean_iou", "worst_element_mean_iou", "orbit_pixel_accuracy", "equivariance_error",
                   "probability_error"),
    pixel_map=disagreement_map, pixel_map_label="disagreement with the reference (0/1)", max_chunk_samples=16,
)
