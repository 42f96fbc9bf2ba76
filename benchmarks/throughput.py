"""Throughput of `nero evaluate` against the bare forward pass and a per-image loop.

Measured in one run, as ratios (these machines are noisy, so absolute rates vary):

- bare forward: the model alone over already-transformed orbit tensors, at the best of
  several batch sizes;
- end to end: ``evaluate_run`` (loading, orbit generation, metrics, CSV/JSON writing;
  plots off) over the same samples and orbit;
- per-image loop: what the original NERO did, one image and one angle at a time.

Usage: ``python benchmarks/throughput.py [--samples 200] [--group rotation] [--model sample:mnist-cnn]``
Prints a table and writes ``benchmarks/throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nero_cli.data import load_images, select  # noqa: E402
from nero_cli.models import load_model  # noqa: E402
from nero_cli.run import evaluate_run  # noqa: E402
from orbits import ImageAction, parse_spec  # noqa: E402


def timed(fn, repeat: int = 1) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--group", default="rotation")
    ap.add_argument("--model", default="sample:mnist-cnn")
    ap.add_argument("--loop-samples", type=int, default=40, help="samples for the (slow) per-image loop")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--amp", action="store_true", help="CUDA: bfloat16 autocast for the forward passes")
    ap.add_argument("--no-floor", action="store_true", help="skip the resampling floor's round-trip passes")
    ap.add_argument("--out", default=str(Path(__file__).with_name("throughput.json")))
    args = ap.parse_args()

    dev = torch.device(args.device)
    model = load_model(args.model, device=dev).module
    if args.amp:
        plain = model

        def model(x):  # noqa: ANN001, E306
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return plain(x)
    data = select(load_images("sample:mnist500"), limit=args.samples)
    data.inputs = data.inputs.to(dev)
    spec = parse_spec(args.group, image_size=data.size)
    group = spec.group.with_identity()
    action = ImageAction(group, data.size, **spec.action)
    n, g = len(data), len(group)
    total = n * g

    # Orbit generation alone (all elements, chunked like the evaluator).
    gen_time = timed(lambda: [action(data.images[s:s + 256], [e]) for s in range(0, n, 256) for e in range(g)], 2)
    orbit = torch.cat([action(data.images, [e]) for e in range(g)], 0).reshape(total, *data.images.shape[1:])

    # Bare forward over pre-transformed tensors at the best batch size.
    bare = {}
    with torch.inference_mode():
        model(orbit[:256])
        for bs in (64, 128, 256, 512, 1024):
            def run_all() -> None:
                for i in range(0, total, bs):
                    model(orbit[i:i + bs])
                if dev.type == "cuda":
                    torch.cuda.synchronize()
            bare[bs] = total / timed(run_all, 2)
    best_bs = max(bare, key=bare.get)

    # End to end through the importable command function (plots off).
    def e2e() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            evaluate_run([args.model], "sample:mnist500", [args.group], Path(tmp) / "run", limit=args.samples,
                         batch_size=best_bs, device=args.device, plot_samples="none", plot_metric="confidence",
                         command=["benchmark"], plots=False, amp=args.amp, yes=True, floor=not args.no_floor,
                         random_init=True)  # speed only: a factory's random weights will do
    e2e_rate = total / timed(e2e, 2)

    # Per-image loop like the original NERO: one image, one element, one forward at a time.
    m = min(args.loop_samples, n)
    def loop() -> None:
        with torch.inference_mode():
            for i in range(m):
                for e in range(g):
                    x = action(data.images[i:i + 1], [e])[0]
                    torch.softmax(model(x), -1)
    loop_rate = m * g / timed(loop, 1)

    result = {
        "model": args.model, "device": args.device, "amp": args.amp, "group": spec.canonical, "samples": n, "elements": g, "inputs": total,
        "torch_threads": torch.get_num_threads(),
        "bare_forward_inputs_per_s": {str(k): round(v, 1) for k, v in bare.items()},
        "best_batch_size": best_bs,
        "end_to_end_inputs_per_s": round(e2e_rate, 1),
        "per_image_loop_inputs_per_s": round(loop_rate, 1),
        "end_to_end_over_bare_forward": round(e2e_rate / bare[best_bs], 3),
        "end_to_end_over_per_image_loop": round(e2e_rate / loop_rate, 2),
        "orbit_generation_share_of_forward": round(gen_time / (total / bare[best_bs]), 3),
    }
    print(f"{'measure':44s} value")
    for k in ("bare_forward_inputs_per_s", "best_batch_size", "end_to_end_inputs_per_s", "per_image_loop_inputs_per_s",
              "end_to_end_over_bare_forward", "end_to_end_over_per_image_loop", "orbit_generation_share_of_forward"):
        print(f"{k:44s} {result[k]}")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
