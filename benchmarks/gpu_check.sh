#!/usr/bin/env bash
# The prepared GPU check: one command for a machine with a CUDA GPU.
# Installs nero into the Python that has a CUDA torch, then runs the throughput benchmark on
# CUDA without and with --amp and prints both tables (JSON in benchmarks/gpu_throughput*.json),
# the CUDA tests (the next chunk prefetched through pinned memory on a side stream: tests/
# test_sweep_overhead.py), and issue 14's end to end / bare forward ratios on the device
# (benchmarks/scale.py --parts cuda_ratios, into benchmarks/scale.json).
#   bash benchmarks/gpu_check.sh            # PYTHON=python3.11 to choose the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA device visible to $PY (torch with CUDA is needed)"; exit 1
fi
$PY -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))"
# nero's own dependencies, without touching the CUDA torch already installed
$PY -m pip install -q --no-deps -e . >/dev/null
for pkg in numpy pandas matplotlib typer rich safetensors pillow; do
  $PY -c "import $pkg" 2>/dev/null || $PY -m pip install -q "$pkg"
done
export PYTHONUNBUFFERED=1
echo "== CUDA, float32"
$PY benchmarks/throughput.py --device cuda --samples 500 --out benchmarks/gpu_throughput.json
echo "== CUDA, --amp (bfloat16 autocast)"
$PY benchmarks/throughput.py --device cuda --amp --samples 500 --out benchmarks/gpu_throughput_amp.json
echo "== CUDA tests (prefetch, results against the CPU)"
$PY -m pip install -q pytest >/dev/null 2>&1 || true
$PY -m pytest -q tests/test_sweep_overhead.py -k cuda
echo "== issue 14: end to end / bare forward on CUDA (wall seconds)"
$PY benchmarks/scale.py --parts cuda_ratios
