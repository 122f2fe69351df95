#!/usr/bin/env bash
# First call on the GPU machine: the backend works there (digits on cuda vs ORT) and a first ResNet-50 timing.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site ../../.whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv
python3 -c "import torch, onnx, onnxruntime, numpy, onnx2torch; print(torch.__version__, torch.cuda.is_available(), onnx.__version__, onnxruntime.__version__, numpy.__version__)"
python3 setup.py build_ext --inplace -q >/dev/null 2>&1 || echo "no C accelerator (numpy path)"
for d in cuda ort; do /usr/bin/time -f "calibrate digits --device $d: %e s" python3 -m quant calibrate examples/digits/model.onnx --data examples/digits/calibration.npz --method entropy,minmax,percentile,mse --output /tmp/d-$d --device $d > /tmp/cal-$d.log; head -2 /tmp/cal-$d.log; done
for m in entropy minmax percentile mse; do cmp /tmp/d-cuda/$m/calibration.cache /tmp/d-ort/$m/calibration.cache && echo "cache $m: cuda == ort"; done
python3 -m quant eval examples/digits/model.onnx /tmp/d-cuda/entropy/model.int8.onnx --data examples/digits/heldout.npz --device cuda | tail -4
python3 -m quant sensitivity examples/digits/model.onnx --calibration /tmp/d-cuda/entropy --data examples/digits/heldout.npz --device cuda -o /tmp/s-cuda | tail -3
python3 -m pytest -q -p no:cacheprovider tests/integration/test_torch_backend.py 2>&1 | tail -15
python3 - <<'PY'
import sys, time; sys.path.insert(0, "benchmarks")
from pathlib import Path
import gpu
files = gpu.build("resnet50", Path("/tmp/bench"))
print("resnet50 sha256", files["model_sha256"])
for i in range(2):
    r = gpu.collection_seconds(files, "cuda"); r.pop("histograms"); print("resnet50 collection", r)
bert = gpu.build("bert-base", Path("/tmp/bench"))
print("bert sha256", bert["model_sha256"])
for i in range(2):
    r = gpu.collection_seconds(bert, "cuda"); r.pop("histograms"); print("bert collection", r)
PY
