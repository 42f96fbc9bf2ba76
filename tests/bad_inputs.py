"""The bad-input corpus: hostile and broken checkpoints, data and options.

``python tests/bad_inputs.py DIR`` writes every file of the corpus into DIR and prints the
cases; ``tests/test_bad_inputs.py`` runs each case through the CLI and checks its one-line
message and its exit code. Each case: (name, files to build, CLI arguments, expected text,
exit code). ``{dir}`` in the arguments stands for the corpus directory.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


class _Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cnn() -> torch.nn.Module:
    sys.path.insert(0, str(HERE.parent))
    import sample_models

    return sample_models.build_sample("mnist-cnn")


def _factory(body: str) -> str:
    return ("import torch\nfrom torch import nn\n\nclass M(nn.Module):\n    def forward(self, x):\n"
            f"{body}\n\ndef build():\n    return M()\n")


def _images(n: int = 4, **extra: np.ndarray) -> dict[str, np.ndarray]:
    return {"images": np.zeros((n, 28, 28), np.uint8), **extra}


def _build_truncated_ts(d: Path) -> None:
    torch.jit.save(torch.jit.script(_cnn()), d / "full_ts.pt")
    data = (d / "full_ts.pt").read_bytes()
    (d / "truncated.pt").write_bytes(data[: len(data) // 2])


def _build_export(d: Path) -> None:
    """A torch.export archive of a fixed batch of 2 (no dynamic batch dimension), and its first half."""
    torch.export.save(torch.export.export(_cnn().eval(), (torch.zeros(2, 1, 28, 28),)), d / "fixed_batch.pt2")
    data = (d / "fixed_batch.pt2").read_bytes()
    (d / "truncated.pt2").write_bytes(data[: len(data) // 2])


def _build_not_export(d: Path) -> None:
    with zipfile.ZipFile(d / "not_export.pt2", "w") as z:  # a sound zip that torch.export.save did not write
        z.writestr("hello.txt", "hi")


class _Rgb(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 10, 28)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).flatten(1)


def _build_rgb(d: Path) -> None:
    """A TorchScript model of 3-channel images, with and without a sidecar that says so."""
    torch.jit.save(torch.jit.script(_Rgb()), d / "rgb.pt")
    (d / "rgb.json").write_text(json.dumps({"input_shape": [3, 28, 28]}))
    (d / "rgb_bare.pt").write_bytes((d / "rgb.pt").read_bytes())


def _build_folder(d: Path) -> None:
    from PIL import Image

    (d / "folder" / "0").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(d / "folder" / "0" / "a.png")
    (d / "folder" / "0" / "b.png").write_bytes(b"\x89PNG broken")


BUILDERS: dict[str, Callable[[Path], None]] = {
    "html.pt": lambda d: (d / "html.pt").write_text("<!DOCTYPE html>\n<html><head><title>404</title></head></html>"),
    "empty.pt": lambda d: (d / "empty.pt").write_bytes(b""),
    "truncated.pt": _build_truncated_ts,
    "fixed_batch.pt2": _build_export,
    "truncated.pt2": _build_export,
    "not_export.pt2": _build_not_export,
    "not_zip.pt2": lambda d: (d / "not_zip.pt2").write_bytes(b"hello world " * 10),
    "rgb.pt": _build_rgb,
    "rgb_bare.pt": _build_rgb,
    "evil.pt": lambda d: (d / "evil.pt").write_bytes(pickle.dumps(_Payload(str(d / "PWNED")))),
    "state_dict.pt": lambda d: torch.save(_cnn().state_dict(), d / "state_dict.pt"),
    "wrong_keys.pt": lambda d: torch.save({"fc.weight": torch.zeros(2, 2)}, d / "wrong_keys.pt"),
    "raises.py": lambda d: (d / "raises.py").write_text(_factory("        raise RuntimeError('boom')")),
    "nan.py": lambda d: (d / "nan.py").write_text(_factory("        return torch.full((x.shape[0], 10), float('nan'))")),
    "inf.py": lambda d: (d / "inf.py").write_text(_factory("        return torch.full((x.shape[0], 10), float('inf'))")),
    "shape.py": lambda d: (d / "shape.py").write_text(_factory("        return x")),
    "three.py": lambda d: (d / "three.py").write_text(_factory("        return torch.zeros(x.shape[0], 3)")),
    "empty.npz": lambda d: np.savez(d / "empty.npz", images=np.zeros((0, 28, 28), np.uint8)),
    "rank.npz": lambda d: np.savez(d / "rank.npz", images=np.zeros((4, 28), np.uint8)),
    "channels.npz": lambda d: np.savez(d / "channels.npz", images=np.zeros((4, 3, 28, 28), np.uint8)),
    "nan.npz": lambda d: np.savez(d / "nan.npz", images=np.full((4, 28, 28), np.nan, np.float32)),
    "inf.npz": lambda d: np.savez(d / "inf.npz", images=np.full((4, 28, 28), np.inf, np.float32)),
    "labels_range.npz": lambda d: np.savez(d / "labels_range.npz", **_images(labels=np.array([0, 1, 2, 99]))),
    "labels_length.npz": lambda d: np.savez(d / "labels_length.npz", **_images(labels=np.zeros(3, np.int64))),
    "pickled.npz": lambda d: np.savez(d / "pickled.npz", images=np.array([object()] * 4, dtype=object)),
    "not_npz.npz": lambda d: (d / "not_npz.npz").write_text("hello"),
    "folder": _build_folder,
}

M, D, G = "sample:mnist-cnn", "sample:mnist500", "rotation:step=90"
# name, files, arguments after `nero evaluate`, expected text, exit code
CASES: list[tuple[str, list[str], list[str], str, int]] = [
    ("html page saved as .pt", ["html.pt"], ["{dir}/html.pt", "-d", D, "-g", G], "HTML", 3),
    ("empty checkpoint", ["empty.pt"], ["{dir}/empty.pt", "-d", D, "-g", G], "empty (0 bytes)", 3),
    ("truncated TorchScript", ["truncated.pt"], ["{dir}/truncated.pt", "-d", D, "-g", G], "truncated", 3),
    ("truncated torch.export archive", ["truncated.pt2"], ["{dir}/truncated.pt2", "-d", D, "-g", G],
     "torch.export archive is truncated", 3),
    ("zip that torch.export did not write", ["not_export.pt2"], ["{dir}/not_export.pt2", "-d", D, "-g", G],
     "not a readable torch.export archive", 3),
    (".pt2 that is not a zip", ["not_zip.pt2"], ["{dir}/not_zip.pt2", "-d", D, "-g", G], "(not a zip file", 3),
    ("export of a fixed batch size", ["fixed_batch.pt2"], ["{dir}/fixed_batch.pt2", "-d", D, "-g", G],
     "(it expects (2, 1, 28, 28) per its export signature): AssertionError", 3),
    ("input shape not the sidecar's", ["rgb.pt"], [M, "{dir}/rgb.pt", "-d", D, "-g", G],
     ", 1, 28, 28) (it expects (N, 3, 28, 28) per its sidecar input_shape): RuntimeError", 3),
    ("TorchScript rejects the input shape", ["rgb_bare.pt"], ["{dir}/rgb_bare.pt", "-d", D, "-g", G],
     ", 1, 28, 28): RuntimeError: Given groups=1, weight of size [10, 3, 28, 28]", 3),
    ("pickle that runs a command", ["evil.pt"], ["{dir}/evil.pt", "-d", D, "-g", G], "--trust-checkpoint", 3),
    ("state dict given as a model", ["state_dict.pt"], ["{dir}/state_dict.pt", "-d", D, "-g", G], "file.py:callable --weights", 3),
    ("state dict keys do not match", ["wrong_keys.pt"],
     ["sample_models.mnist:mnist_cnn", "--weights", "{dir}/wrong_keys.pt", "-d", D, "-g", G], "do not fit the module", 3),
    ("model raises in forward", ["raises.py"], ["{dir}/raises.py:build", "-d", D, "-g", G], "RuntimeError: boom", 3),
    ("model returns NaN", ["nan.py"], ["{dir}/nan.py:build", "-d", D, "-g", G], "NaN or inf", 3),
    ("model returns inf", ["inf.py"], ["{dir}/inf.py:build", "-d", D, "-g", G], "NaN or inf", 3),
    ("output shape does not fit the task", ["shape.py"], ["{dir}/shape.py:build", "-d", D, "-g", G],
     "does not fit classification", 3),
    ("labels outside the model's classes", ["three.py"], ["{dir}/three.py:build", "-d", D, "-g", G, "--classes", "9"],
     "3 classes", 4),
    ("empty data", ["empty.npz"], [M, "-d", "{dir}/empty.npz", "-g", G], "no images", 4),
    ("wrong rank", ["rank.npz"], [M, "-d", "{dir}/rank.npz", "-g", G], "must be (N, H, W)", 4),
    ("wrong channel count", ["channels.npz"], [M, "-d", "{dir}/channels.npz", "-g", G], "expects 1 channel", 4),
    ("NaN pixels", ["nan.npz"], [M, "-d", "{dir}/nan.npz", "-g", G], "NaN or inf", 4),
    ("inf pixels", ["inf.npz"], [M, "-d", "{dir}/inf.npz", "-g", G], "NaN or inf", 4),
    ("labels outside the classes", ["labels_range.npz"], [M, "-d", "{dir}/labels_range.npz", "-g", G], "10 classes", 4),
    ("images and labels differ in length", ["labels_length.npz"], [M, "-d", "{dir}/labels_length.npz", "-g", G],
     "4 images but 3 labels", 4),
    ("npz with a pickled object array", ["pickled.npz"], [M, "-d", "{dir}/pickled.npz", "-g", G], "allow_pickle=False", 4),
    ("not an npz", ["not_npz.npz"], [M, "-d", "{dir}/not_npz.npz", "-g", G], "not a readable .npz", 4),
    ("image folder with an unreadable file", ["folder"], [M, "-d", "{dir}/folder", "-g", G], "unreadable image", 4),
    ("unknown group", [], [M, "-d", D, "-g", "rotate"], "did you mean 'rotation'", 2),
    ("unknown key", [], [M, "-d", D, "-g", "rotation:setp=5"], "'step'", 2),
    ("zero step", [], [M, "-d", D, "-g", "rotation:step=0"], "step must be positive", 2),
    ("negative step", [], [M, "-d", D, "-g", "scale:step=-0.1"], "step must be positive", 2),
    ("orbit that would take hours", [], [M, "-d", D, "-g", "shift:extent=300,step=1", "--limit", "500"], "--yes", 2),
    ("unknown task", [], [M, "-d", D, "-g", G, "--task", "captioning"], "unknown task", 2),
    ("bad batch size", [], [M, "-d", D, "-g", G, "--batch-size", "0"], "--batch-size must be positive", 2),
]


def build(directory: Path, files: list[str] | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in files if files is not None else BUILDERS:
        if not (directory / name).exists():
            BUILDERS[name](directory)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bad-inputs")
    build(out)
    for name, _, args, text, code in CASES:
        print(f"{code}  {name}: nero evaluate {' '.join(a.replace('{dir}', str(out)) for a in args)}  ->  {text}")
