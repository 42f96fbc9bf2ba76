"""What writing costs the kernel on this machine as a file grows (the README's Performance).

Appends 1 MiB blocks to one file in a scratch folder, 100 MiB at a time, and prints the system
and wall seconds of every 100 MiB; then removes the file. On the machines of this project the
system time per 100 MiB rose from 0.02-0.05 s to about 0.4 s after a few hundred MiB (600 MiB
in a first run, sooner in runs right after it: it depends on what the page cache holds).

Usage: ``python benchmarks/write_cost.py [--total-mib 2000] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--total-mib", type=int, default=2000)
    ap.add_argument("--dir", default=None, help="where to write (default: the system's temporary folder)")
    args = ap.parse_args()
    block = b"x" * (1 << 20)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp, open(Path(tmp) / "write_cost.bin", "wb") as fh:
        for step in range(args.total_mib // 100):
            sys0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_stime, time.perf_counter()
            for _ in range(100):
                fh.write(block)
            sys1 = resource.getrusage(resource.RUSAGE_SELF).ru_stime
            print(f"{(step + 1) * 100:>6} MiB: system {sys1 - sys0:.3f} s, wall {time.perf_counter() - t0:.3f} s",
                  flush=True)


if __name__ == "__main__":
    main()
