#!/usr/bin/env python
"""``nero search`` speed: samples per second with every sample's candidates batched into one forward
pass per step, against the same search run one sample at a time.

    python benchmarks/search.py            # sample:mnist-cnn, rotation:step=5, 64 samples of sample:mnist500
    python benchmarks/search.py --device cuda --samples 256
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nero_cli  # noqa: E402
import sample_models  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--group", default="rotation:step=5")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--one-at-a-time", type=int, default=16, help="samples timed one at a time (it is slow)")
    args = ap.parse_args()
    model = sample_models.build_sample("mnist-cnn")
    with np.load(sample_models.data_path("mnist500")) as d:
        pick = np.random.default_rng(0).permutation(len(d["labels"]))[: args.samples]
        images, labels = d["images"][pick], d["labels"][pick]
    opts = {"device": args.device, "refine": 12}
    nero_cli.search(model, images[:2], args.group, labels=labels[:2], **opts)  # warm up
    t0 = time.perf_counter()
    table = nero_cli.search(model, images, args.group, labels=labels, **opts)
    batched = args.samples / (time.perf_counter() - t0)
    k = min(args.one_at_a_time, args.samples)
    t0 = time.perf_counter()
    for i in range(k):
        nero_cli.search(model, images[i:i + 1], args.group, labels=labels[i:i + 1], **opts)
    alone = k / (time.perf_counter() - t0)
    print(f"nero search {args.group}, sample:mnist-cnn, device {args.device}, refine 12, "
          f"median breaking {table['breaking'].median():.3g}")
    print(f"batched over {args.samples} samples: {batched:.1f} samples/s")
    print(f"one sample at a time ({k} samples): {alone:.1f} samples/s")
    print(f"speed-up: {batched / alone:.1f}x")


if __name__ == "__main__":
    main()
