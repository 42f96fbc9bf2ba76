"""Tasks: what the model takes, what it returns, and how its output transforms.

Each task *declares* how its output transforms under a group element (``output``):

- ``invariant``: the output should not change (image and point-cloud classification);
- ``boxes``: boxes move with the image (detection); outputs are mapped back by ``g⁻¹``;
- ``vector_field``: pixels move and vectors turn with them (optical flow); mapped back by ``g⁻¹``.

Nothing is guessed from tensor shapes. A task turns the model outputs over one chunk of
samples × the whole orbit into the columns of the tidy results table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from orbits import ImageAction, OrbitSpec

from . import metrics
from .errors import DataError, ModelError, OptionError


@dataclass
class Chunk:
    """What a task needs to score one chunk of samples over the whole orbit."""

    identity: int
    reference: str  # "labels" or "consensus"
    labels: torch.Tensor | None
    targets: dict[str, torch.Tensor]
    action: Any
    spec: OrbitSpec
    options: dict[str, Any] = field(default_factory=dict)


def _rows(t: torch.Tensor) -> np.ndarray:
    """``(G, B)`` -> ``B * G`` values, sample-major (the table's row order)."""
    return t.transpose(0, 1).reshape(-1).cpu().numpy()


def _as_tensor_output(out: Any, model_name: str, what: str = "a tensor of logits (N, K)") -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict) and "logits" in out:
        return out["logits"]
    if hasattr(out, "logits") and isinstance(out.logits, torch.Tensor):
        return out.logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise ModelError(f"model {model_name}: returned {type(out).__name__}, expected {what}")


class Task:
    name: ClassVar[str] = ""
    output: ClassVar[str] = ""
    groups: ClassVar[tuple[str, ...]] = ()
    #: Result columns the task adds, in order, after the parameter columns.
    columns: ClassVar[tuple[str, ...]] = ()
    #: Per-row metrics averaged into aggregate curves, with whether higher is better.
    metrics: ClassVar[dict[str, bool]] = {}
    #: Metrics a NERO plot can show; the first is the default.
    plot_metrics: ClassVar[tuple[str, ...]] = ()
    #: The task's ground truth, by the name users know it.
    truth: ClassVar[str] = "labels"
    #: summary.json metrics shown in the closing table of ``nero evaluate``.
    table_columns: ClassVar[tuple[str, ...]] = ("equivariance_error", "max_equivariance_error", "orbit_spread")

    def load_data(self, spec: str, channels: int | None) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def make_action(self, spec: OrbitSpec, data: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def prepare_outputs(self, out: Any, n: int, model_name: str) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def has_truth(self, data: Any) -> bool:
        return data.labels is not None

    def check(self, outputs: torch.Tensor, data: Any, model_name: str) -> None:
        """Checks that need the first outputs (e.g. labels within the model's classes)."""

    def score(self, outputs: torch.Tensor, chunk: Chunk) -> dict[str, np.ndarray]:  # pragma: no cover
        raise NotImplementedError


class Classification(Task):
    """Image classification: logits ``(N, K)`` from images ``(N, C, H, W)`` in [0, 1]."""

    name = "classification"
    output = "invariant"
    groups = ("rotation", "shift", "scale", "perspective")
    columns = ("prediction", "reference", "confidence", "correct", "consensus", "equivariance_error")
    metrics = {"confidence": True, "accuracy": True, "equivariance_error": False}
    plot_metrics = ("confidence", "accuracy", "equivariance_error")
    table_columns = ("accuracy", "orbit_accuracy", "worst_case_accuracy", "mean_confidence", "equivariance_error",
                     "orbit_spread")

    def load_data(self, spec: str, channels: int | None) -> Any:
        from .data import load_images

        return load_images(spec, channels=channels)

    def make_action(self, spec: OrbitSpec, data: Any) -> ImageAction:
        return ImageAction(spec.group, data.size, **spec.action)

    def prepare_outputs(self, out: Any, n: int, model_name: str) -> torch.Tensor:
        logits = _as_tensor_output(out, model_name)
        if logits.ndim != 2 or logits.shape[0] != n:
            raise ModelError(f"model {model_name}: output shape {tuple(logits.shape)} does not fit {self.name}; "
                             f"expected logits (N={n}, K); use --task for other tasks")
        if not torch.isfinite(logits).all():
            raise ModelError(f"model {model_name}: returned NaN or inf logits; check the model and the input normalisation")
        return logits

    def check(self, outputs: torch.Tensor, data: Any, model_name: str) -> None:
        labels, k = data.labels, outputs.shape[-1]
        if labels is not None and len(labels) and int(labels.max()) >= k:
            raise DataError(f"labels go up to {int(labels.max())} but model {model_name} has {k} classes; "
                            "check --data or select classes with --classes")

    def score(self, outputs: torch.Tensor, chunk: Chunk) -> dict[str, np.ndarray]:
        """``outputs``: logits ``(G, B, K)`` over the orbit."""
        probs = torch.softmax(outputs.double(), dim=-1)
        pred = probs.argmax(-1)  # (G, B)
        consensus = metrics.consensus_class(probs)  # (B,)
        ref = chunk.labels.to(pred.device) if chunk.reference == "labels" else consensus
        conf = metrics.class_confidence(probs, ref)  # (G, B)
        eq = metrics.total_variation(probs, probs[chunk.identity : chunk.identity + 1])  # (G, B)
        g = outputs.shape[0]
        return {
            "prediction": _rows(pred),
            "reference": _rows(ref[None].expand(g, -1)),
            "confidence": _rows(conf),
            "correct": _rows(pred == ref[None]),
            "consensus": _rows(consensus[None].expand(g, -1)),
            "equivariance_error": _rows(eq),
        }


class PointCloud(Classification):
    """Point-cloud classification: logits ``(N, K)`` from points ``(N, P, 3)``; invariant output."""

    name = "pointcloud"
    groups = ("viewpoint",)

    def load_data(self, spec: str, channels: int | None) -> Any:
        from .data import load_points

        return load_points(spec)

    def make_action(self, spec: OrbitSpec, data: Any) -> Any:
        from orbits.points import PointAction

        return PointAction(spec.group)


class Flow(Task):
    """Optical flow / PIV: frames ``(N, 2C, H, W)`` -> flow ``(N, 2, H, W)`` in pixels (u right, v down)."""

    name = "flow"
    output = "vector_field"
    groups = ("d4", "d4t", "rotation")
    columns = ("aee", "rmse", "equivariance_error")
    metrics = {"aee": False, "rmse": False, "equivariance_error": False}
    plot_metrics = ("aee", "rmse", "equivariance_error")
    truth = "flow"
    table_columns = ("aee", "orbit_aee", "worst_aee", "orbit_rmse", "equivariance_error", "max_equivariance_error")

    def load_data(self, spec: str, channels: int | None) -> Any:
        from .data import load_frames

        return load_frames(spec)

    def has_truth(self, data: Any) -> bool:
        return "flow" in data.targets

    def make_action(self, spec: OrbitSpec, data: Any) -> Any:
        from orbits.fields import FrameAction, VectorFieldAction

        act = FrameAction(spec.group, data.size, **spec.action)
        act.fields = VectorFieldAction(spec.group, data.size, **spec.action)  # type: ignore[attr-defined]
        act.valid_mask = act.fields.valid(range(len(spec.group)))  # type: ignore[attr-defined]
        return act

    def prepare_outputs(self, out: Any, n: int, model_name: str) -> torch.Tensor:
        flow = _as_tensor_output(out, model_name, "a flow tensor (N, 2, H, W)")
        if flow.ndim != 4 or flow.shape[0] != n or flow.shape[1] != 2:
            raise ModelError(f"model {model_name}: output shape {tuple(flow.shape)} does not fit flow; expected (N={n}, 2, H, W)")
        if not torch.isfinite(flow).all():
            raise ModelError(f"model {model_name}: returned NaN or inf flow")
        return flow

    def pulled_back(self, outputs: torch.Tensor, action: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``g⁻¹ · f(g·x)`` for every element, and the ``(G, 1, 1, H, W)`` validity mask."""
        g = outputs.shape[0]
        back = action.fields.pull_back(outputs.float(), range(g))
        valid = action.valid_mask.to(outputs.device)[:, None, None]
        return back, valid

    def error_maps(self, outputs: torch.Tensor, chunk: Chunk) -> torch.Tensor:
        """Per-pixel endpoint error ``(G, B, H, W)`` against the reference (NaN outside the valid region)."""
        back, valid = self.pulled_back(outputs, chunk.action)
        ref = self._reference(back, valid, chunk)
        err = metrics.endpoint_error(back, ref[None])
        return torch.where(valid[:, :, 0] > 0, err, torch.full_like(err, float("nan")))

    def _reference(self, back: torch.Tensor, valid: torch.Tensor, chunk: Chunk) -> torch.Tensor:
        if chunk.reference == "labels":
            return chunk.targets["flow"].to(back.device)
        return metrics.masked_mean(back, valid, dim=0)

    def score(self, outputs: torch.Tensor, chunk: Chunk) -> dict[str, np.ndarray]:
        back, valid = self.pulled_back(outputs, chunk.action)  # (G, B, 2, H, W), (G, 1, 1, H, W)
        ref = self._reference(back, valid, chunk)
        aee, rmse = metrics.flow_errors(back, ref[None], valid[:, :, 0])
        eq = metrics.relative_field_error(back, back[chunk.identity : chunk.identity + 1], valid[:, :, 0])
        return {"aee": _rows(aee), "rmse": _rows(rmse), "equivariance_error": _rows(eq)}


class Detection(Task):
    """Object detection: images -> boxes ``(N, D, 6)`` = ``x1, y1, x2, y2, score, class`` (score < 0 pads),
    or a list of dicts with ``boxes``, ``scores``, ``labels``. Boxes are mapped back by ``g⁻¹``."""

    name = "detection"
    output = "boxes"
    groups = ("shift", "scale", "rotation")
    columns = ("prediction", "reference", "confidence", "iou", "conf_iou", "correct", "precision", "recall", "f1",
               "equivariance_error")
    metrics = {"confidence": True, "iou": True, "conf_iou": True, "accuracy": True, "precision": True, "recall": True,
               "f1": True, "equivariance_error": False}
    plot_metrics = ("iou", "confidence", "conf_iou", "accuracy", "f1", "equivariance_error")
    truth = "boxes"
    table_columns = ("iou", "orbit_iou", "worst_iou", "orbit_accuracy", "orbit_f1", "equivariance_error")

    def load_data(self, spec: str, channels: int | None) -> Any:
        from .data import load_detection

        return load_detection(spec, channels)

    def has_truth(self, data: Any) -> bool:
        return "boxes" in data.targets

    def make_action(self, spec: OrbitSpec, data: Any) -> ImageAction:
        act = ImageAction(spec.group, data.size, **spec.action)
        act.back_matrices = act.inverses  # type: ignore[attr-defined]
        return act

    def prepare_outputs(self, out: Any, n: int, model_name: str) -> torch.Tensor:
        if isinstance(out, (list, tuple)) and out and isinstance(out[0], dict):
            out = metrics.pad_detections(out)
        if not isinstance(out, torch.Tensor):
            raise ModelError(f"model {model_name}: returned {type(out).__name__}, expected a tensor (N, D, 6) or a list of "
                             "dicts with boxes, scores, labels")
        if out.ndim != 3 or out.shape[0] != n or out.shape[-1] != 6:
            raise ModelError(f"model {model_name}: output shape {tuple(out.shape)} does not fit detection; "
                             f"expected (N={n}, D, 6) rows of x1, y1, x2, y2, score, class")
        if not torch.isfinite(out).all():
            raise ModelError(f"model {model_name}: returned NaN or inf boxes")
        return out.float()

    def score(self, outputs: torch.Tensor, chunk: Chunk) -> dict[str, np.ndarray]:
        from orbits.boxes import map_boxes

        g, b, d, _ = outputs.shape
        inv = chunk.action.back_matrices  # (G, 3, 3)
        boxes = torch.stack([map_boxes(inv[i : i + 1], outputs[i, :, :, :4].double())[0] for i in range(g)])  # (G, B, D, 4)
        scores, classes = outputs[..., 4].double(), outputs[..., 5].round().long()
        valid = scores >= 0
        top = metrics.top_detection(boxes, scores, classes)  # boxes (G, B, 4), score, class
        cons_box, cons_cls = metrics.consensus_box(top["box"], top["score"], top["class"], top["valid"])
        if chunk.reference == "labels":
            ref_boxes = chunk.targets["boxes"].to(boxes.device).double()  # (B, M, 4)
            ref_cls = chunk.targets["box_labels"].to(boxes.device)  # (B, M)
        else:
            ref_boxes, ref_cls = cons_box[:, None], cons_cls[:, None]
        key_box, key_cls = ref_boxes[:, 0], ref_cls[:, 0]
        best = metrics.best_match(boxes, scores, classes, valid, key_box)  # best-matching prediction to the key object
        prf = metrics.precision_recall_f1(boxes, scores, classes, valid, ref_boxes, ref_cls,
                                          iou_threshold=0.5, score_threshold=chunk.options.get("score_threshold", 0.5))
        eq = 1 - metrics.box_iou(top["box"], top["box"][chunk.identity : chunk.identity + 1])
        eq = torch.where(top["valid"] & top["valid"][chunk.identity : chunk.identity + 1], eq,
                         (top["valid"] != top["valid"][chunk.identity : chunk.identity + 1]).double())
        return {
            "prediction": _rows(torch.where(best["valid"], best["class"], torch.full_like(best["class"], -1))),
            "reference": _rows(key_cls[None].expand(g, -1)),
            "confidence": _rows(best["score"]),
            "iou": _rows(best["iou"]),
            "conf_iou": _rows(best["score"] * best["iou"]),
            "correct": _rows(best["valid"] & (best["class"] == key_cls[None])),
            "precision": _rows(prf["precision"]),
            "recall": _rows(prf["recall"]),
            "f1": _rows(prf["f1"]),
            "equivariance_error": _rows(eq),
        }


TASKS: dict[str, type[Task]] = {"classification": Classification, "detection": Detection, "flow": Flow,
                                "pointcloud": PointCloud}


def get_task(name: str) -> Task:
    if name not in TASKS:
        import difflib

        close = difflib.get_close_matches(name, list(TASKS), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"available: {', '.join(TASKS)}"
        raise OptionError(f"unknown task '{name}'; {hint}")
    return TASKS[name]()
