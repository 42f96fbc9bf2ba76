"""Gate and plot benchmark (issue 14): peak RSS of ``nero gate --baseline`` and ``nero plot`` against
the size of the runs, read through their vectors and, for the same runs without them (as written
before the vectors), through results.csv.

Usage: ``python benchmarks/gate_memory.py [--sizes 2000,20000] [--pythonpath DIR]``

Each size is two runs of the tiny linear model (``benchmarks/tiny.py``, random weights, seeds 0
and 1) under two names over ``sample:mnist500`` tiled to that many samples, 36 rotation
elements; ``nero gate RUN --baseline BASE`` compares every summary key of both models (1,000
bootstrap resamples, the default) and ``nero plot RUN`` draws the default plots without
thumbnails, each in its own process; peak RSS is ``getrusage(RUSAGE_CHILDREN).ru_maxrss``.
``--pythonpath DIR`` runs the commands with the ``nero_cli`` found in DIR (another checkout,
e.g. the code before a change). Prints a table and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from report_memory import strip_vectors  # noqa: E402
from scale import PROBE, TINY, run_cli, tiled  # noqa: E402


def measure(args: list[str], pythonpath: str | None) -> dict:
    cmd = [sys.executable, "-m", "nero_cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"PYTHONPATH": pythonpath} if pythonpath else {})}
    p = subprocess.run([sys.executable, "-c", PROBE, *cmd], capture_output=True, text=True, cwd=ROOT, env=env)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    if r["code"] not in (0, 1):  # 1: a check failed, which is fine here
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r['stderr']}")
    return {"seconds": round(r["seconds"], 2), "peak_rss_mb": round(r["peak_rss_kb"] / 1024, 1)}


def both(run: Path, base: Path, folder: Path, pythonpath: str | None) -> dict:
    gate = ["gate", str(run), "--baseline", str(base), "--no-config", "--max-regression", "0.5", "--json"]
    plot = ["plot", str(run), "--out", str(folder / "plots"), "--overwrite", "--no-thumbnails", "-q"]
    return {"gate": measure(gate, pythonpath), "plot": measure(plot, pythonpath)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="2000,20000")
    ap.add_argument("--pythonpath", default=None)
    opts = ap.parse_args()
    sizes = [int(s) for s in opts.sizes.split(",")]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="nero-gate-bench-") as tmp:
        folder = Path(tmp)
        for n in sizes:
            runs = {}
            for name, seed in (("run", "0"), ("base", "1")):
                runs[name] = folder / f"{name}{n}"
                run_cli([TINY, TINY, "--name", "a", "--name", "b", "--random-init", "--seed", seed, "--data",
                         str(tiled(n, folder)), "-g", "rotation:step=10"], runs[name], threads=1)
            old = {k: strip_vectors(p, folder / "old" / p.name) for k, p in runs.items()}
            mb = (runs["run"] / "results.csv").stat().st_size / 2**20
            rows[n] = {"vectors": both(runs["run"], runs["base"], folder, opts.pythonpath),
                       "results_csv": both(old["run"], old["base"], folder, opts.pythonpath)}
            for cmd in ("gate", "plot"):
                v, c = rows[n]["vectors"][cmd], rows[n]["results_csv"][cmd]
                print(f"nero {cmd} {n:>7,} samples ({mb:6.1f} MB results.csv): peak RSS {v['peak_rss_mb']:7.1f} MB "
                      f"from the vectors ({v['seconds']:.1f} s), {c['peak_rss_mb']:7.1f} MB from results.csv "
                      f"({c['seconds']:.1f} s)", flush=True)
    lo, hi = sizes[0], sizes[-1]
    if hi != lo:
        for k in ("vectors", "results_csv"):
            for cmd in ("gate", "plot"):
                print(f"nero {cmd}, {k}: peak RSS at {hi:,} / at {lo:,} samples = "
                      f"{rows[hi][k][cmd]['peak_rss_mb'] / rows[lo][k][cmd]['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
