"""nero's forward passes against a bare loop over the same inputs, in one process (issue 14).

``scale.py --parts ratios`` compares two processes run a minute apart, and these shared cores change
speed from minute to minute. Here one process, on one thread, takes turns: ``nero evaluate`` as the
command runs it (its ``main``, in this process: the sweep, the checks, the writing; ``import torch``
is already done), timing every call of ``ModelRunner.raw`` (the one place nero calls a model), and
the bare loop (each side first every other round), the model alone over the pre-transformed orbit of
the same samples in batches of the same size. "forward_over_bare" above 1 means nero's forward
passes took more CPU time than the same passes in the bare loop (the caches the sweep's other work
leaves cold, or the machine's minute); "bare_over_total" is the end-to-end ratio without start-up,
and "bare_over_total_with_start_up" charges nero its start-up too: the fixed CPU time of the same
command over one sample in a fresh process (its CPU time less its forward passes': the interpreter,
the imports, the model, the checks, the writing and the exit, as ``scale.py``'s "fixed" part; median
of three), although each run here also loads its model and writes its files, so the charge is a
little more than the start-up. The command's allocator setting (:mod:`nero_cli.heap`, set by its
``main`` in the warm-up run) then holds for the whole process, the bare loop's passes included, as
for ``scale.py``'s "ratio".

Usage: ``python benchmarks/same_process.py [--model sample:mnist-cnn] [--samples 2000] [--group rotation]
[--batch-size 64] [--rounds 3]`` (samples: a multiple of 500; the data is ``scale.py``'s tiled
``sample:mnist500``). Prints each round and the medians, and keeps them in
``benchmarks/same_process.json`` by model, group and samples.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nero_cli.lazy import gc_paused_imports  # noqa: E402

with gc_paused_imports():  # as the command imports torch (nero_cli.cli._run_evaluate)
    import torch  # noqa: E402

    import scale  # noqa: E402
    from nero_cli import runner  # noqa: E402
    from nero_cli.cli import main as nero  # noqa: E402

spent = [0.0]
_raw = runner.ModelRunner.raw


def timed(self, x):  # noqa: ANN001, ANN201
    t = time.process_time()
    try:
        return _raw(self, x)
    finally:
        spent[0] += time.process_time() - t


def run_nero(argv: list[str]) -> tuple[float, float]:
    """CPU seconds of the whole command and of its forward passes."""
    spent[0] = 0.0
    sys.argv = ["nero", *argv]
    t = time.process_time()
    try:
        nero()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    return time.process_time() - t, spent[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sample:mnist-cnn")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--group", default="rotation")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    runner.ModelRunner.raw = timed
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = scale.tiled(args.samples, Path(tmp))
        xs, m, reps, _ = scale._orbit(args.model, args.samples, args.group)
        argv = ["evaluate", args.model, "--data", str(data), "-g", args.group, "--batch-size", str(args.batch_size),
                "--random-init", "--no-floor", "--no-cache", "--no-plots", "-q", "--yes", "--out",
                str(Path(tmp) / "run"), "--overwrite"]
        run_nero(argv)  # warm-up: the first run's imports and one-time set-up
        one = [scale.run_cli([*argv[1:argv.index("--no-cache")], "--limit", "1"], Path(tmp) / "one", threads=1,
                             timed=True) for _ in range(3)]
        start_up = statistics.median(r["cpu"] - r["model_cpu"] for r in one)  # charged to nero

        def bare_loop() -> float:
            t = time.process_time()
            with torch.inference_mode():
                for _ in range(reps):
                    for j in range(0, len(xs), args.batch_size):
                        m(xs[j:j + args.batch_size])
            return time.process_time() - t

        for r in range(args.rounds):  # taking turns, each side first every other round
            if r % 2:
                bare = bare_loop()
                total, forward = run_nero(argv)
            else:
                total, forward = run_nero(argv)
                bare = bare_loop()
            rows.append({"nero_cpu_s": round(total, 2), "nero_forward_cpu_s": round(forward, 2),
                         "bare_cpu_s": round(bare, 2), "forward_over_bare": round(forward / bare, 3),
                         "bare_over_total": round(bare / total, 3),
                         "bare_over_total_with_start_up": round(bare / (total + start_up), 3)})
            print(json.dumps(rows[-1]), flush=True)
    keys = ("forward_over_bare", "bare_over_total", "bare_over_total_with_start_up")
    out = {k: round(statistics.median(r[k] for r in rows), 4) for k in keys}
    result = {"median": out, "start_up_cpu_s": round(start_up, 2), "model": args.model, "samples": args.samples,
              "group": args.group, "batch_size": args.batch_size, "rounds": rows}
    print(json.dumps(result))
    path = Path(__file__).with_name("same_process.json")  # every case measured, by model, group and samples
    saved = json.loads(path.read_text()) if path.exists() else {}
    saved[f"{args.model} {args.group} {args.samples}"] = result
    path.write_text(json.dumps(saved, indent=1) + "\n")


if __name__ == "__main__":
    main()
