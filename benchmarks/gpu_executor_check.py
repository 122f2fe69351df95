"""quant's torch executor vs ONNX Runtime on the GPU machine: FP32 max abs diff, and INT8 vs ORT emulate.

Not a test (tests/integration/test_torch_real_models.py checks the same on the CPU in CI). Models: the ResNet-50-
and BERT-base-shaped graphs of benchmarks/gpu.py, and, where `transformers` is installed (the GPU machine has
it), a Hugging Face BertModel of BERT-base's configuration (random weights, nothing downloaded), exported by
quant's module path (torch.onnx.export, opset 17, dynamic batch).

    python benchmarks/gpu_executor_check.py --device cuda --out $OUT/executor-check.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def _diffs(a_list, b_list, names):
    return {name: {"max_abs_diff": float(np.abs(a.astype(np.float64) - b).max()), "max_abs_ref": float(np.abs(b).max())}
            for name, a, b in zip(names, a_list, b_list)}


def compare(model_path: Path, feeds: dict, calibration: Path | None, device: str) -> dict:
    import quant
    from quant.backends.onnxruntime import OrtRunner
    from quant.backends.torch.runner import TorchRunner
    from quant.core.onnx_model import load_model, normalize

    model = normalize(load_model(model_path))
    names = [o.name for o in model.graph.output]
    start = time.perf_counter()
    torch_runner = TorchRunner(model, device)
    built = time.perf_counter() - start
    out = {"ops": sorted({n.op_type for n in model.graph.node}), "executor_build_s": round(built, 2),
           "fp32_vs_ort": _diffs(torch_runner.run(feeds), OrtRunner(model).run(feeds), names)}
    if calibration is not None:
        result = quant.calibrate(model_path, calibration, methods=("minmax",), device=device)
        qdq = result.qdq_model("minmax")
        on_torch, on_ort = TorchRunner(qdq, device).run(feeds), OrtRunner(qdq, mode="emulate").run(feeds)
        fp32 = OrtRunner(model).run(feeds)
        out["int8_vs_ort_emulate"] = _diffs(on_torch, on_ort, names)
        out["int8_vs_fp32_on_ort"] = _diffs(on_ort, fp32, names)
    return out


def hf_bert(work: Path):
    import onnx
    import torch
    from transformers import BertConfig, BertModel

    from quant.backends.torch.export import export_module

    class Encoder(torch.nn.Module):  # keywords: BertModel's positional parameters differ between versions
        def __init__(self):
            super().__init__()
            self.bert = BertModel(BertConfig(attn_implementation="eager"))

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state

    torch.manual_seed(0)
    model = Encoder().eval()
    example = (torch.zeros(2, 128, dtype=torch.int64), torch.ones(2, 128, dtype=torch.int64))
    path = work / "hf-bert-base.onnx"
    onnx.save(export_module(model, example), str(path))
    rng = np.random.default_rng(5)

    def tokens(count):
        ids = rng.integers(0, 30522, (count, 128), dtype=np.int64)
        mask = (np.arange(128)[None, :] < rng.integers(16, 129, count)[:, None]).astype(np.int64)
        return {"input_ids": ids, "attention_mask": mask}

    np.savez(work / "hf-calibration.npz", **tokens(64))
    return path, tokens(8), work / "hf-calibration.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--work", type=Path, default=Path("/tmp/quant-executor-check"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", default="resnet50,bert-base,hf-bert-base")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    import gpu

    results = {"device": args.device, "machine": gpu.machine(), "models": {}}

    def save():
        args.out.write_text(json.dumps(results, indent=1) + "\n")

    chosen = args.models.split(",")
    for name in [n for n in ("resnet50", "bert-base") if n in chosen]:
        files = gpu.build(name, args.work)
        data = dict(np.load(files["heldout"]))
        feeds = {k: v[:8] for k, v in data.items()}
        try:
            results["models"][name] = compare(Path(files["model"]), feeds, None, args.device)
        except Exception as exc:  # noqa: BLE001 - recorded, the next model still runs
            results["models"][name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(name, json.dumps(results["models"][name]), flush=True)
        save()
    if "hf-bert-base" not in chosen:
        return
    try:
        path, feeds, calibration = hf_bert(args.work)
        results["models"]["hf-bert-base"] = compare(path, feeds, calibration, args.device)
    except ImportError as exc:
        results["models"]["hf-bert-base"] = {"skipped": f"transformers not installed ({exc})"}
    except Exception as exc:  # noqa: BLE001
        results["models"]["hf-bert-base"] = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
    print("hf-bert-base", json.dumps(results["models"]["hf-bert-base"]), flush=True)
    save()


if __name__ == "__main__":
    main()
