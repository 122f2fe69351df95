#!/usr/bin/env bash
# Regenerates benchmarks/RESULTS.md (and benchmarks/results/*.json) on a fresh machine, in one command:
#   bash benchmarks/run_all.sh
# About 90 minutes on 2 cores (the first run also builds the peers' environments). Each script can be
# run on its own; each rewrites only its own section of RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d /usr/share/games/fortunes ] || [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fortunes fonts-dejavu-core
fi
python3 -m venv .venv
# torch exports MTCNN (the CPU wheel; any other spec downloads CUDA builds); scikit-image ships lfw_subset
.venv/bin/pip install -q -e '.[dev]' torch==2.13.0 scikit-image
.venv/bin/python benchmarks/calibration.py --repeat 3   # calibration cost vs ORT (about 35 min)
.venv/bin/python benchmarks/cpu.py                     # CPU deployment paths (about 3 min)
.venv/bin/python benchmarks/ppocr_rec.py               # PP-OCRv4 rec: methods and fallback (about 10 min)
.venv/bin/python benchmarks/suite.py                   # peers on real models (about 40 min)
