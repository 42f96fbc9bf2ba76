#!/usr/bin/env python
"""Rebuild the bundled point-cloud samples (shape data, weights, report).

NERO's ModelNet case study, done procedurally: five primitive shapes (box,
sphere, cylinder, cone, torus) in a canonical orientation, sampled as 256
surface points each.  Usage (from the repository root)::

    python sample_models/build_pointcloud.py

Needs only numpy, torch and safetensors: the surface samplers are written out
below (no mesh library).  Deterministic: numpy ``PCG64`` generators for the
data, torch generators for training; threads and deterministic algorithms as
set by ``_build.deterministic``.

Writes (relative to this file's directory):

* ``data/shapes200.npz``                  40 shapes per class, class-major:
  ``points`` float32 (200, 256, 3), ``labels`` int64 (200,), ``class_names``
* ``weights/pointnet.safetensors``        PointNet trained upright (no augmentation)
* ``weights/pointnet-aug.safetensors``    PointNet trained with uniform random SO(3) rotations
* ``weights/pointnet-dist.safetensors``   DistanceHistogramClassifier (exactly rotation invariant)
* ``weights/pointcloud_report.json``      accuracies, epochs, training times

The (larger) training set is generated in memory from a different seed and is
not saved.  The PointNets train on random 128-point subsets of each cloud
(fresh every batch) to halve the cost.  Runs in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import math
import time

if __package__:  # python -m sample_models.build_pointcloud
    from . import _build
else:  # python sample_models/build_pointcloud.py: this folder is sys.path[0]
    import _build

HERE = _build.setup_script(__file__)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from sample_models.pointcloud import SHAPE_CLASSES, DistanceHistogramClassifier, PointNet  # noqa: E402

NUM_POINTS = 256
EVAL_PER_CLASS = 40
TRAIN_PER_CLASS = 400
NOISE = 0.01  # std of the Gaussian jitter added to every point (unit-ball scale)

EVAL_DATA_SEED = 2024
TRAIN_DATA_SEED = 7
ROT_EVAL_SEED = 1234
ROT_EVAL_REPEATS = 10  # random rotations per evaluation shape
SEED = 0

BATCH = 32
TRAIN_POINTS = 128  # PointNets train on a fresh random subset of 128 of the 256 points per batch
LR = 2e-3
EPOCHS_PLAIN = 3
EPOCHS_AUG = 10
EPOCHS_DIST = 15
LR_DIST = 3e-3

WEIGHTS_DIR = HERE / "weights"
DATA_DIR = HERE / "data"


# ------------------------------------------------------------------ surface samplers
# Every sampler returns (n, 3) points uniformly distributed (by area) on the surface
# of the shape in its canonical pose: box edges along x, y, z (longest along x);
# cylinder and cone axes along z (cone apex up); torus in the xy-plane.


def _pick(rng: np.random.Generator, n: int, areas) -> np.ndarray:
    """Which surface part each of ``n`` points falls on, proportional to area."""
    p = np.asarray(areas, dtype=np.float64)
    return rng.choice(len(p), size=n, p=p / p.sum())


def _disk(rng: np.random.Generator, n: int, radius: float) -> np.ndarray:
    r = radius * np.sqrt(rng.random(n))
    t = rng.random(n) * 2.0 * np.pi
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def sample_box(rng: np.random.Generator, n: int) -> np.ndarray:
    dims = np.array([1.0, 0.6, 0.3]) * rng.uniform(0.85, 1.15, size=3)  # stays non-cube, ordered
    half = dims / 2.0
    a, b, c = dims
    face = _pick(rng, n, [b * c, b * c, a * c, a * c, a * b, a * b])
    pts = rng.uniform(-half, half, size=(n, 3))
    axis = face // 2
    sign = np.where(face % 2 == 0, -1.0, 1.0)
    pts[np.arange(n), axis] = sign * half[axis]
    return pts


def sample_sphere(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v * rng.uniform(0.96, 1.04, size=3)  # a slightly squashed sphere


def sample_cylinder(rng: np.random.Generator, n: int) -> np.ndarray:
    r = 0.5
    h = rng.uniform(1.3, 2.0)  # height / diameter in [1.3, 2.0]
    part = _pick(rng, n, [2 * np.pi * r * h, np.pi * r * r, np.pi * r * r])
    t = rng.random(n) * 2.0 * np.pi
    pts = np.stack([r * np.cos(t), r * np.sin(t), rng.uniform(-h / 2, h / 2, n)], axis=1)
    cap = part > 0
    pts[cap, :2] = _disk(rng, int(cap.sum()), r)
    pts[cap, 2] = np.where(part[cap] == 1, -h / 2, h / 2)
    return pts


def sample_cone(rng: np.random.Generator, n: int) -> np.ndarray:
    r = rng.uniform(0.45, 0.6)
    h = rng.uniform(1.0, 1.4)
    slant = math.hypot(r, h)
    part = _pick(rng, n, [np.pi * r * slant, np.pi * r * r])
    # lateral surface: distance from the apex ~ sqrt(u) (area grows linearly with it)
    s = np.sqrt(rng.random(n))
    t = rng.random(n) * 2.0 * np.pi
    pts = np.stack([s * r * np.cos(t), s * r * np.sin(t), h * (1.0 - s)], axis=1)
    base = part == 1
    pts[base, :2] = _disk(rng, int(base.sum()), r)
    pts[base, 2] = 0.0
    return pts


def sample_torus(rng: np.random.Generator, n: int) -> np.ndarray:
    big = 1.0
    small = rng.uniform(0.25, 0.4)
    # tube angle phi has density proportional to (R + r cos phi): rejection sampling
    phis = np.empty(0)
    while phis.size < n:
        phi = rng.random(4 * n) * 2.0 * np.pi
        keep = rng.random(4 * n) * (big + small) < big + small * np.cos(phi)
        phis = np.concatenate([phis, phi[keep]])
    phi = phis[:n]
    t = rng.random(n) * 2.0 * np.pi
    ring = big + small * np.cos(phi)
    return np.stack([ring * np.cos(t), ring * np.sin(t), small * np.sin(phi)], axis=1)


SAMPLERS = {
    "box": sample_box,
    "sphere": sample_sphere,
    "cylinder": sample_cylinder,
    "cone": sample_cone,
    "torus": sample_torus,
}
assert tuple(SAMPLERS) == SHAPE_CLASSES


def _normalise(pts: np.ndarray) -> np.ndarray:
    """Centre at the centroid, scale so the farthest point is at radius 1."""
    pts = pts - pts.mean(axis=0)
    return pts / np.linalg.norm(pts, axis=1).max()


def make_shape(rng: np.random.Generator, cls: str, n: int = NUM_POINTS) -> np.ndarray:
    pts = _normalise(SAMPLERS[cls](rng, n))
    pts = pts + NOISE * rng.standard_normal(pts.shape)
    return _normalise(pts).astype(np.float32)


def make_dataset(seed: int, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` shapes of every class, class-major (upright, no rotation)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    points, labels = [], []
    for k, cls in enumerate(SHAPE_CLASSES):
        for _ in range(per_class):
            points.append(make_shape(rng, cls))
            labels.append(k)
    return np.stack(points), np.asarray(labels, dtype=np.int64)


# -------------------------------------------------------------------------- rotations
def random_rotations(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` rotation matrices ``(n, 3, 3)``, uniform on SO(3) (normalised Gaussian quaternions)."""
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    rot = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=1,
    ).reshape(n, 3, 3)
    return rot.float()


def rotate(points: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Rotate every cloud ``(N, P, 3)`` by its matrix ``(N, 3, 3)``: ``x -> R x``."""
    return points @ rot.transpose(1, 2)


# --------------------------------------------------------------------------- training
def _loop(model, params, inputs, y, epochs, lr, batch, seed, tag, step_fn):
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(params, lr=lr)
    steps_per_epoch = math.ceil(len(y) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )

    def step(idx):
        return step_fn(inputs[idx], gen), y[idx]

    return _build.fit(model, opt, sched, gen, len(y), batch, epochs, step, tag)


def train_pointnet(x, y, epochs, augment, tag):
    torch.manual_seed(SEED)
    model = PointNet(len(SHAPE_CLASSES))

    def step(xb, gen):
        # Random point subsets halve the cost (and act as a mild augmentation); a
        # max-pooling PointNet evaluates fine on all 256 points afterwards.
        keep = torch.rand(xb.shape[0], xb.shape[1], generator=gen).argsort(dim=1)[:, :TRAIN_POINTS]
        xb = torch.gather(xb, 1, keep.unsqueeze(-1).expand(-1, -1, 3))
        if augment:
            xb = rotate(xb, random_rotations(len(xb), gen))
        return model(xb)

    secs = _loop(model, model.parameters(), x, y, epochs, LR, BATCH, SEED, tag, step)
    return model, secs


def train_distance(x, y, epochs, tag):
    torch.manual_seed(SEED)
    model = DistanceHistogramClassifier(len(SHAPE_CLASSES))
    t0 = time.perf_counter()
    with torch.no_grad():
        feats = model.features(x)  # fixed, parameter-free, rotation invariant
    t_feat = time.perf_counter() - t0

    def step(fb, gen):
        return model.classify_features(fb)

    secs = _loop(model, model.parameters(), feats, y, epochs, LR_DIST, 64, SEED, tag, step)
    return model, secs + t_feat


@torch.no_grad()
def per_class_accuracy(model, x, y) -> dict[str, float]:
    pred = torch.cat([model(xc).argmax(1) for xc in x.split(250)])
    return {c: round((pred[y == k] == k).float().mean().item(), 4) for k, c in enumerate(SHAPE_CLASSES)}


def _data(t_start: float):
    """Write ``shapes200.npz``; the training tensors, the evaluation tensors and their rotated copies."""
    ev_np, ev_labels = make_dataset(EVAL_DATA_SEED, EVAL_PER_CLASS)
    data_path = DATA_DIR / "shapes200.npz"
    np.savez_compressed(
        data_path, points=ev_np, labels=ev_labels, class_names=np.array(SHAPE_CLASSES)
    )
    _build.wrote(data_path)
    tr_np, tr_labels = make_dataset(TRAIN_DATA_SEED, TRAIN_PER_CLASS)
    tr_x, tr_y = torch.from_numpy(tr_np), torch.from_numpy(tr_labels)
    ev_x, ev_y = torch.from_numpy(ev_np), torch.from_numpy(ev_labels)
    print(f"train {tuple(tr_x.shape)}  eval {tuple(ev_x.shape)}  "
          f"({time.perf_counter() - t_start:.1f}s)", flush=True)

    # Evaluation rotations: ROT_EVAL_REPEATS uniform rotations of every eval shape.
    rot_gen = torch.Generator().manual_seed(ROT_EVAL_SEED)
    ev_rot = rotate(
        ev_x.repeat(ROT_EVAL_REPEATS, 1, 1), random_rotations(ROT_EVAL_REPEATS * len(ev_x), rot_gen)
    )
    return (tr_x, tr_y), (ev_x, ev_y), (ev_rot, ev_y.repeat(ROT_EVAL_REPEATS))


def _train(tr_x: torch.Tensor, tr_y: torch.Tensor, ev_x: torch.Tensor) -> dict:
    """Train and save the three models; check the distance classifier's invariance; ``{name: (model, info)}``."""
    print(f"training pointnet ({EPOCHS_PLAIN} epochs, no augmentation)", flush=True)
    plain, t_plain = train_pointnet(tr_x, tr_y, EPOCHS_PLAIN, False, "pointnet")
    _build.save_weights(plain, WEIGHTS_DIR / "pointnet.safetensors", "sample_models.pointcloud:pointnet")

    print(f"training pointnet-dist ({EPOCHS_DIST} epochs on distance histograms)", flush=True)
    dist, t_dist = train_distance(tr_x, tr_y, EPOCHS_DIST, "pointnet-dist")
    _build.save_weights(dist, WEIGHTS_DIR / "pointnet-dist.safetensors", "sample_models.pointcloud:distance_classifier")

    print(f"training pointnet-aug ({EPOCHS_AUG} epochs, uniform random SO(3) rotations)", flush=True)
    aug, t_aug = train_pointnet(tr_x, tr_y, EPOCHS_AUG, True, "pointnet-aug")
    _build.save_weights(aug, WEIGHTS_DIR / "pointnet-aug.safetensors", "sample_models.pointcloud:pointnet")

    with torch.no_grad():  # the distance classifier is rotation invariant by construction
        rots = random_rotations(len(ev_x), torch.Generator().manual_seed(99))
        d0, d1 = dist(ev_x), dist(rotate(ev_x, rots))
        dist_inv_err = (d0 - d1).abs().max().item()
    print(f"pointnet-dist max |logit(x) - logit(Rx)| over shapes200: {dist_inv_err:.2e}", flush=True)
    assert dist_inv_err < 1e-4, dist_inv_err
    return {
        "pointnet": (plain, {"epochs": EPOCHS_PLAIN, "augmentation": "none", "train_seconds": t_plain}),
        "pointnet-aug": (
            aug,
            {"epochs": EPOCHS_AUG, "augmentation": "uniform random SO(3) rotation per sample per batch",
             "train_seconds": t_aug},
        ),
        "pointnet-dist": (
            dist,
            {"epochs": EPOCHS_DIST, "augmentation": "none (rotation invariant by construction)",
             "train_seconds": t_dist, "max_logit_change_under_rotation": float(f"{dist_inv_err:.3g}")},
        ),
    }


def _evaluate(models: dict, ev: tuple, ev_rot: tuple) -> dict:
    """Each model's accuracies on shapes200, upright and rotated, for the report."""
    (ev_x, ev_y), (ev_rot_x, ev_rot_y) = ev, ev_rot
    report_models = {}
    for name, (model, info) in models.items():
        acc = _build.accuracy(model, ev_x, ev_y, bs=250)
        acc_rot = _build.accuracy(model, ev_rot_x, ev_rot_y, bs=250)
        report_models[name] = {
            "shapes200_accuracy": round(acc, 4),
            "shapes200_rotated_accuracy": round(acc_rot, 4),
            "per_class_accuracy": per_class_accuracy(model, ev_x, ev_y),
            "per_class_rotated_accuracy": per_class_accuracy(model, ev_rot_x, ev_rot_y),
            "parameters": sum(p.numel() for p in model.parameters()),
            **{k: (round(v, 1) if isinstance(v, float) and k == "train_seconds" else v) for k, v in info.items()},
        }
        print(f"{name:14s} upright {acc:.4f}  rotated {acc_rot:.4f}  "
              f"per class rotated {report_models[name]['per_class_rotated_accuracy']}", flush=True)
    return report_models


def main() -> None:
    t_start = time.perf_counter()
    deterministic = _build.deterministic(SEED, numpy_seed=False)  # the data use their own numpy generators
    WEIGHTS_DIR.mkdir(exist_ok=True)
    DATA_DIR.mkdir(exist_ok=True)
    (tr_x, tr_y), ev, ev_rot = _data(t_start)
    models = _train(tr_x, tr_y, ev[0])
    report = {
        "dataset": "procedural primitive shapes (sample_models/build_pointcloud.py): "
        f"classes {list(SHAPE_CLASSES)}, {NUM_POINTS} surface points each, canonical "
        "orientation, size/aspect jitter, Gaussian point noise "
        f"std {NOISE}, centred at the centroid and scaled into the unit ball",
        "train_set": f"{TRAIN_PER_CLASS} per class (seed {TRAIN_DATA_SEED}), in memory only",
        "eval_set": f"shapes200.npz: {EVAL_PER_CLASS} per class (seed {EVAL_DATA_SEED}), class-major",
        "rotated_eval": f"every shapes200 cloud under {ROT_EVAL_REPEATS} rotations uniform on SO(3) "
        f"(normalised Gaussian quaternions, torch seed {ROT_EVAL_SEED}), about the origin",
        "optimizer": f"Adam, one-cycle LR (max {LR} PointNet batch {BATCH}; max {LR_DIST} "
        "distance MLP batch 64)",
        "pointnet_training_points": f"random {TRAIN_POINTS} of the {NUM_POINTS} points per cloud per batch "
        f"(evaluation uses all {NUM_POINTS})",
        "seed": SEED,
        **_build.environment(deterministic, numpy=True),
        "models": _evaluate(models, ev, ev_rot),
    }
    _build.write_report(WEIGHTS_DIR / "pointcloud_report.json", report, t_start)


if __name__ == "__main__":
    main()
