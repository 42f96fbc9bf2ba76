#!/usr/bin/env python
"""``nero search`` speed: samples per second with every sample's candidates batched into one forward
pass per step, against the same search run one sample at a time.

    python benchmarks/search.py            # sample:mnist-cnn, rotation:step=5, 64 samples of sample:mnist500
    python benchmarks/search.py --model digitdet   # the detector, shift (default grid), on sample:digits200
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

#: Per sample model: its data file, the arrays the search reads, its task and default group.
SETUPS = {
    "mnist-cnn": ("mnist500", ("images", "labels"), "classification", "rotation:step=5"),
    "digitdet": ("digits200", ("images", "boxes", "box_labels"), "detection", "shift"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(SETUPS), default="mnist-cnn")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--group", default=None, help="default: rotation:step=5 (mnist-cnn), shift (digitdet)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--one-at-a-time", type=int, default=16, help="samples timed one at a time (it is slow)")
    args = ap.parse_args()
    data_name, keys, task, group = SETUPS[args.model]
    group = args.group or group
    model = sample_models.build_sample(args.model)
    with np.load(sample_models.data_path(data_name)) as d:
        pick = np.random.default_rng(0).permutation(len(d["images"]))[: args.samples]
        arrays = {k: d[k][pick] for k in keys}

    def run(sel: slice) -> object:
        return nero_cli.search(model, {k: v[sel] for k, v in arrays.items()}, group, task=task, device=args.device,
                               refine=12)

    run(slice(0, 2))  # warm up
    t0 = time.perf_counter()
    table = run(slice(None))
    batched = len(pick) / (time.perf_counter() - t0)
    k = min(args.one_at_a_time, len(pick))
    t0 = time.perf_counter()
    for i in range(k):
        run(slice(i, i + 1))
    alone = k / (time.perf_counter() - t0)
    print(f"nero search {group}, sample:{args.model}, device {args.device}, refine 12, "
          f"median breaking {table['breaking'].median():.3g}")
    print(f"batched over {len(pick)} samples: {batched:.1f} samples/s")
    print(f"one sample at a time ({k} samples): {alone:.1f} samples/s")
    print(f"speed-up: {batched / alone:.1f}x")


if __name__ == "__main__":
    main()
