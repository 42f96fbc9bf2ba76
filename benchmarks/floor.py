#!/usr/bin/env python
"""The resampling floor at 45°: four models built the ways their makers build them.

    python benchmarks/floor.py          # prints the README's table (100 samples of sample:mnist500)

- ring: logits from ring means about the centre (invariant under continuous rotation);
- c8: a C8 group-convolution network (rotated filter bank + group pooling, as e2cnn/escnn);
- c4: the plain CNN's logits averaged over quarter turns (exactly C4-invariant);
- cnn: the plain CNN (sample:mnist-cnn).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nero_cli  # noqa: E402
import sample_models  # noqa: E402
from tests.fixtures.equivariant_models import C8Lifting, GroupAveraged, RingClassifier  # noqa: E402


def main() -> None:
    cnn = sample_models.build_sample("mnist-cnn")
    models = {"ring (continuous-rotation invariant)": RingClassifier(), "c8 (steerable, group pooling)": C8Lifting(),
              "c4 (logit averaging)": GroupAveraged(cnn), "cnn (plain)": cnn}
    print("| model | equivariance_error at 45° | floor at 45° | excess at 45° | error at 90° |")
    print("|---|---|---|---|---|")
    for name, model in models.items():
        t, _ = nero_cli.evaluate(model, "sample:mnist500", "rotation:step=45", limit=100, device="cpu")
        at45, at90 = t[t["angle"] == 45], t[t["angle"] == 90]
        print(f"| {name} | {at45['equivariance_error'].mean():.4f} | {at45['floor'].mean():.4f} | "
              f"{at45['excess_equivariance_error'].mean():.4f} | {at90['equivariance_error'].mean():.2g} |")


if __name__ == "__main__":
    main()
