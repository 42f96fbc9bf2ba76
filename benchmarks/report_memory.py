"""Report benchmark (issue 14): peak RSS of ``nero report`` against the size of the run, read
through the run's vectors and, for the same run without them (as written before the vectors),
through results.csv.

Usage: ``python benchmarks/report_memory.py [--sizes 2000,20000]``

Each size is a run of the tiny linear model (``benchmarks/tiny.py``) under two names over
``sample:mnist500`` tiled to that many samples, 36 rotation elements; the report shows at most
2,000 samples (its default), with PCA only, no thumbnails and no figures, each in its own process;
its peak RSS is ``getrusage(RUSAGE_CHILDREN).ru_maxrss``. Prints a table and the ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from scale import PROBE, TINY, run_cli, tiled  # noqa: E402


def strip_vectors(run: Path, dest: Path) -> Path:
    """A copy of ``run`` as nero wrote runs before the vectors: no vectors/, no run.json entry."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("vectors"))
    info = json.loads((dest / "run.json").read_text())
    info.pop("vectors", None)
    info["files"] = [f for f in info["files"] if not f.startswith("vectors/")]
    (dest / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    return dest


def report(run: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "nero_cli", "report", str(run), "--out", str(out), "--overwrite", "--reduction", "pca",
           "--no-thumbnails", "--no-figures", "-q"]
    p = subprocess.run([sys.executable, "-c", PROBE, *cmd], capture_output=True, text=True, cwd=ROOT)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    if r["code"] != 0:
        raise SystemExit(f"nero report failed: {' '.join(cmd)}\n{r['stderr']}")
    return {"seconds": round(r["seconds"], 2), "peak_rss_mb": round(r["peak_rss_kb"] / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="2000,20000")
    sizes = [int(s) for s in ap.parse_args().sizes.split(",")]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="nero-report-bench-") as tmp:
        folder = Path(tmp)
        for n in sizes:
            run = folder / f"run{n}"
            run_cli([TINY, TINY, "--name", "a", "--name", "b", "--random-init", "--data", str(tiled(n, folder)),
                     "-g", "rotation:step=10"], run, threads=1)
            old = strip_vectors(run, folder / f"old{n}" / f"run{n}")
            mb = (run / "results.csv").stat().st_size / 2**20
            rows[n] = {"results_csv_mb": round(mb, 1), "vectors": report(run, folder / "rep"),
                       "results_csv": report(old, folder / "rep")}
            v, c = rows[n]["vectors"], rows[n]["results_csv"]
            print(f"{n:>7,} samples ({mb:6.1f} MB results.csv): peak RSS {v['peak_rss_mb']:7.1f} MB from the vectors "
                  f"({v['seconds']:.1f} s), {c['peak_rss_mb']:7.1f} MB from results.csv ({c['seconds']:.1f} s)", flush=True)
    lo, hi = sizes[0], sizes[-1]
    if hi != lo:
        for k in ("vectors", "results_csv"):
            print(f"{k}: peak RSS at {hi:,} / at {lo:,} samples = "
                  f"{rows[hi][k]['peak_rss_mb'] / rows[lo][k]['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
