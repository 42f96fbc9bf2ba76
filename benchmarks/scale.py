"""Scale benchmark (issue 14): peak memory and time against the number of samples, end to end
against the bare forward pass, and the time to the first progress update.

Usage: ``python benchmarks/scale.py [--parts memory,ratios,startup] [--sizes 2000,20000,200000]``
(``--parts cuda_ratios`` on a machine with a CUDA GPU: the ratios in wall seconds on the device;
``benchmarks/gpu_check.sh`` runs it)
Prints the tables and writes ``benchmarks/scale.json`` (each part run is merged into it).

- memory: ``nero evaluate`` of a tiny linear model (``benchmarks/tiny.py``) over ``sample:mnist500``
  tiled to each size, 36 rotation elements, ``--no-cache --no-plots``, each in its own process on
  one thread; its peak RSS is ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` of a probe that only starts
  it (the largest over every run of that size). The time exponent comes from pairs of
  neighbouring sizes run side by side: the larger on one core while the smaller and the same
  command over one sample (start-up, loading, checks, writing) take turns on the other until it
  ends, repeated until the larger has run 60 s, and at least twice. Each size's remainder is its
  mean CPU time less the one-sample run's; the pair's remainder ratio gives its exponent, and the
  ratios chained over the sizes give the slope of log remainder over log samples. Both sides of a
  pair see the same minutes of the machine, whose speed drifts by 10-80 % between minutes here
  (taking turns, or keeping each size's best run, compared different minutes: a long run cannot
  fall inside one fast spell the way a short one can).
- ratios: per model, the bare forward pass (the model alone over the pre-transformed orbit, in
  a fresh process of its own, ``--bare``) against ``nero evaluate`` run as a command over the same
  samples and orbit (a fresh process: start-up, loading, the sweep and writing counted), with
  ``--no-floor`` and with the resampling floor (which adds a forward pass per inexact element:
  "forward_passes" counts them, and "model_share" is the bare time of every pass nero makes over
  nero's time). The nero command keeps freed memory for the next pass (:mod:`nero_cli.heap`),
  which makes a convolutional network's passes faster than a plain script's; "ratio" is against
  the bare pass with that same setting (nero's own overhead, nothing credited to the allocator),
  "ratio_vs_plain_script" against the bare pass with glibc's defaults (what a user sees against
  writing the loop). Both sides run on one thread and are timed in CPU seconds, since wall time on
  shared cores follows the machine's load; the bare pass and nero's command take turns three times
  (the floor's command twice) and each side keeps its best, as these measurements vary by 5 to
  10 % from run to run here ("ratios_of_each_run": every command against the best bare pass).
  Since the machine speeds up and slows down between the two sides, each command also times its
  own forward passes (every call of ``ModelRunner.raw``, in the same process; see ``TIMED``):
  "forward_share_in_process" is their CPU time over the whole command's, start-up and writing
  counted, and "forward_cpu_over_bare" their CPU time over the bare pass's for as many inputs (1:
  nero's forward passes run as fast as the bare loop; above 1, they ran slower, or the machine did).
  nero's own CPU time (the command's less its forward passes') splits into a fixed part (the same
  command over one sample, median of three: interpreter, ``import torch``, the model, the checks)
  and a part per input, so the ratio at any other size follows. The CNN and the ResNet-sized model
  also run at four times the samples (no floor, two rounds), where the fixed part weighs less.
  ``--cases TEXT`` runs only the cases whose name contains TEXT.
  nero's modules are compiled to bytecode first, as an installed package's are.
- startup: seconds from process start to the first progress update of ``nero evaluate
  sample:mnist-cnn --data sample:mnist500 -g rotation --no-cache``, ``python -X importtime -m
  nero_cli evaluate --help``'s total, and ``import torch`` alone (best and median of five).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
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
from nero_cli.prepare import prepare  # noqa: E402
from nero_cli.resampling import inexact  # noqa: E402

TINY = f"{ROOT / 'benchmarks' / 'tiny.py'}:linear"
RESNET = f"{ROOT / 'benchmarks' / 'resnet.py'}:resnet18"
RATIO_CASES = [  # name, model, samples (tiled sample:mnist500), group, batch size, rounds, with the floor too
    ("sample CNN (MNIST)", "sample:mnist-cnn", 5000, "rotation", 64, 3, True),
    ("sample CNN (MNIST), 20,000 samples", "sample:mnist-cnn", 20000, "rotation", 64, 2, False),
    ("ResNet-18-sized (random weights)", RESNET, 500, "rotation:step=45", 64, 3, True),
    ("ResNet-18-sized, 2,000 samples", RESNET, 2000, "rotation:step=45", 64, 2, False),
]
PROBE = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); "
         "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
         "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
         "print(json.dumps({'code': r.returncode, 'seconds': time.perf_counter() - t, 'cpu': u.ru_utime + u.ru_stime, "
         "'peak_rss_kb': u.ru_maxrss, 'stderr': r.stderr[-2000:]}))")
# ``nero evaluate`` with the CPU time of its forward passes (every call of ``ModelRunner.raw``, the
# one place nero calls a model) written to stderr at exit: the model's share of the same process
TIMED = r"""
import atexit, sys, time
from nero_cli.lazy import gc_paused_imports
with gc_paused_imports():  # torch as the command imports it (nero_cli.cli._run_evaluate)
    import nero_cli.runner as runner
spent = [0.0]
raw = runner.ModelRunner.raw
def timed(self, x):
    t = time.process_time()
    try:
        return raw(self, x)
    finally:
        spent[0] += time.process_time() - t
runner.ModelRunner.raw = timed
atexit.register(lambda: print(f"model_cpu={spent[0]:.6f}", file=sys.stderr))
from nero_cli.cli import main
sys.argv = ["nero", *sys.argv[1:]]
main()
"""
FIRST = r"""
import json, os, sys, time
t0 = float(sys.argv[1])
from rich.progress import Progress  # not nero_cli.console: that would import torch before the command does
update = Progress.update
def first(self, task, **kw):  # the first progress update (an advance): report it and stop
    if kw.get("advance"):
        print(json.dumps({"first_progress_s": time.time() - t0}), flush=True)
        os._exit(0)
    return update(self, task, **kw)
Progress.update = first
from nero_cli.cli import main
sys.argv = ["nero", "evaluate", "sample:mnist-cnn", "--data", "sample:mnist500", "-g", "rotation", "--no-cache",
            "--out", sys.argv[2], "--overwrite"]
main()
"""


# ``import torch`` alone as ``nero evaluate`` imports it (the collector paused), seconds in-process
PAUSED = ("import gc, time; gc.disable(); t = time.perf_counter(); import torch; "
          "print(time.perf_counter() - t)")


def tiled(n: int, folder: Path) -> Path:
    """``sample:mnist500`` repeated to ``n`` samples, as an uncompressed ``.npz``."""
    import sample_models

    path = folder / f"mnist{n}.npz"
    if not path.exists():
        z = np.load(sample_models.data_path("mnist500"))
        k = math.ceil(n / len(z["labels"]))
        np.savez(path, images=np.tile(z["images"], (k, 1, 1))[:n], labels=np.tile(z["labels"], k)[:n])
    return path


def start_cli(args: list[str], out: Path, threads: int | None = None, timed: bool = False) -> subprocess.Popen:
    """Start ``nero evaluate ARGS --out OUT`` in a fresh process under :data:`PROBE` (see :func:`run_cli`)."""
    start = ["-c", TIMED] if timed else ["-m", "nero_cli"]
    cmd = [sys.executable, *start, "evaluate", *args, "--no-cache", "--no-plots", "--yes", "-q",
           "--out", str(out), "--overwrite"]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    return subprocess.Popen([sys.executable, "-c", PROBE, *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env=env)


def finish_cli(proc: subprocess.Popen, timed: bool = False) -> dict:
    stdout, _ = proc.communicate()
    r = json.loads(stdout.strip().splitlines()[-1])
    if r["code"] != 0:
        raise SystemExit(f"nero evaluate failed: {' '.join(map(str, proc.args))}\n{r['stderr']}")
    if timed:
        r["model_cpu"] = float(re.findall(r"model_cpu=([0-9.]+)", r["stderr"])[-1])
    return r


def run_cli(args: list[str], out: Path, threads: int | None = None, timed: bool = False) -> dict:
    """``nero evaluate ARGS --out OUT`` in a fresh process: wall and CPU seconds, and the peak RSS
    (``timed``: also the CPU seconds of its forward passes, "model_cpu", see :data:`TIMED`)."""
    return finish_cli(start_cli(args, out, threads, timed), timed)


def memory(sizes: list[int], folder: Path, least_s: float = 60.0) -> dict:
    def args(n: int, *extra: str) -> list[str]:
        return [TINY, "--random-init", "--data", str(tiled(n, folder)), "-g", "rotation:step=10", *extra]

    runs: dict[int, list[dict]] = {n: [] for n in sizes}
    pairs = []
    for small, big in zip(sizes, sizes[1:]):
        # The larger size runs on one core while the smaller size and the one-sample run (start-up,
        # loading, checks, writing) take turns on the other until it ends: both sides see the same
        # minutes of the machine, whose speed drifts by 10-80 % between minutes here. Repeated until
        # the larger side has run `least_s` seconds, and at least twice.
        bigs: list[dict] = []
        smalls: list[dict] = []
        ones: list[dict] = []
        while len(bigs) < 2 or sum(r["seconds"] for r in bigs) < least_s or not (smalls and ones):
            proc = start_cli(args(big), folder / "big", threads=1)
            while proc.poll() is None:
                side = smalls if len(smalls) <= len(ones) else ones
                extra = ["--limit", "1"] if side is ones else []
                side.append(run_cli(args(small, *extra), folder / "small", threads=1))
            bigs.append(finish_cli(proc))
        runs[big] += bigs
        runs[small] += smalls
        pairs.append(_pair(small, big, bigs, smalls, ones))
        print(f"  {small:,} against {big:,} samples, side by side: {pairs[-1]}", flush=True)
    out = {"model": "benchmarks/tiny.py:linear (784 -> 10)", "group": "rotation:step=10 (36 elements)",
           "runs": {str(n): _size_row(n, rs) for n, rs in runs.items()}, "pairs": pairs}
    rss = [out["runs"][str(n)]["peak_rss_mb"] for n in (sizes[0], sizes[-1])]
    out["peak_rss_over_smallest"] = round(rss[1] / rss[0], 3)
    # every size's remainder relative to the smallest's, chained through the pairs; the slope of
    # their log over log samples
    rel = np.cumprod([1.0, *[p["remainder_ratio"] for p in pairs]])
    out["time_exponent"] = round(float(np.polyfit(np.log(sizes), np.log(rel), 1)[0]), 3)
    for n in sizes:
        r = out["runs"][str(n)]
        print(f"  {n:>7,} samples x 36 elements: {r['seconds']:8.1f} s ({r['cpu_seconds']:.1f} s CPU), "
              f"peak RSS {r['peak_rss_mb']} MB (CPU s of each run: {r['cpu_seconds_each']})", flush=True)
    print(f"  time exponent {out['time_exponent']}, peak RSS {out['peak_rss_over_smallest']}x the smallest's",
          flush=True)
    return out


def _pair(small: int, big: int, bigs: list[dict], smalls: list[dict], ones: list[dict]) -> dict:
    """One side-by-side pair: each size's mean CPU seconds less the one-sample run's (its remainder),
    their ratio and its exponent, and the CPU microseconds per row (36 elements a sample)."""
    one = statistics.mean(r["cpu"] for r in ones)
    rest = {small: statistics.mean(r["cpu"] for r in smalls) - one, big: statistics.mean(r["cpu"] for r in bigs) - one}
    ratio = rest[big] / rest[small]
    return {"sizes": [small, big], "one_sample_cpu_s": round(one, 3), "runs": [len(smalls), len(bigs), len(ones)],
            "remainder_cpu_s": [round(rest[small], 3), round(rest[big], 3)], "remainder_ratio": round(ratio, 4),
            "exponent": round(math.log(ratio) / math.log(big / small), 3),
            "cpu_us_per_row": [round(rest[n] / (36 * n) * 1e6, 2) for n in (small, big)]}


def _size_row(n: int, rs: list[dict]) -> dict:
    best = min(rs, key=lambda v: v["cpu"])
    return {"seconds": round(best["seconds"], 2), "cpu_seconds": round(best["cpu"], 2),
            "peak_rss_mb": round(max(v["peak_rss_kb"] for v in rs) / 1024, 1), "rows": n * 36,
            "cpu_seconds_each": [round(v["cpu"], 2) for v in rs],
            "peak_rss_mb_each": [round(v["peak_rss_kb"] / 1024, 1) for v in rs]}


def _orbit(model: str, n: int, group: str) -> tuple[torch.Tensor, torch.nn.Module, int, int]:
    """The orbit of ``sample:mnist500``'s first ``min(n, 500)`` samples, pre-transformed; the model;
    how many times that orbit makes the ``n`` samples' (the tiled data repeats it); the round trips
    of the resampling floor per sample."""
    p = prepare([model], "sample:mnist500", [group], device="cpu", random_init=True)
    plan = plan_orbits(p.specs)[0]
    action = p.task.make_action(plan.spec, p.dataset)
    g = len(plan.group)
    x = p.dataset.inputs[: min(n, len(p.dataset))]
    return torch.cat([action(x, [e])[0] for e in range(g)]), p.models[0].module, n // len(x), len(inexact(action, g))


def best_of(fn, k: int = 2, clock=time.perf_counter) -> float:  # noqa: ANN001
    best = math.inf
    for _ in range(k):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best


def bare_pass(model: str, n: int, group: str, batch: int) -> dict:
    """CPU seconds of the bare loop over the orbit in this (fresh) process, on one thread: first
    with glibc's default allocator settings (a plain script), then with those the nero command sets
    for itself (:mod:`nero_cli.heap`), so nero's own overhead is measured against the same model
    speed. Each after one warm-up batch."""
    from nero_cli import heap

    torch.set_num_threads(1)
    xs, m, reps, trips = _orbit(model, n, group)
    out = {"inputs": len(xs), "reps": reps, "trips": trips}
    with torch.inference_mode():
        for label in ("plain", "kept"):
            if label == "kept":
                heap.allow()  # as the nero command does
                if not heap.keep_freed_memory():
                    break
            m(xs[:batch])
            t = time.process_time()
            for j in range(0, len(xs), batch):
                m(xs[j:j + batch])
            out[label] = time.process_time() - t
    return out


def _bare(model: str, n: int, group: str, batch: int) -> dict:
    p = subprocess.run([sys.executable, __file__, "--bare", json.dumps([model, n, group, batch])], capture_output=True,
                       text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if p.returncode != 0:
        raise SystemExit(f"bare pass failed: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def ratios(folder: Path, only: str = "") -> dict:
    """One thread everywhere and CPU seconds (these cores are shared: wall time follows the load).
    The bare pass (a fresh process, :func:`bare_pass`) and nero's commands take turns, each case's
    ``rounds`` times, and each side keeps its best, so that a slow minute of the machine does not
    fall on one side only. The same command over one sample (median of three) gives nero's fixed
    CPU time, start-up included; the rest of nero's own time is per input."""
    table = {}
    for name, model, n, group, batch, rounds, with_floor in RATIO_CASES:
        if only not in name:
            continue
        args = [model, "--data", str(tiled(n, folder)), "-g", group, "--batch-size", str(batch), "--random-init"]
        bare: dict[str, float] = {"plain": math.inf, "kept": math.inf}
        cases = (("no_floor", ["--no-floor"], rounds), *((("floor", [], 2),) if with_floor else ()))
        runs: dict[str, list[dict]] = {label: [] for label, *_ in cases}
        for i in range(rounds):
            b = _bare(model, n, group, batch)
            orbit, reps, trips = b["inputs"], b["reps"], b["trips"]
            bare = {k: min(v, b.get(k, v)) for k, v in bare.items()}
            for label, extra, k in cases:
                if i < k:
                    runs[label].append(run_cli([*args, *extra], folder / "run", threads=1, timed=True))
        one = [run_cli([*args, "--no-floor", "--limit", "1"], folder / "run", threads=1, timed=True) for _ in range(3)]
        table[name] = _ratio_row(n, orbit, reps, trips, batch, bare, runs)
        table[name]["no_floor"].update(_own_time(sorted(one, key=lambda r: r["cpu"])[1], runs["no_floor"],
                                                 orbit * reps))
        row = table[name]["no_floor"]
        print(f"  {name}: bare {table[name]['bare_per_cpu_s']:,.0f} inputs per CPU s; --no-floor: end to end / bare "
              f"{row['ratio']} (each run: {row['ratios_of_each_run']}), forward passes' share of nero's CPU time "
              f"{row['forward_share_in_process']}; nero's own CPU: {row['fixed_cpu_s']} s fixed + "
              f"{row['own_cpu_us_per_input']} us per input", flush=True)
    return table


def _own_time(one: dict, runs: list[dict], inputs: int) -> dict:
    """nero's own CPU time (the command's less its forward passes') as a fixed part, that of the
    command over one sample, and a part per input, that of the best run less the fixed part."""
    best = min(runs, key=lambda v: v["cpu"])
    fixed = one["cpu"] - one["model_cpu"]
    per = (best["cpu"] - best["model_cpu"] - fixed) / inputs * 1e6
    # below 0 the one-sample run's noise exceeds the per-input part: no figure rather than a wrong one
    return {"fixed_cpu_s": round(fixed, 2), "own_cpu_us_per_input": round(per, 2) if per >= 0 else None}


def _ratio_row(n: int, orbit: int, reps: int, trips: int, batch: int, bare: dict, runs: dict) -> dict:
    plain = orbit / bare["plain"]  # inputs per CPU second
    per_s = orbit / bare["kept"] if math.isfinite(bare["kept"]) else plain  # no glibc: one setting
    inputs = orbit * reps  # the tiled data is this orbit ``reps`` times
    row = {"samples": n, "inputs": inputs, "batch_size": batch, "bare_per_cpu_s": round(per_s, 1),
           "bare_plain_per_cpu_s": round(plain, 1)}
    for label, passes in (("no_floor", inputs), ("floor", inputs + n * trips)):
        if not runs.get(label):
            continue
        r = min(runs[label], key=lambda v: v["cpu"])
        row[label] = {"cpu_seconds": round(r["cpu"], 2), "wall_seconds": round(r["seconds"], 2),
                      "ratio": round(inputs / r["cpu"] / per_s, 3),
                      "ratio_vs_plain_script": round(inputs / r["cpu"] / plain, 3), "forward_passes": passes,
                      "model_share": round(passes / per_s / r["cpu"], 3),
                      "ratios_of_each_run": [round(inputs / v["cpu"] / per_s, 3) for v in runs[label]],
                      "forward_share_in_process": [round(v["model_cpu"] / v["cpu"], 3) for v in runs[label]],
                      "forward_cpu_over_bare": [round(v["model_cpu"] * per_s / passes, 3) for v in runs[label]]}
    return row


def cuda_ratios(folder: Path) -> dict:
    """On a CUDA device, in wall seconds (the device does the work): the bare forward pass over the
    pre-transformed orbit already on the device, against ``nero evaluate --device cuda`` (start-up,
    reading, the chunks' copies to the device, which nero starts a chunk ahead, and writing)."""
    table = {}
    for name, model, n, group, batch, _, with_floor in RATIO_CASES:
        xs, m, reps, trips = _orbit(model, n, group)
        xs, m = xs.cuda(), m.cuda()

        def bare() -> None:
            with torch.inference_mode():
                for i in range(0, len(xs), batch):
                    m(xs[i:i + batch])
            torch.cuda.synchronize()

        bare()
        per_s = len(xs) / best_of(bare)
        inputs = len(xs) * reps
        args = [model, "--data", str(tiled(n, folder)), "-g", group, "--batch-size", str(batch), "--random-init",
                "--device", "cuda"]
        row = {"samples": n, "inputs": inputs, "batch_size": batch, "bare_inputs_per_s": round(per_s, 1)}
        for label, extra, passes in (("no_floor", ["--no-floor"], inputs), ("floor", [], inputs + n * trips)):
            if label == "floor" and not with_floor:
                continue
            r = run_cli([*args, *extra], folder / "run")
            row[label] = {"wall_seconds": round(r["seconds"], 2), "ratio": round(inputs / r["seconds"] / per_s, 3),
                          "forward_passes": passes, "model_share": round(passes / per_s / r["seconds"], 3)}
        table[name] = row
        print(f"  {name} on CUDA: end to end / bare: --no-floor {row['no_floor']['ratio']}"
              + (f", with the floor {row['floor']['ratio']} (model share {row['floor']['model_share']})"
                 if with_floor else ""), flush=True)
    return table


def _stats(values: list[float]) -> dict:
    return {"best": round(min(values), 3), "median": round(statistics.median(values), 3)}


def startup(folder: Path, k: int = 5) -> dict:
    first, imports, torch_only, paused = [], [], [], []
    for _ in range(k):
        t = time.time()
        p = subprocess.run([sys.executable, "-c", FIRST, str(t), str(folder / "first")], capture_output=True,
                           text=True, cwd=ROOT)
        first.append(json.loads(p.stdout.strip().splitlines()[-1])["first_progress_s"])
        p = subprocess.run([sys.executable, "-X", "importtime", "-m", "nero_cli", "evaluate", "--help"],
                           capture_output=True, text=True, cwd=ROOT)
        imports.append(sum(int(m.group(1)) for m in re.finditer(r"import time:\s+(\d+) \|", p.stderr)) / 1e6)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        torch_only.append(time.perf_counter() - t)
        p = subprocess.run([sys.executable, "-c", PAUSED], capture_output=True, text=True, check=True)
        paused.append(float(p.stdout))
    return {"first_progress_s": _stats(first), "evaluate_help_import_s": _stats(imports),
            "import_torch_process_s": _stats(torch_only), "import_torch_as_the_command_s": _stats(paused)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="memory,ratios,startup")
    ap.add_argument("--sizes", default="2000,20000,200000")
    ap.add_argument("--cases", default="", help="ratios: only the cases whose name contains this text")
    ap.add_argument("--bare", help=argparse.SUPPRESS)  # internal: one bare pass, see bare_pass
    args = ap.parse_args()
    if args.bare:
        print(json.dumps(bare_pass(*json.loads(args.bare))))
        return
    # as an installed package would be: every module compiled once (this machine's Python is told
    # not to write bytecode, so each command would compile nero's changed modules again)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "nero_cli", "orbits", "sample_models"], cwd=ROOT,
                   check=True, capture_output=True)
    out = Path(__file__).with_name("scale.json")
    result = json.loads(out.read_text()) if out.exists() else {}
    result = {k: v for k, v in result.items() if k in ("memory", "ratios", "startup", "cuda_ratios")}
    with tempfile.TemporaryDirectory() as tmp:
        for part in args.parts.split(","):
            print(f"== {part}", flush=True)
            if part == "memory":
                result["memory"] = memory([int(s) for s in args.sizes.split(",")], Path(tmp))
            elif part == "ratios":
                result["ratios"] = {**result.get("ratios", {}), **ratios(Path(tmp), args.cases)}
            elif part == "cuda_ratios":
                result["cuda_ratios"] = cuda_ratios(Path(tmp))
            elif part == "startup":
                result["startup"] = startup(Path(tmp))
                print(f"  {result['startup']}", flush=True)
    result["machine"] = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                         "load_average": [round(v, 2) for v in os.getloadavg()]}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
