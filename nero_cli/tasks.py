"""Tasks: what the model takes, what it returns, and how its output transforms.

Each task *declares* how its output transforms under a group element (``output``):

- ``invariant``: the output should not change (classification, point-cloud classification);
- ``boxes``: boxes move with the image (detection);
- ``vector_field``: pixels move and vectors rotate/reflect with them (optical flow).

Nothing is guessed from tensor shapes. A task turns the model outputs over one chunk of
samples × the whole orbit into the columns of the tidy results table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from orbits import ImageAction, OrbitSpec

from . import metrics
from .errors import DataError, ModelError


def _as_tensor_output(out: Any, model_name: str) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict) and "logits" in out:
        return out["logits"]
    if hasattr(out, "logits") and isinstance(out.logits, torch.Tensor):
        return out.logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise ModelError(f"model {model_name}: returned {type(out).__name__}, expected a tensor of logits (N, K)")


class Task:
    name: ClassVar[str] = ""
    output: ClassVar[str] = ""
    groups: ClassVar[tuple[str, ...]] = ()
    #: Result columns the task adds, in order, after the parameter columns.
    columns: ClassVar[tuple[str, ...]] = ()
    #: Metrics that the aggregate tables average, with whether higher is better.
    metrics: ClassVar[dict[str, bool]] = {}

    def make_action(self, spec: OrbitSpec, data: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, outputs: torch.Tensor, identity: int, labels: torch.Tensor | None, reference: str) -> dict[str, np.ndarray]:
        raise NotImplementedError  # pragma: no cover - abstract


@dataclass
class Classification(Task):
    """Image classification: logits ``(N, K)`` from images ``(N, C, H, W)`` in [0, 1]."""

    name: ClassVar[str] = "classification"
    output: ClassVar[str] = "invariant"
    groups: ClassVar[tuple[str, ...]] = ("rotation", "shift", "scale")
    columns: ClassVar[tuple[str, ...]] = ("prediction", "reference", "confidence", "correct", "consensus", "equivariance_error")
    metrics: ClassVar[dict[str, bool]] = {"confidence": True, "accuracy": True, "equivariance_error": False}

    def make_action(self, spec: OrbitSpec, data: Any) -> ImageAction:
        return ImageAction(spec.group, data.size, **spec.action)

    def prepare_outputs(self, out: Any, n: int, model_name: str) -> torch.Tensor:
        logits = _as_tensor_output(out, model_name)
        if logits.ndim != 2 or logits.shape[0] != n:
            raise ModelError(f"model {model_name}: output shape {tuple(logits.shape)} does not fit classification; "
                             f"expected logits (N={n}, K); use --task for other tasks")
        if not torch.isfinite(logits).all():
            raise ModelError(f"model {model_name}: returned NaN or inf logits; check the model and the input normalisation")
        return logits

    def check_labels(self, labels: torch.Tensor | None, n_classes: int, model_name: str) -> None:
        if labels is not None and len(labels) and int(labels.max()) >= n_classes:
            raise DataError(f"labels go up to {int(labels.max())} but model {model_name} has {n_classes} classes; "
                            "check --data or select classes with --classes")

    def score(self, outputs: torch.Tensor, identity: int, labels: torch.Tensor | None, reference: str) -> dict[str, np.ndarray]:
        """``outputs``: logits ``(G, B, K)`` over the orbit; returns columns of ``B × G`` rows (sample-major)."""
        probs = torch.softmax(outputs.double(), dim=-1)
        pred = probs.argmax(-1)  # (G, B)
        consensus = metrics.consensus_class(probs)  # (B,)
        ref = labels.to(pred.device) if reference == "labels" else consensus
        conf = metrics.class_confidence(probs, ref)  # (G, B)
        eq = metrics.total_variation(probs, probs[identity : identity + 1])  # (G, B)
        g = outputs.shape[0]

        def rows(t: torch.Tensor) -> np.ndarray:  # (G, B) -> B*G, sample-major
            return t.transpose(0, 1).reshape(-1).cpu().numpy()

        return {
            "prediction": rows(pred),
            "reference": rows(ref[None].expand(g, -1)),
            "confidence": rows(conf),
            "correct": rows(pred == ref[None]),
            "consensus": rows(consensus[None].expand(g, -1)),
            "equivariance_error": rows(eq),
        }


TASKS: dict[str, type[Task]] = {"classification": Classification}


def get_task(name: str) -> Task:
    if name not in TASKS:
        import difflib

        close = difflib.get_close_matches(name, list(TASKS), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"available: {', '.join(TASKS)}"
        raise DataError(f"unknown task '{name}'; {hint}")
    return TASKS[name]()
