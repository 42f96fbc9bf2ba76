"""The cost of ``nero lie``: one Lie derivative by ``torch.func.jvp`` (and by the finite-difference
fallback) per generator, in forward passes of the same batch.

For each model and generator it times, on one batch of MNIST samples: a plain forward pass
(``inference_mode``), the JVP (the differentiable warp built from the parameter, then the model
in forward-mode autodiff) and the central finite differences (two warps, two forward passes),
each the fastest of ``--repeats`` runs after a warm-up, and prints the ratios.

Usage: ``python benchmarks/lie.py [--batch 64] [--repeats 7] [--device cpu] [--resnet]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nero_cli import lie_derivative as L  # noqa: E402
from nero_cli.models import LoadedModel, ModelMeta  # noqa: E402
from nero_cli.prepare import prepare  # noqa: E402
from nero_cli.runner import ModelRunner  # noqa: E402
from resnet import resnet18  # noqa: E402

GROUPS = ("rotation", "shift", "scale", "perspective")


def timed(fn: Callable[[], object], repeats: int, cuda: bool) -> float:
    """The fastest of ``repeats`` runs of ``fn()`` in seconds, after one warm-up (the minimum: on a
    shared machine the other runs measure the neighbours)."""
    fn()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return min(times)


def runners(device: str, batch: int, resnet: bool) -> tuple[list[ModelRunner], object, torch.Tensor, list]:
    p = prepare(["sample:mnist-cnn"], "sample:mnist500", list(GROUPS), sample=batch, device=device)
    if not resnet:
        return p.runners, p.task, p.dataset.inputs.to(p.device), p.specs
    extra = ModelRunner(LoadedModel(name="resnet18 (random)", module=resnet18().eval().to(p.device), source="<benchmark>", format="module",
                                    sha256={}, meta=ModelMeta()), p.device)
    return [*p.runners, extra], p.task, p.dataset.inputs.to(p.device), p.specs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--resnet", action="store_true", help="also a ResNet-18-sized model (random weights)")
    args = ap.parse_args()
    rs, task, x, specs = runners(args.device, args.batch, args.resnet)
    cuda = x.is_cuda
    print(f"batch {len(x)} of 28x28 MNIST images on {x.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; fastest of {args.repeats}")
    print(f"{'model':<20} {'generator':<10} {'forward ms':>10} {'jvp ms':>8} {'jvp/fwd':>8} {'fd ms':>8} {'fd/fwd':>7}")
    for r in rs:
        def forward() -> object:
            with torch.inference_mode():
                return r(x)

        fwd = timed(forward, args.repeats, cuda)
        for spec in specs:
            for gen in L.generators_of(spec, tuple(x.shape[-2:])):
                jvp = timed(lambda: L.jvp_derivative(r, task, x, gen), args.repeats, cuda)
                fd = timed(lambda: L.fd_derivative(r, task, x, gen, 1e-2), args.repeats, cuda)
                print(f"{r.name:<20} {gen.name:<10} {fwd * 1e3:>10.2f} {jvp * 1e3:>8.2f} {jvp / fwd:>8.2f} "
                      f"{fd * 1e3:>8.2f} {fd / fwd:>7.2f}")


if __name__ == "__main__":
    main()
