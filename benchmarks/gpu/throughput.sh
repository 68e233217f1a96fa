#!/usr/bin/env bash
# On the GPU machine (device tool), after benchmarks/gpu/prepare.sh here:
#   run(command="bash benchmarks/gpu/throughput.sh", carry=[".gpu/whl", ".gpu/lc_small"], timeout_s=560)
# Measures issue #2's training throughput (end-to-end vs bare step vs byol-pytorch 0.8.2) and issue #4's
# ingestion (20k unique 224 px JPEGs -> stored vectors, ResNeXt-50, vs the embed-only ceiling), ~6 min on an H100.
# Results: $OUT/*.md (copied back). CPU smoke test here:
#   OUT=/tmp/o PYTHON=.venv/bin/python SKIP_WHEELS=1 DEVICE=cpu SMOKE=1 bash benchmarks/gpu/throughput.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/hq-gpu-out}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
if [ -z "${SKIP_WHEELS:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl \
    || { echo "wheel install failed" >&2; exit 1; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
if [ -n "${SMOKE:-}" ]; then   # tiny sizes: checks the plumbing, not the numbers
  TRAIN=(--backbone resnet18 --image-size 64 --batch-size 8 --steps 2 --warmup 1 --workers 2)
  INGEST=(--backbone resnet18 --images 30 --synth 60 --batch 16)
else
  TRAIN=(--backbone resnext50_32x4d --image-size 224 --batch-size 128 --steps 40 --warmup 10 --workers 16)
  INGEST=(--backbone resnext50_32x4d --images 600 --synth 20000 --batch 512)
fi
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; "$PY" -c \
  "import torch, torchvision, platform; print(platform.python_version(), torch.__version__, torchvision.__version__)"; } \
  2>&1 | tee "$OUT/machine.txt"
rc=0
timeout 240 "$PY" benchmarks/bench_train_gpu.py --device "$DEVICE" --data .gpu/lc_small "${TRAIN[@]}" 2>&1 \
  | tee "$OUT/train_throughput.md" || rc=1
timeout 300 "$PY" benchmarks/bench_ingest.py --device "$DEVICE" --data .gpu/lc_small --skip-naive "${INGEST[@]}" 2>&1 \
  | grep -v "no microns-per-pixel" | tee "$OUT/ingest_throughput.md" || rc=1
exit $rc
