#!/usr/bin/env bash
# Prepare what the GPU machine needs (run HERE, in the repo root, before asking for the device):
#   .gpu/whl        wheels (CPython 3.12, manylinux x86_64) of our dependencies that the device image lacks (~25 MB)
#   .gpu/lc_small   600 LC25000 lung JPEGs (200 per class) for the throughput runs (~6 MB); the ingestion
#                   benchmark multiplies them into unique images on the device (bench_ingest.py --synth)
#   .gpu/lc_full    the whole LC25000 lung set with groups.csv (~53 MB) for the quality run (no wheels needed)
# .gpu/ is git-ignored through .git/info/exclude, so it travels only when `carry` names it. Two device calls,
# each under the 64 MiB carry limit:
#   carry [".gpu/whl", ".gpu/lc_small"]  command: bash benchmarks/gpu/throughput.sh
#   carry [".gpu/lc_full"]               command: bash benchmarks/gpu/quality.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data/lc25000_lung}
PYVER=${PYVER:-3.12}
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/whl .gpu/lc_small .gpu/lc_full
# Not in the device image (see the device tool's KINDS.md package list); versions = this machine's venv.
PKGS=(
  "SQLAlchemy==2.1.9" "alembic==1.20.1" "Mako==1.4.3"
  "pydantic==2.14.4" "pydantic_core==2.50.5" "pydantic-settings==2.16.3" "annotated-types==0.8.0"
  "typing-inspection==0.4.5" "python-dotenv==1.2.4"
  "qdrant-edge-py==0.9.0" "qdrant-client==1.20.0" "redis==8.2.0"
  "byol-pytorch==0.8.2" "beartype"
)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/whl "${PKGS[@]}" 2>&1 | grep -v "^WARNING: Location" || true
for cls in lung_aca lung_n lung_scc; do
  mkdir -p ".gpu/lc_small/$cls" ".gpu/lc_full/$cls"
  find "$DATA/$cls" -name '*.jpeg' | sort | sed -n 1,200p | xargs -I{} cp {} ".gpu/lc_small/$cls/"  # sed reads all: no SIGPIPE
  cp "$DATA/$cls"/*.jpeg ".gpu/lc_full/$cls/"
done
cp "$DATA/groups.csv" .gpu/lc_full/
ls .gpu/whl
du -sh .gpu/whl .gpu/lc_small .gpu/lc_full
