#!/usr/bin/env bash
# Regenerates benchmarks/RESULTS.md (and benchmarks/results/*.json) on a fresh machine, in one command:
#   bash benchmarks/run_all.sh
# About an hour on 2 cores, judged from the parts' run times here (calibration grid ~15 min, CPU paths ~3,
# PP-OCR rec ~15, suite ~20 plus ~5 to build the peers' environments the first time). Each script can be
# run on its own and rewrites only its own section of RESULTS.md. For the calibration grid with three
# interleaved runs per tool (the committed table), add --repeat 3 (about 35 min instead of 15).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d /usr/share/games/fortunes ] || [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fortunes fonts-dejavu-core
fi
python3 -m venv .venv
# torch exports MTCNN (the CPU wheel; any other spec downloads CUDA builds); scikit-image ships lfw_subset
.venv/bin/pip install -q -e '.[dev]' torch==2.13.0 scikit-image
.venv/bin/python benchmarks/calibration.py              # calibration cost vs ORT (about 15 min)
.venv/bin/python benchmarks/cpu.py                     # CPU deployment paths (about 3 min)
.venv/bin/python benchmarks/ppocr_rec.py               # PP-OCRv4 rec: methods and fallback (about 10 min)
.venv/bin/python benchmarks/suite.py                   # peers on real models (about 20 min)
