"""Scale benchmark: end-to-end over bare-forward ratios for several models, peak memory when
the data grows tenfold, and how time grows with samples x elements.

Usage: ``python benchmarks/scale.py`` (about 5 minutes on 2 CPU cores). Prints one table and
writes ``benchmarks/scale.json``. Ratios are measured in one run (absolute rates vary with load).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nero_cli.core import plan_orbits  # noqa: E402
from nero_cli.run import evaluate_run, prepare  # noqa: E402

CASES = [  # name, model, data, group, samples, batch size
    ("sample CNN (MNIST)", "sample:mnist-cnn", "sample:mnist500", "rotation", 500, 64),
    ("ResNet-18-sized (random weights)", "benchmarks/resnet.py:resnet18", "sample:mnist500", "rotation:step=45", 64, 64),
    ("PointNet (shapes)", "sample:pointnet", "sample:shapes200", "viewpoint:axis_step=45,rot_step=45", 200, 256),
    ("FlowNet (PIV)", "sample:flownet", "sample:piv64", "rotation:step=5", 64, 64),
]


def best_of(fn, k: int = 2) -> float:  # noqa: ANN001
    best = math.inf
    for _ in range(k):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def ratio(model: str, data: str, group: str, n: int, batch: int) -> dict:
    p = prepare([model], data, [group], limit=n, device="cpu", random_init=True)  # the ResNet has random weights
    plan = plan_orbits(p.specs)[0]
    action = p.task.make_action(plan.spec, p.dataset)
    g = len(plan.group)
    xs = torch.cat([action(p.dataset.inputs, [e])[0] for e in range(g)])  # the orbit, pre-transformed
    m = p.models[0].module
    with torch.inference_mode():
        m(xs[:batch])
        bare = len(xs) / best_of(lambda: [m(xs[i:i + batch]) for i in range(0, len(xs), batch)])
    gen = best_of(lambda: [action(p.dataset.inputs[s:s + batch], [e]) for s in range(0, n, batch) for e in range(g)])

    def e2e() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            evaluate_run([model], data, [group], Path(tmp) / "run", limit=n, batch_size=batch, device="cpu",
                         random_init=True, plots=False, cache=False, yes=True)
    end = len(xs) / best_of(e2e)
    return {"inputs": len(xs), "bare_per_s": round(bare, 1), "end_to_end_per_s": round(end, 1),
            "ratio": round(end / bare, 3), "orbit_generation_share": round(gen / (len(xs) / bare), 3)}


CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from nero_cli.run import evaluate_run
t = time.perf_counter()
evaluate_run(["sample:mnist-cnn"], sys.argv[2], ["rotation:step=30"], Path(sys.argv[3]), batch_size=128,
             device="cpu", plots=False, cache=False, yes=True)
# VmHWM, not ru_maxrss: the latter can keep the parent's high-water mark across fork + exec
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_mb": hwm / 1024}))
"""


def child(data: Path, out: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(data), str(out)], capture_output=True, text=True,
                       check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    table = {name: ratio(*args) for name, *args in CASES}
    import sample_models

    z = np.load(sample_models.data_path("mnist500"))
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in (1, 4, 10, 20):
            path = Path(tmp) / f"x{k}.npz"
            np.savez(path, images=np.tile(z["images"], (k, 1, 1)), labels=np.tile(z["labels"], k))
            runs[500 * k] = child(path, Path(tmp) / f"run{k}")
    sizes = [500, 2000, 5000, 10000]
    secs = np.array([runs[s]["seconds"] for s in sizes])
    slope = float(np.polyfit(np.log(sizes), np.log(secs), 1)[0])
    # the sweep's own growth: subtract the fixed start-up cost (intercept of a straight-line fit)
    fixed = float(np.polyfit(sizes, secs, 1)[1])
    sweep_slope = float(np.polyfit(np.log(sizes), np.log(np.clip(secs - fixed, 1e-3, None)), 1)[0])
    result = {
        "ratios": table,
        "memory": {"peak_rss_mb_500": round(runs[500]["peak_rss_mb"], 1), "peak_rss_mb_5000": round(runs[5000]["peak_rss_mb"], 1),
                   "growth_10x_samples": round(runs[5000]["peak_rss_mb"] / runs[500]["peak_rss_mb"] - 1, 3)},
        "time": {"samples": sizes, "seconds": [round(runs[s]["seconds"], 2) for s in sizes],
                 "fitted_exponent": round(slope, 3), "fixed_seconds": round(fixed, 2),
                 "fitted_exponent_without_fixed_cost": round(sweep_slope, 3)},
        "torch_threads": torch.get_num_threads(),
    }
    print(f"{'model':36s} {'inputs':>7s} {'bare/s':>9s} {'e2e/s':>9s} {'ratio':>6s} {'orbit gen':>9s}")
    for name, r in table.items():
        print(f"{name:36s} {r['inputs']:7d} {r['bare_per_s']:9.1f} {r['end_to_end_per_s']:9.1f} {r['ratio']:6.3f} "
              f"{r['orbit_generation_share']:9.3f}")
    mem = result["memory"]
    print(f"peak RSS: {mem['peak_rss_mb_500']} MB at 500 samples, {mem['peak_rss_mb_5000']} MB at 5000 "
          f"(+{100 * mem['growth_10x_samples']:.1f} %)")
    tm = result["time"]
    print(f"time vs samples {sizes} (x12 elements): {tm['seconds']} s; fitted exponent {tm['fitted_exponent']} "
          f"(wall), {tm['fitted_exponent_without_fixed_cost']} after the fixed {tm['fixed_seconds']} s start-up")
    out = Path(__file__).with_name("scale.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
