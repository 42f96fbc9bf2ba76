"""Object detection: images -> boxes ``(N, D, 6)`` = ``x1, y1, x2, y2, score, class`` (score < 0 pads),
or a list of dicts with ``boxes``, ``scores``, ``labels``. Boxes are mapped back by ``g⁻¹``."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from .. import data as _data
from .. import metrics as M
from ..errors import ModelError
from ..measures import Column, metric
from .base import Chunk, TaskRecord, checked


def prepare_boxes(out: Any, n: int, model_name: str, finite: bool = True) -> torch.Tensor:
    if isinstance(out, (list, tuple)) and out and isinstance(out[0], dict):
        out = M.pad_detections(out)
    if not isinstance(out, torch.Tensor):
        raise ModelError(f"model {model_name}: returned {type(out).__name__}, expected a tensor (N, D, 6) or a list of "
                         "dicts with boxes, scores, labels")
    expected = f"(N={n}, D, 6) rows of x1, y1, x2, y2, score, class"
    return checked(out, "detection", model_name, n, 3, expected, channels=(2, 6), what="boxes",
                   finite=finite).float()


def score_boxes(back: torch.Tensor, chunk: Chunk) -> Mapping[str, Any]:
    """``back``: detections ``(G, B, D, 6)`` with boxes already mapped back by ``g⁻¹`` (float64)."""
    boxes, scores, classes = back[..., :4], back[..., 4], back[..., 5].round().long()
    valid = scores >= 0
    top = M.top_detection(boxes, scores, classes)  # boxes (G, B, 4), score, class
    cons_box, cons_cls = M.consensus_box(top["box"], top["score"], top["class"], top["valid"])
    if chunk.reference == "labels":
        ref_boxes = chunk.targets["boxes"].to(boxes.device).double()  # (B, M, 4)
        ref_cls = chunk.targets["box_labels"].to(boxes.device)  # (B, M)
    else:
        ref_boxes, ref_cls = cons_box[:, None], cons_cls[:, None]
    key_box, key_cls = ref_boxes[:, 0], ref_cls[:, 0]
    best = M.best_match(boxes, scores, classes, valid, key_box)  # best-matching prediction to the key object
    prf = M.precision_recall_f1(boxes, scores, classes, valid, ref_boxes, ref_cls,
                                iou_threshold=0.5, score_threshold=chunk.options.get("score_threshold", 0.5))
    i = chunk.identity
    eq = 1 - M.box_iou(top["box"], top["box"][i : i + 1])
    eq = torch.where(top["valid"] & top["valid"][i : i + 1], eq, (top["valid"] != top["valid"][i : i + 1]).double())
    return {"best": best, "key_cls": key_cls, "prf": prf, "eq": eq}


def _best(key: str):  # noqa: ANN202
    return lambda c: c["best"][key]


def _prf(key: str):  # noqa: ANN202
    return lambda c: c["prf"][key]


def _prediction(c: Mapping[str, Any]) -> torch.Tensor:
    b = c["best"]
    return torch.where(b["valid"], b["class"], torch.full_like(b["class"], -1))


PREDICTION = Column("prediction", _prediction, "class of the prediction that best matches the key object (-1: none)")
REFERENCE = Column("reference", lambda c: c["key_cls"][None].expand(c["eq"].shape[0], -1), "class of the key object")
CONFIDENCE = metric("confidence", _best("score"), label="confidence", unit="score", higher=True,
                    doc="score of the prediction that best matches the key object")
IOU = metric("iou", _best("iou"), label="IoU", unit="IoU", higher=True,
             doc="IoU of the best-matching prediction with the key object's box")
CONF_IOU = metric("conf_iou", lambda c: c["best"]["score"] * c["best"]["iou"], label="confidence × IoU",
                  unit="score × IoU", higher=True, doc="per row, confidence times IoU (the mean of products)")
ACCURACY = metric("accuracy", lambda c: c["best"]["valid"] & (c["best"]["class"] == c["key_cls"][None]),
                  label="accuracy", unit="fraction", higher=True, source="correct",
                  doc="whether the best-matching prediction has the key object's class",
                  extra=(("robust_accuracy", "all"),))
PRECISION = metric("precision", _prf("precision"), label="precision at IoU 0.5", unit="fraction", higher=True,
                   doc="true positives / predictions with score ≥ the score threshold, matched at IoU ≥ 0.5")
RECALL = metric("recall", _prf("recall"), label="recall at IoU 0.5", unit="fraction", higher=True,
                doc="true positives / reference boxes, matched at IoU ≥ 0.5")
F1 = metric("f1", _prf("f1"), label="F1 at IoU 0.5", unit="fraction", higher=True,
            doc="harmonic mean of precision and recall (0 when both are 0)")
BOX_ERROR = metric("equivariance_error", lambda c: c["eq"], label="equivariance error", unit="1 − IoU",
                   higher=False, standard=False,
                   doc="1 − IoU of the top box (mapped back) with the top box at the identity; 1 when only one exists",
                   extra=(("equivariance_error", "orbit"), ("max_equivariance_error", "max")))

DETECTION = TaskRecord(
    name="detection", doc="object detection",
    contract="(N, C, H, W) in [0, 1] → boxes (N, D, 6) or a list of dicts with boxes, scores, labels",
    input_kind="image", output="boxes", arrays=_data.detection_from_arrays,
    prepare=prepare_boxes, score=score_boxes,
    columns=(PREDICTION, REFERENCE, CONFIDENCE, IOU, CONF_IOU, Column("correct", ACCURACY.row, ACCURACY.doc),
             PRECISION, RECALL, F1, BOX_ERROR),
    metrics=(CONFIDENCE, IOU, CONF_IOU, ACCURACY, PRECISION, RECALL, F1, BOX_ERROR),
    plot_metrics=("iou", "confidence", "conf_iou", "accuracy", "f1", "equivariance_error"),
    groups=("shift", "scale", "rotation"), default_groups=("shift",),
    probe_shapes=((1, 64, 64), (3, 64, 64), (1, 28, 28), (3, 224, 224)), truth="boxes",
    table_columns=("iou", "orbit_iou", "worst_element_iou", "orbit_accuracy", "orbit_f1", "equivariance_error"),
)
