"""Where a ``nero evaluate`` command's CPU time goes: the command runs in this process with
chosen functions wrapped to count their CPU seconds (``time.process_time``, so this thread and
every other), and prints each one's total and calls, with the whole process's CPU time.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/sweep_parts.py [--parts mod:Class.fn,...] -- evaluate ARGS``
e.g. ``-- evaluate sample:mnist-cnn --data mnist5000.npz -g rotation --batch-size 64 --random-init
--no-floor --no-cache --no-plots -q --out /tmp/run --overwrite`` (the data: ``scale.py``'s tiled
``sample:mnist500``). Nested parts count inside their callers ("orbit less the forward passes" is
the pass loop's own work: the action, the checks, the slicing). A function that the code took a
reference to before the wrapping (a task record's ``prepare``) is not counted.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import importlib
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PARTS = ("nero_cli.runner:ModelRunner.orbit,nero_cli.runner:ModelRunner.raw,orbits.image:ImageAction.__call__,"
         "nero_cli.stream:RunStream.add,nero_cli.csv_rows:RowFormat.text,nero_cli.running:BlockSums.add,"
         "nero_cli.core:Sweep._resampling,nero_cli.run:evaluate_run")
spent: collections.Counter = collections.Counter()
calls: collections.Counter = collections.Counter()


def wrap(path: str) -> None:
    module, _, attr = path.partition(":")
    owner = importlib.import_module(module)
    *outer, name = attr.split(".")
    for n in outer:
        owner = getattr(owner, n)
    fn = getattr(owner, name)

    def counted(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        t = time.process_time()
        try:
            return fn(*args, **kw)
        finally:
            spent[path] += time.process_time() - t
            calls[path] += 1

    setattr(owner, name, counted)


def report(start: float) -> None:
    u = resource.getrusage(resource.RUSAGE_SELF)
    print(f"process CPU {u.ru_utime + u.ru_stime:.3f} s (system {u.ru_stime:.3f}); imports before the run "
          f"{start:.3f} s", file=sys.stderr)
    for k, v in spent.most_common():
        print(f"  {v:8.3f} s {calls[k]:7d} calls  {k}", file=sys.stderr)
    orbit, raw = "nero_cli.runner:ModelRunner.orbit", "nero_cli.runner:ModelRunner.raw"
    if orbit in spent and raw in spent:
        print(f"  {spent[orbit] - spent[raw]:8.3f} s  orbit less the forward passes", file=sys.stderr)


def main() -> None:
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default=PARTS)
    args = ap.parse_args(argv[:cut])
    from nero_cli.cli import main as nero

    for p in args.parts.split(","):
        wrap(p)
    atexit.register(report, time.process_time())
    sys.argv = ["nero", *argv[cut + 1:]]
    nero()


if __name__ == "__main__":
    main()
