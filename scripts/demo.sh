#!/usr/bin/env bash
# Install HistoQuery into .venv (if needed) and run the demo on the embedded default:
# train the cpu-texture preset on the shipped sample (GPU preset when CUDA is present), ingest it into embedded
# Qdrant + SQLite, calibrate and evaluate the same/different threshold, print a report and start the dashboard.
# A second run reuses the checkpoint and the ingested data. Extra arguments go to `histoquery demo`
# (e.g. `bash scripts/demo.sh --no-dashboard`, `bash scripts/demo.sh --data /path/to/labeled/folder`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ! .venv/bin/python -c "import torch, torchvision, cli.main" >/dev/null 2>&1 \
   || ! .venv/bin/python -m pip show histoquery >/dev/null 2>&1; then
  echo "==> installing torch and HistoQuery into .venv (first run only)"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q -e . 2>&1 | grep -v "^WARNING: Location" || true
fi
exec .venv/bin/histoquery demo "$@"
