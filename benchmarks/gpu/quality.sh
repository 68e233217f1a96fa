#!/usr/bin/env bash
# On the GPU machine (device tool), after benchmarks/gpu/prepare.sh here:
#   run(command="bash benchmarks/gpu/quality.sh", carry=[".gpu/lc_full"], timeout_s=590)
# Issue #2's quality targets on LC25000 lung with the group split: `recommended` (ResNeXt-50, 224 px) trained on
# half A, threshold chosen on A, accuracy / AUC on half B, beside the histogram and random-init baselines.
# EPOCHS (default 80: ~4 min on an H100 at ~1k img/s) bounds the run; METHODS adds `paper` when time allows.
# Needs no wheels (training imports only torch, torchvision, numpy, PIL, tqdm). CPU smoke test here:
#   OUT=/tmp/o PYTHON=.venv/bin/python DEVICE=cpu SMOKE=1 DATA=../shared/data/lc25000_lung bash benchmarks/gpu/quality.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/hq-gpu-out}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
DATA=${DATA:-.gpu/lc_full}
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
if [ -n "${SMOKE:-}" ]; then
  ARGS=(--methods histogram,random,ours --backbone resnet18 --image-size 64 --epochs 1 --batch-size 16
        --max-images 90 --threshold-pairs 50 --eval-pairs 100)
else
  ARGS=(--methods "${METHODS:-histogram,random,ours}" --preset recommended --backbone resnext50_32x4d
        --epochs "${EPOCHS:-80}")
fi
timeout 570 "$PY" benchmarks/gpu_quality.py --device "$DEVICE" --data "$DATA" "${ARGS[@]}" 2>&1 | tee "$OUT/quality.md"
