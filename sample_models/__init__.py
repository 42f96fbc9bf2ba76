"""Registry of the sample models and data sets bundled with nero.

Importable with only torch (and safetensors, for :func:`build_sample`) installed.
Every path is resolved relative to this package, so the samples work from a
source checkout and from an installed wheel alike.

Adding a sample (e.g. detection, flow, point-cloud tasks):

1. put the architecture and a zero-argument factory in a module of this
   package (``sample_models/<task>.py``);
2. put weights (a safetensors state dict) in ``weights/`` and data in ``data/``
   (both are package data, see ``pyproject.toml``);
3. add a :class:`SampleModel` / :class:`SampleData` entry to the dicts below.

``SampleModel.weights_into`` names the submodule the weights are loaded into
(``""``: the whole model).  This is how ``mnist-c4`` reuses the plain CNN's
weights: its factory builds ``C4Average(MnistCNN())`` and the
``mnist-cnn.safetensors`` state dict is loaded, strictly, into ``.base``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

__all__ = [
    "SampleModel",
    "SampleData",
    "SAMPLE_MODELS",
    "SAMPLE_DATA",
    "PACKAGE_DIR",
    "WEIGHTS_DIR",
    "DATA_DIR",
    "weights_path",
    "data_path",
    "load_factory",
    "build_sample",
]

PACKAGE_DIR = Path(__file__).resolve().parent
WEIGHTS_DIR = PACKAGE_DIR / "weights"
DATA_DIR = PACKAGE_DIR / "data"

MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
POINTCLOUD_CLASSES: tuple[str, ...] = ("box", "sphere", "cylinder", "cone", "torus")
SEGMENTATION_CLASSES: tuple[str, ...] = ("background", *MNIST_CLASSES)  # class k + 1 is digit k


@dataclass(frozen=True)
class SampleModel:
    """A bundled trained model."""

    name: str  # registry key, e.g. "mnist-cnn"
    description: str  # one line
    task: str  # "classification", ...
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]  # per-example shape, e.g. (1, 28, 28)
    factory: str  # "module:function", called with no arguments
    weights: str | None  # file name under weights/, or None (factory output as is)
    weights_into: str = ""  # submodule receiving the weights ("" = whole model)


@dataclass(frozen=True)
class SampleData:
    """A bundled evaluation data set (an ``.npz`` file under ``data/``)."""

    name: str
    description: str
    file: str  # file name under data/


SAMPLE_MODELS: dict[str, SampleModel] = {
    m.name: m
    for m in (
        SampleModel(
            name="mnist-cnn",
            description="Small MNIST CNN trained on upright digits only (no augmentation).",
            task="classification",
            class_names=MNIST_CLASSES,
            input_shape=(1, 28, 28),
            factory="sample_models.mnist:mnist_cnn",
            weights="mnist-cnn.safetensors",
        ),
        SampleModel(
            name="mnist-cnn-aug",
            description="Same MNIST CNN trained with random rotations in [0, 360) degrees.",
            task="classification",
            class_names=MNIST_CLASSES,
            input_shape=(1, 28, 28),
            factory="sample_models.mnist:mnist_cnn",
            weights="mnist-cnn-aug.safetensors",
        ),
        SampleModel(
            name="mnist-c4",
            description="mnist-cnn averaged over the four 90-degree rotations (exactly C4-invariant).",
            task="classification",
            class_names=MNIST_CLASSES,
            input_shape=(1, 28, 28),
            factory="sample_models.mnist:mnist_c4",
            weights="mnist-cnn.safetensors",
            weights_into="base",
        ),
        SampleModel(
            name="pointnet",
            description="Small PointNet trained on upright shapes only (no rotation augmentation).",
            task="pointcloud",
            class_names=POINTCLOUD_CLASSES,
            input_shape=(256, 3),
            factory="sample_models.pointcloud:pointnet",
            weights="pointnet.safetensors",
        ),
        SampleModel(
            name="pointnet-aug",
            description="Same PointNet trained with a uniform random 3-D rotation per shape.",
            task="pointcloud",
            class_names=POINTCLOUD_CLASSES,
            input_shape=(256, 3),
            factory="sample_models.pointcloud:pointnet",
            weights="pointnet-aug.safetensors",
        ),
        SampleModel(
            name="pointnet-dist",
            description="MLP on histograms of pairwise and centroid distances (rotation-invariant by construction).",
            task="pointcloud",
            class_names=POINTCLOUD_CLASSES,
            input_shape=(256, 3),
            factory="sample_models.pointcloud:distance_classifier",
            weights="pointnet-dist.safetensors",
        ),
        SampleModel(
            name="digitdet",
            description="Tiny anchor-free digit detector trained with digits within +-12 px of the centre "
            "(limited shift jitter); outputs (N, 10, 6) rows x1, y1, x2, y2, score, class.",
            task="detection",
            class_names=MNIST_CLASSES,
            input_shape=(1, 64, 64),
            factory="sample_models.detection:digit_detector",
            weights="digitdet.safetensors",
        ),
        SampleModel(
            name="flownet",
            description="Small U-Net flow / PIV network trained on synthetic particle pairs (no augmentation).",
            task="flow",
            class_names=(),
            input_shape=(2, 32, 32),
            factory="sample_models.flow:flownet",
            weights="flownet.safetensors",
        ),
        SampleModel(
            name="fft-piv",
            description="Classical FFT cross-correlation PIV in torch (16x16 windows, stride 8, sub-pixel peak); no weights.",
            task="flow",
            class_names=(),
            input_shape=(2, 32, 32),
            factory="sample_models.flow:fft_piv",
            weights=None,
        ),
        SampleModel(
            name="gradient-flow",
            description="grad(frame1 - frame2): not a flow estimator, exactly D4 x time-reversal equivariant (reference).",
            task="flow",
            class_names=(),
            input_shape=(2, 32, 32),
            factory="sample_models.flow:gradient_flow",
            weights=None,
        ),
        SampleModel(
            name="digitseg",
            description="Tiny U-Net digit segmenter trained on upright digits only (no augmentation); "
            "(N, 11, H, W) logits, class 0 background, class k + 1 digit k.",
            task="segmentation",
            class_names=SEGMENTATION_CLASSES,
            input_shape=(1, 28, 28),
            factory="sample_models.segmentation:digit_seg",
            weights="digitseg.safetensors",
        ),
    )
}

SAMPLE_DATA: dict[str, SampleData] = {
    d.name: d
    for d in (
        SampleData(
            name="mnist500",
            description="500 MNIST test digits: the first 50 of each class 0-9 "
            "(npz: images uint8 (500,28,28), labels int64 (500,), class_names).",
            file="mnist500.npz",
        ),
        SampleData(
            name="shapes200",
            description="200 procedural shapes in canonical pose, 40 each of box, sphere, cylinder, cone, torus "
            "(npz: points float32 (200,256,3) in the unit ball, labels, class_names).",
            file="shapes200.npz",
        ),
        SampleData(
            name="digits200",
            description="200 MNIST test digits (20 per class), 20-32 px, one per 64x64 canvas, >= 16 px from each edge "
            "(npz: images, boxes x1, y1, x2, y2 in pixel edges, box_labels, class_names).",
            file="digits_det200.npz",
        ),
        SampleData(
            name="piv64",
            description="64 synthetic PIV pairs, 32x32, 16 each of uniform, shear, vortex and random smooth flow "
            "(npz: frames (64,2,32,32), ground-truth flow (64,2,32,32) in px, u right, v down).",
            file="piv64.npz",
        ),
        SampleData(
            name="mnistseg200",
            description="200 MNIST test digits: the first 20 of each class 0-9, with per-pixel masks "
            "(npz: images uint8 (200,28,28), masks uint8 (200,28,28) 0 background / digit + 1 where ink > 0.5, "
            "labels int64 (200,), class_names).",
            file="mnistseg200.npz",
        ),
    )
}


def _lookup(table: dict, name: str, kind: str):
    try:
        return table[name]
    except KeyError:
        valid = ", ".join(sorted(table))
        raise KeyError(f"unknown sample {kind} {name!r}; valid names: {valid}") from None


def weights_path(name: str) -> Path:
    """Path of the weights file of sample model ``name``."""
    spec = _lookup(SAMPLE_MODELS, name, "model")
    if spec.weights is None:
        raise ValueError(f"sample model {name!r} has no weights file")
    return WEIGHTS_DIR / spec.weights


def data_path(name: str) -> Path:
    """Path of the ``.npz`` file of sample data set ``name``."""
    return DATA_DIR / _lookup(SAMPLE_DATA, name, "data set").file


def load_factory(spec: str) -> Callable[[], torch.nn.Module]:
    """Resolve a ``"package.module:function"`` factory spec."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"factory spec must look like 'module:function', got {spec!r}")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"factory {spec!r} is not callable")
    return obj


def build_sample(name: str) -> torch.nn.Module:
    """Instantiate sample model ``name`` with its bundled weights, in eval mode."""
    spec = _lookup(SAMPLE_MODELS, name, "model")
    model = load_factory(spec.factory)()
    if spec.weights is not None:
        path = weights_path(name)
        if not path.is_file():
            raise FileNotFoundError(
                f"weights for sample {name!r} not found at {path}; "
                "rebuild them with `make samples`"
            )
        from safetensors.torch import load_file

        target = model.get_submodule(spec.weights_into) if spec.weights_into else model
        target.load_state_dict(load_file(str(path), device="cpu"), strict=True)
    return model.eval()
