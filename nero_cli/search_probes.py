"""What ``nero search`` asks of a model, per task: a *probe* evaluates candidates ``(sample, parameter)``
along one axis, all of a step batched (``batch_size`` inputs per forward pass), and scores them.

Every probe keeps a fixed number of float64 features per candidate (:meth:`Probe.forward`), takes
its reference from the candidates at the identity (:meth:`Probe.anchor`) and scores candidates
(:meth:`Probe.score`): a quality (lower is worse; the worst element minimises it) and whether the
prediction differs from the identity's (the breaking transformation is the nearest such candidate).

- classification (:class:`ClassificationProbe`): the softmax; quality = the probability of the
  reference class (the label, or the prediction at the identity); changed = the argmax differs.
- detection (:class:`nero_cli.breaking_detection.DetectionProbe`): the top box, mapped back by g⁻¹.

Candidates are transformed by nero's :class:`~orbits.image.ImageAction` built on a group of exactly
those elements.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from orbits.image import ImageAction

from .errors import DataError, OptionError
from .runner import ModelRunner
from .search_axes import Axis


class Probe:
    """Outputs of one model on samples moved along one axis (a base: tasks define ``forward``,
    ``anchor`` and ``score``)."""

    #: What the quality is, for run.json and the messages.
    quantity = "quality"

    def __init__(self, runner: ModelRunner, task: Any, images: torch.Tensor, axis: Axis, batch_size: int):
        self.runner, self.task, self.images, self.axis, self.batch_size = runner, task, images, axis, batch_size
        self.size = tuple(images.shape[-2:])
        self.evaluations = 0

    def transform(self, pos: np.ndarray, params: np.ndarray) -> torch.Tensor:
        """Sample ``pos[j]`` transformed by ``params[j]``: ``(M, C, H, W)``."""
        act = ImageAction(self.axis.build(torch.tensor(np.asarray(params, dtype=np.float64))), self.size,
                          **self.axis.action)
        x = self.images[torch.as_tensor(pos, dtype=torch.long)][:, None]
        return act.apply_each(x, range(len(pos)))[:, 0]

    def forward(self, x: torch.Tensor, params: np.ndarray) -> torch.Tensor:
        """The features ``(M, F)`` kept of the model's outputs on the moved inputs ``x``."""
        raise NotImplementedError

    def __call__(self, pos: np.ndarray, params: np.ndarray) -> torch.Tensor:
        """Features ``(M, F)`` (float64, on the CPU) of sample ``pos[j]`` at ``params[j]``."""
        pos, params = np.asarray(pos), np.asarray(params, dtype=np.float64)
        out = []
        with torch.inference_mode():
            for s in range(0, len(pos), self.batch_size):
                x = self.transform(pos[s:s + self.batch_size], params[s:s + self.batch_size])
                out.append(self.forward(x, params[s:s + self.batch_size]).double().cpu())
        self.evaluations += len(pos)
        return torch.cat(out) if out else torch.zeros(0, 0, dtype=torch.float64)

    def anchor(self, identity: torch.Tensor) -> dict[str, np.ndarray]:
        """Take the reference from the features at the identity ``(n, F)``; the per-sample columns
        ``label``, ``prediction``, ``identity_value`` and ``correct_at_identity``."""
        raise NotImplementedError

    def score(self, features: torch.Tensor, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per candidate: the quality and whether the prediction differs from the identity's."""
        raise NotImplementedError

    def measure(self, pos: np.ndarray, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.score(self(pos, params), np.asarray(pos))

    def show(self, pos: np.ndarray, params: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """For the plots: the moved inputs, and what to draw on them (None: nothing)."""
        return self.transform(pos, params), None

    @property
    def method(self) -> str:
        """How ``changed`` is decided, for the ``method`` column."""
        return "argmax"


class ClassificationProbe(Probe):
    """Softmax outputs; quality = probability of the reference class; changed = a different argmax."""

    quantity = "confidence"

    def __init__(self, runner: ModelRunner, task: Any, images: torch.Tensor, axis: Axis, batch_size: int,
                 labels: np.ndarray | None = None):
        super().__init__(runner, task, images, axis, batch_size)
        self.labels = labels

    def forward(self, x: torch.Tensor, params: np.ndarray) -> torch.Tensor:
        return torch.softmax(self.task.prepare(self.runner(x), len(x), self.runner.name).double(), -1)

    def anchor(self, identity: torch.Tensor) -> dict[str, np.ndarray]:
        self.pred0 = identity.argmax(-1).numpy()
        self.ref = self.labels if self.labels is not None else self.pred0
        if len(self.ref) and int(self.ref.max()) >= identity.shape[-1]:
            raise DataError(f"labels go up to {int(self.ref.max())} but model {self.runner.name} has "
                            f"{identity.shape[-1]} classes; check --data")
        n = len(self.pred0)
        correct = (self.labels == self.pred0) if self.labels is not None else np.full(n, None)
        return {"label": self.labels if self.labels is not None else np.full(n, -1), "prediction": self.pred0,
                "identity_value": identity[np.arange(n), torch.as_tensor(self.ref)].numpy(),
                "correct_at_identity": correct}

    def score(self, features: torch.Tensor, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        value = features[np.arange(len(pos)), torch.as_tensor(self.ref[pos])].numpy()
        return value, features.argmax(-1).numpy() != self.pred0[pos]


def make_probe(runner: ModelRunner, task: Any, dataset: Any, images: torch.Tensor, axis: Axis, batch_size: int,
               use_labels: bool, options: dict[str, Any]) -> Probe:
    """The probe of ``task`` for one model and axis (``use_labels``: the data's labels are the reference)."""
    labels = dataset.labels.cpu().numpy().astype(np.int64) if use_labels else None
    if task.output == "boxes":
        from .breaking_detection import DetectionProbe

        boxes = dataset.targets["boxes"][:, 0].double() if use_labels else None
        return DetectionProbe(runner, task, images, axis, batch_size, labels, boxes,
                              iou_threshold=options.get("iou_threshold"))
    if options.get("iou_threshold") is not None:
        raise OptionError("--iou-threshold applies to detection (the top box's IoU); this is "
                          f"task {task.name!r}")
    return ClassificationProbe(runner, task, images, axis, batch_size, labels)


def check_task(task: Any) -> None:
    """Refuse a task nero search cannot search (image classification and detection only)."""
    if task.input_kind != "image" or task.output not in ("invariant", "boxes"):
        raise OptionError(f"nero search supports image classification and detection, not task {task.name!r}")


__all__ = ["Probe", "ClassificationProbe", "make_probe", "check_task"]
