"""The cost of ``nero lie``: one Lie derivative by ``torch.func.jvp`` (and by the finite-difference
fallback) per generator, in forward passes of the same batch.

For each model and generator it times, on one batch: a plain forward pass (``inference_mode``), the
JVP (the differentiable action built from the parameter, the model in forward-mode autodiff and,
for flow, the differentiable pull-back of the output field) and the central finite differences
(two actions, two forward passes), each the fastest of ``--repeats`` runs after a warm-up, and
prints the ratios. Suites: ``mnist`` (sample:mnist-cnn on MNIST digits; ``--resnet`` adds a
ResNet-18-sized model), ``flow`` (sample:flownet, sample:fft-piv, sample:gradient-flow on piv64
frame pairs, rotation, shift and scale) and ``points`` (sample:pointnet on shapes200, viewpoint).

On the CPU the times are the process's CPU time with one thread (``--threads``), which a shared
machine's load does not inflate as it does wall-clock time.

Usage: ``python benchmarks/lie.py [--suite mnist,flow,points] [--batch 64] [--repeats 7] [--device cpu] [--resnet]``
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
from orbits import parse_spec  # noqa: E402
from resnet import resnet18  # noqa: E402

#: Suites: (models, data, groups).
SUITES = {
    "mnist": (["sample:mnist-cnn"], "sample:mnist500", ["rotation", "shift", "scale", "perspective"]),
    "flow": (["sample:flownet", "sample:fft-piv", "sample:gradient-flow"], "sample:piv64", ["rotation", "shift", "scale"]),
    "points": (["sample:pointnet"], "sample:shapes200", ["viewpoint"]),
}


def timed(fn: Callable[[], object], repeats: int, cuda: bool) -> float:
    """The fastest of ``repeats`` runs of ``fn()`` in seconds, after one warm-up (the minimum: on a
    shared machine the other runs measure the neighbours). On CUDA wall-clock time; on the CPU the
    process's CPU time (with one thread, what the work costs, whatever the machine's load)."""
    fn()
    clock = time.perf_counter if cuda else time.process_time
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        t = clock()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(clock() - t)
    return min(times)


def suite(name: str, device: str, batch: int, resnet: bool) -> tuple[list[ModelRunner], object, torch.Tensor, list]:
    models, data, groups = SUITES[name]
    # prepare checks the first group; flow's shift and scale are lie's own (see lie_derivative.TASK_GROUPS)
    p = prepare(models, data, groups[:1], limit=batch, device=device)
    size = p.dataset.size if p.task.input_kind != "points" else None
    specs = [parse_spec(g, image_size=size) for g in groups]
    runners = list(p.runners)
    if resnet and name == "mnist":
        runners.append(ModelRunner(LoadedModel(name="resnet18 (random)", module=resnet18().eval().to(p.device),
                                               source="<benchmark>", format="module", sha256={}, meta=ModelMeta()),
                                   p.device))
    return runners, p.task, p.dataset.inputs.to(p.device), specs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="mnist,flow", help="comma-separated: mnist, flow, points")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--resnet", action="store_true", help="also a ResNet-18-sized model (random weights)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: CPU time is the work done)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clock = "wall-clock" if args.device.startswith("cuda") else "process CPU time"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {clock}, fastest of {args.repeats}")
    print(f"{'model':<20} {'generator':<10} {'batch':>5} {'forward ms':>10} {'jvp ms':>8} {'jvp/fwd':>8} "
          f"{'fd ms':>8} {'fd/fwd':>7}")
    for name in args.suite.split(","):
        rs, task, x, specs = suite(name.strip(), args.device, args.batch, args.resnet)
        cuda = x.is_cuda
        for r in rs:
            def forward() -> object:
                with torch.inference_mode():
                    return r(x)

            fwd = timed(forward, args.repeats, cuda)
            for spec in specs:
                for gen in L.generators_of(spec, tuple(x.shape[-2:]) if x.ndim == 4 else None, task.name):
                    jvp = timed(lambda: L.jvp_derivative(r, task, x, gen), args.repeats, cuda)
                    fd = timed(lambda: L.fd_derivative(r, task, x, gen, 1e-2), args.repeats, cuda)
                    print(f"{r.name:<20} {gen.name:<10} {len(x):>5} {fwd * 1e3:>10.2f} {jvp * 1e3:>8.2f} "
                          f"{jvp / fwd:>8.2f} {fd * 1e3:>8.2f} {fd / fwd:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
