"""``nero search`` for detection: the top box of each candidate, mapped back by g⁻¹.

A detector's output ``(N, D, 6)`` (``x1, y1, x2, y2, score, class``; score < 0 pads) is reduced
to its **top box**, the highest-scoring row, after mapping every box back by the inverse of the
candidate's element (:class:`orbits.outputs.Boxes`: exact for shifts and scalings; under rotations
the axis-aligned envelope of the turned box, which grows with the angle: a square turned by 45°
has an envelope of twice its area, IoU 0.5 with the square, even from a perfect detector).

- **changed** (breaking): the top box differs from the top box at the identity: its class differs,
  or the IoU of the two boxes is below ``iou_threshold`` (default 0.5), or one of them does not exist.
- **quality** (worst): the IoU of the top box with the reference box, counted 0 when the top box's
  class is not the reference class or there is no box. The reference is the key object's ground-truth
  box and class (the data's first box) when the data have boxes, else the top box at the identity.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from orbits.outputs import Boxes

from .errors import OptionError
from .metrics import box_iou, top_detection
from .runner import ModelRunner
from .search_axes import Axis
from .search_probes import Probe

#: Default IoU below which the top box counts as changed.
IOU_THRESHOLD = 0.5


class DetectionProbe(Probe):
    """Per candidate the top box ``x1, y1, x2, y2, score, class`` (score −1: no box), mapped back by
    g⁻¹ (``in_frame``: left in the moved image's frame, for drawing)."""

    quantity = "iou"

    def __init__(self, runner: ModelRunner, task: Any, images: torch.Tensor, axis: Axis, batch_size: int,
                 labels: np.ndarray | None = None, boxes: torch.Tensor | None = None, *,
                 iou_threshold: float | None = None, in_frame: bool = False):
        super().__init__(runner, task, images, axis, batch_size)
        self.labels, self.boxes, self.in_frame = labels, boxes, in_frame
        self.iou_threshold = IOU_THRESHOLD if iou_threshold is None else float(iou_threshold)
        if not 0.0 < self.iou_threshold <= 1.0:
            raise OptionError(f"--iou-threshold must be in (0, 1], got {iou_threshold}")

    def forward(self, x: torch.Tensor, params: np.ndarray) -> torch.Tensor:
        out = self.task.prepare(self.runner(x), len(x), self.runner.name).double().cpu()  # (M, D, 6)
        if not self.in_frame:
            group = self.axis.build(torch.tensor(params, dtype=torch.float64))
            out = Boxes(group, self.size).pull_back(out[:, None], range(len(x)))[:, 0]
        top = top_detection(out[..., :4], out[..., 4], out[..., 5].round().long())
        score = torch.where(top["valid"], top["score"], torch.full_like(top["score"], -1.0))
        return torch.cat([top["box"], score[:, None], top["class"][:, None].double()], 1)

    def anchor(self, identity: torch.Tensor) -> dict[str, np.ndarray]:
        self.top0 = identity
        valid0 = identity[:, 4] >= 0
        n = len(identity)
        cls0 = torch.where(valid0, identity[:, 5], torch.full_like(identity[:, 5], -1.0))
        if self.labels is not None:
            self.ref_box, self.ref_cls = self.boxes.double(), torch.as_tensor(self.labels, dtype=torch.float64)
        else:
            self.ref_box, self.ref_cls = identity[:, :4], cls0
        value = self.quality(identity, np.arange(n))
        correct = value >= self.iou_threshold if self.labels is not None else np.full(n, None)
        return {"label": self.labels if self.labels is not None else np.full(n, -1),
                "prediction": cls0.numpy().astype(np.int64), "identity_value": value, "correct_at_identity": correct}

    def quality(self, top: torch.Tensor, pos: np.ndarray) -> np.ndarray:
        """IoU of each top box with its sample's reference box, 0 for another class or no box."""
        p = torch.as_tensor(pos, dtype=torch.long)
        same = (top[:, 4] >= 0) & (top[:, 5] == self.ref_cls[p])
        return torch.where(same, box_iou(top[:, :4], self.ref_box[p]), torch.zeros(len(p), dtype=top.dtype)).numpy()

    def score(self, features: torch.Tensor, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = torch.as_tensor(pos, dtype=torch.long)
        ref = self.top0[p]
        valid, valid0 = features[:, 4] >= 0, ref[:, 4] >= 0
        moved = (features[:, 5] != ref[:, 5]) | (box_iou(features[:, :4], ref[:, :4]) < self.iou_threshold)
        return self.quality(features, pos), ((valid != valid0) | (valid & valid0 & moved)).numpy()

    def show(self, pos: np.ndarray, params: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The moved inputs and their top boxes in the moved images' frame."""
        in_frame = DetectionProbe(self.runner, self.task, self.images, self.axis, self.batch_size,
                                  iou_threshold=self.iou_threshold, in_frame=True)
        return self.transform(pos, params), in_frame(pos, params)

    @property
    def method(self) -> str:
        return f"top box: class, IoU<{self.iou_threshold:g}"


__all__ = ["DetectionProbe", "IOU_THRESHOLD"]
