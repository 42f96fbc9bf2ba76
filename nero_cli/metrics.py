"""Small metric functions, each with a reference test in ``tests/test_metrics.py``."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def total_variation(p: Tensor, q: Tensor) -> Tensor:
    """Total-variation distance ``½ Σ_k |p_k − q_k|`` over the last axis, in [0, 1]."""
    return 0.5 * (p - q).abs().sum(dim=-1)


def consensus_class(probs: Tensor) -> Tensor:
    """The orbit's consensus: argmax of the softmax averaged over the orbit.

    ``probs``: ``(G, B, K)``; returns ``(B,)``. Ties go to the lowest class id.
    """
    return probs.mean(dim=0).argmax(dim=-1)


def class_confidence(probs: Tensor, classes: Tensor) -> Tensor:
    """Probability of ``classes`` ``(B,)`` in ``probs`` ``(G, B, K)``: ``(G, B)``."""
    g = probs.shape[0]
    idx = classes.to(probs.device).long()[None, :, None].expand(g, -1, 1)
    return probs.gather(-1, idx).squeeze(-1)


# -- vector fields (flow) ------------------------------------------------------------------


def endpoint_error(a: Tensor, b: Tensor) -> Tensor:
    """Per-pixel endpoint error ``‖a − b‖₂`` over the vector axis (-3): ``(…, 2, H, W)`` -> ``(…, H, W)``."""
    return (a - b).pow(2).sum(dim=-3).sqrt()


def masked_mean(x: Tensor, mask: Tensor, dim: int = 0) -> Tensor:
    """Mean of ``x`` over ``dim`` counting only where ``mask`` (broadcastable) is 1."""
    m = mask.to(x.dtype).expand_as(x)
    return (x * m).sum(dim) / m.sum(dim).clamp_min(1)


def flow_errors(pred: Tensor, ref: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """AEE (mean endpoint error) and RMSE (root of the mean squared vector error) over valid pixels.

    ``pred`` ``(G, B, 2, H, W)``, ``ref`` broadcastable, ``valid`` ``(G, 1, H, W)``: ``(G, B)`` each.
    RMSE here is ``sqrt(mean_pixels(‖Δ‖²))``, the root of the mean squared endpoint error.
    """
    sq = (pred - ref).pow(2).sum(dim=-3)  # (G, B, H, W)
    m = valid.to(sq.dtype).expand_as(sq)
    n = m.sum(dim=(-2, -1)).clamp_min(1)
    aee = (sq.sqrt() * m).sum(dim=(-2, -1)) / n
    rmse = ((sq * m).sum(dim=(-2, -1)) / n).sqrt()
    return aee, rmse


def relative_field_error(a: Tensor, b: Tensor, valid: Tensor) -> Tensor:
    """``‖a − b‖ / ‖b‖`` (Frobenius over vectors and valid pixels): ``(G, B)``; 0 when both vanish."""
    m = valid[:, :, None].to(a.dtype)
    num = ((a - b) * m).pow(2).sum(dim=(-3, -2, -1)).sqrt()
    den = (b * m).pow(2).sum(dim=(-3, -2, -1)).sqrt()
    return torch.where(den > 0, num / den.clamp_min(1e-30), (num > 0).to(a.dtype))


# -- boxes (detection) ------------------------------------------------------------------------


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of boxes ``x1, y1, x2, y2`` broadcast over leading dims: ``(…, 4), (…, 4) -> (…)``."""
    lo = torch.maximum(a[..., :2], b[..., :2])
    hi = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (hi - lo).clamp_min(0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp_min(0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp_min(0).prod(-1)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-30), torch.zeros_like(union))


def pad_detections(dets: list[dict]) -> Tensor:
    """A list of ``{boxes (D, 4), scores (D,), labels (D,)}`` to ``(N, Dmax, 6)``, score −1 padding."""
    d = max((len(x["scores"]) for x in dets), default=0)
    out = torch.full((len(dets), max(d, 1), 6), -1.0)
    for i, x in enumerate(dets):
        k = len(x["scores"])
        if k:
            out[i, :k, :4] = torch.as_tensor(x["boxes"], dtype=torch.float32).reshape(k, 4)
            out[i, :k, 4] = torch.as_tensor(x["scores"], dtype=torch.float32)
            out[i, :k, 5] = torch.as_tensor(x["labels"], dtype=torch.float32)
    return out


def top_detection(boxes: Tensor, scores: Tensor, classes: Tensor) -> dict[str, Tensor]:
    """The highest-scoring prediction per ``(G, B)``; ``valid`` is False when there is none."""
    s = torch.where(scores >= 0, scores, torch.full_like(scores, -1.0))
    i = s.argmax(-1, keepdim=True)
    return {"box": boxes.gather(-2, i[..., None].expand(*i.shape, 4)).squeeze(-2),
            "score": s.gather(-1, i).squeeze(-1).clamp_min(0), "class": classes.gather(-1, i).squeeze(-1),
            "valid": s.gather(-1, i).squeeze(-1) >= 0}


def consensus_box(box: Tensor, score: Tensor, cls: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Consensus of the orbit's top boxes (already mapped back): the confidence-weighted mean box,
    and the class by majority vote (ties to the lowest id). ``(G, B, 4)`` -> ``(B, 4)``, ``(B,)``."""
    w = score * valid.to(score.dtype)
    wsum = w.sum(0)
    mean_box = (box * w[..., None]).sum(0) / wsum.clamp_min(1e-30)[..., None]
    plain = (box * valid[..., None].to(box.dtype)).sum(0) / valid.sum(0).clamp_min(1)[..., None]
    mean_box = torch.where((wsum > 0)[..., None], mean_box, plain)
    k = int(cls.max().clamp_min(0)) + 1
    votes = torch.zeros(cls.shape[1], k, dtype=torch.float64, device=cls.device)
    votes.scatter_add_(1, cls.clamp_min(0).T, valid.T.to(torch.float64))
    return mean_box, votes.argmax(1)


def best_match(boxes: Tensor, scores: Tensor, classes: Tensor, valid: Tensor, key: Tensor) -> dict[str, Tensor]:
    """The prediction with the highest IoU with ``key`` ``(B, 4)`` per ``(G, B)`` (ties: higher score)."""
    iou = box_iou(boxes, key[None, :, None])  # (G, B, D)
    rank = torch.where(valid, iou + 1e-9 * scores.clamp(0, 1), torch.full_like(iou, -1.0))
    i = rank.argmax(-1, keepdim=True)
    ok = rank.gather(-1, i).squeeze(-1) >= 0
    return {"iou": torch.where(ok, iou.gather(-1, i).squeeze(-1), torch.zeros_like(ok, dtype=iou.dtype)),
            "score": torch.where(ok, scores.gather(-1, i).squeeze(-1), torch.zeros_like(ok, dtype=scores.dtype)),
            "class": classes.gather(-1, i).squeeze(-1), "valid": ok}


def precision_recall_f1(boxes: Tensor, scores: Tensor, classes: Tensor, valid: Tensor, ref_boxes: Tensor,
                        ref_cls: Tensor, iou_threshold: float = 0.5, score_threshold: float = 0.5) -> dict[str, Tensor]:
    """Precision, recall and F1 at an IoU threshold, per ``(G, B)``.

    Predictions with score ≥ ``score_threshold`` are matched greedily, highest score first, to
    unmatched reference boxes of the same class with IoU ≥ ``iou_threshold``. Reference boxes
    ``(B, M, 4)`` with class −1 are padding. Precision is TP / predictions (0 with no prediction),
    recall TP / references, F1 their harmonic mean (0 when both are 0).
    """
    g, b, d = scores.shape
    keep = valid & (scores >= score_threshold)
    order = torch.argsort(torch.where(keep, scores, torch.full_like(scores, -2.0)), dim=-1, descending=True)
    ref_ok = ref_cls >= 0  # (B, M)
    iou = box_iou(boxes[:, :, :, None], ref_boxes[None, :, None])  # (G, B, D, M)
    same = classes[..., None] == ref_cls[None, :, None]
    cand = (iou >= iou_threshold) & same & ref_ok[None, :, None] & keep[..., None]
    taken = torch.zeros(g, b, ref_boxes.shape[1], dtype=torch.bool, device=boxes.device)
    tp = torch.zeros(g, b, dtype=torch.float64, device=boxes.device)
    for r in range(d):  # D is small (tens): loop over prediction ranks, vectorised over G, B
        j = order[..., r]
        c = cand.gather(2, j[..., None, None].expand(g, b, 1, cand.shape[-1])).squeeze(2) & ~taken
        io = iou.gather(2, j[..., None, None].expand(g, b, 1, iou.shape[-1])).squeeze(2)
        io = torch.where(c, io, torch.full_like(io, -1.0))
        m = io.argmax(-1)
        hit = io.gather(-1, m[..., None]).squeeze(-1) >= 0
        taken |= torch.nn.functional.one_hot(m, taken.shape[-1]).bool() & hit[..., None]
        tp += hit.to(torch.float64)
    n_pred = keep.sum(-1).to(torch.float64)
    n_ref = ref_ok.sum(-1).to(torch.float64)[None].expand(g, b)
    precision = torch.where(n_pred > 0, tp / n_pred.clamp_min(1), torch.zeros_like(tp))
    recall = torch.where(n_ref > 0, tp / n_ref.clamp_min(1), torch.zeros_like(tp))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-30),
                     torch.zeros_like(tp))
    return {"precision": precision, "recall": recall, "f1": f1}
