#!/usr/bin/env bash
# 2026-12-01, fourth session: the torch tests on CUDA at the final commit of this stop (after the stranger4a/4b merges), and
# --smooth/--method auto with --device cuda against --device ort on the depthwise test model (tests/models.py: depthwise_spread). Nothing carried.
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
python3 -c "import torch, onnx, onnxruntime; print(torch.__version__, torch.cuda.get_device_name(0), onnx.__version__, onnxruntime.__version__)"
python3 setup.py build_ext --inplace -q >/dev/null 2>&1 || echo "no C accelerator (numpy path)"
python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/integration/test_torch_backend.py \
  tests/integration/test_torch_float16.py tests/integration/test_torch_ops.py tests/integration/test_torch_program.py \
  tests/integration/test_bad_inputs_gpu.py 2>&1 | tail -6
mkdir -p /tmp/dw && python3 - <<'PY'
import numpy as np
from tests.models import depthwise_spread
depthwise_spread("/tmp/dw/m.onnx")
rng = np.random.default_rng(0)
np.savez("/tmp/dw/cal.npz", x=rng.standard_normal((256, 3, 16, 16)).astype(np.float32))
np.savez("/tmp/dw/held.npz", x=rng.standard_normal((64, 3, 16, 16)).astype(np.float32))
PY
for d in cuda ort; do
  python3 -m quant calibrate /tmp/dw/m.onnx --data /tmp/dw/cal.npz --method minmax,auto --smooth --device $d \
    --output /tmp/dw/$d > /tmp/dw/$d.log 2>&1; echo "calibrate --device $d: exit $?"; grep -E '^(collection|smooth|auto):' /tmp/dw/$d.log
done
python3 - <<'PY'
import json
for m in ("minmax", "auto"):
    a, b = (json.load(open(f"/tmp/dw/{d}/{m}/quant.json")) for d in ("cuda", "ort"))
    print(m, "smoothing scales cuda == ort:", a["smoothing"]["layers"] == b["smoothing"]["layers"],
          "| activation amax cuda == ort:", {t: v["amax"] for t, v in a["activations"].items()} ==
          {t: v["amax"] for t, v in b["activations"].items()})
PY
# a folder of several methods is evaluated with --device ort only (refused with --device cuda): one model at a time
for m in minmax auto; do for d in cuda ort; do echo "== eval $m --device $d"
  python3 -m quant eval /tmp/dw/m.onnx /tmp/dw/$d/$m/model.int8.onnx --data /tmp/dw/held.npz --device $d 2>&1 | tail -4
done; done
