"""Image and point-cloud classification: logits ``(N, K)``, invariant under the group."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from .. import data as _data
from .. import metrics as M
from ..errors import DataError
from ..measures import Column, metric
from .base import Chunk, TaskRecord, as_tensor_output, checked


def prepare_logits(out: Any, n: int, model_name: str, task: str = "classification", finite: bool = True) -> torch.Tensor:
    logits = as_tensor_output(out, model_name, "a tensor of logits (N, K)")
    return checked(logits, task, model_name, n, 2, f"logits (N={n}, K); use --task for other tasks", what="logits",
                   finite=finite)


def check_labels(outputs: torch.Tensor, data: Any, model_name: str, reference: str = "labels") -> None:
    labels, k = data.labels, outputs.shape[-1]
    if labels is not None and len(labels) and int(labels.max()) >= k:
        raise DataError(f"labels go up to {int(labels.max())} but model {model_name} has {k} classes; "
                        "check --data or select classes with --classes")


def score_logits(outputs: torch.Tensor, chunk: Chunk) -> Mapping[str, Any]:
    """``outputs``: logits ``(G, B, K)`` over the orbit (invariant: nothing to pull back)."""
    probs = torch.softmax(outputs.double(), dim=-1)
    pred = probs.argmax(-1)  # (G, B)
    consensus = M.consensus_class(probs)  # (B,)
    ref = chunk.labels.to(pred.device) if chunk.reference == "labels" else consensus
    return {"probs": probs, "pred": pred, "ref": ref, "consensus": consensus, "identity": chunk.identity}


def _expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v[None].expand(like.shape[0], -1)


PREDICTION = Column("prediction", lambda c: c["pred"], "predicted class (argmax of the softmax)")
REFERENCE = Column("reference", lambda c: _expand(c["ref"], c["pred"]), "reference class: the label, or the consensus")
CONSENSUS = Column("consensus", lambda c: _expand(c["consensus"], c["pred"]),
                   "argmax of the softmax averaged over the orbit")
CONFIDENCE = metric("confidence", lambda c: M.class_confidence(c["probs"], c["ref"]),
                    label="confidence of reference class", unit="probability", higher=True,
                    doc="softmax probability of the reference class")
ACCURACY = metric("accuracy", lambda c: c["pred"] == c["ref"][None], label="accuracy", unit="fraction",
                  higher=True, source="correct", doc="whether the prediction equals the reference class",
                  extra=(("robust_accuracy", "all"),))
CORRECT = Column("correct", ACCURACY.row, ACCURACY.doc)
TV_ERROR = metric("equivariance_error",
                  lambda c: M.total_variation(c["probs"], c["probs"][c["identity"] : c["identity"] + 1]),
                  label="equivariance error", unit="TV distance", higher=False, standard=False,
                  doc="total-variation distance between the softmax at the element and at the identity",
                  extra=(("equivariance_error", "orbit"), ("max_equivariance_error", "max")))
FLIP = metric("flip", lambda c: c["pred"] != c["pred"][c["identity"]][None], label="flip", unit="fraction",
              higher=False, standard=False,
              doc="whether the prediction differs from the prediction at the identity (ImageNet-P's flip; "
                  "needs no labels)",
              extra=(("flip_rate", "orbit"),))
TOP_PROBABILITY = metric("top_probability", lambda c: c["probs"].max(-1).values, label="top probability",
                         unit="probability", higher=True, standard=False,
                         doc="largest softmax probability (the model's confidence in its own prediction); "
                             "near 1/K the model is unconfident and equivariance_error (TV) looks small",
                         extra=(("top_probability", "identity"),))

_COMMON = dict(
    input_kind="image", output="invariant", score=score_logits, check=check_labels,
    columns=(PREDICTION, REFERENCE, CONFIDENCE, CORRECT, CONSENSUS, TV_ERROR, FLIP, TOP_PROBABILITY),
    metrics=(CONFIDENCE, ACCURACY, TV_ERROR, FLIP, TOP_PROBABILITY),
    plot_metrics=("confidence", "accuracy", "equivariance_error"),
    table_columns=("accuracy", "orbit_accuracy", "robust_accuracy", "orbit_confidence", "equivariance_error",
                   "flip_rate", "orbit_spread"),
)

CLASSIFICATION = TaskRecord(
    name="classification", doc="image classification", contract="(N, C, H, W) in [0, 1] → logits (N, K)",
    arrays=_data.images_from_arrays, load=_data.load_images, prepare=prepare_logits,
    groups=("rotation", "shift", "scale", "perspective"), default_groups=("rotation", "shift", "scale"),
    probe_shapes=((1, 28, 28), (3, 32, 32), (3, 224, 224)), **_COMMON,
)

POINTCLOUD = TaskRecord(
    name="pointcloud", doc="point-cloud classification", contract="points (N, P, 3) → logits (N, K)",
    arrays=_data.points_from_arrays, input_key="points",
    prepare=lambda out, n, name, finite=True: prepare_logits(out, n, name, "pointcloud", finite),
    groups=("viewpoint",), default_groups=("viewpoint",), probe_shapes=((256, 3), (1024, 3), (2048, 3)),
    **{**_COMMON, "input_kind": "points"},
)
