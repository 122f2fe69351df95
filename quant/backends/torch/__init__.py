"""PyTorch backend: the same ONNX graph run with torch on CUDA or the CPU (``--device cuda[:N]|cpu``).

Imported only when a torch device is asked for; ``import quant`` never imports torch.
"""
DEVICE_HELP = ("where FP32 and emulated INT8 run: ort = ONNX Runtime on the CPU (default: installed with quant, "
               "no torch needed, the runtime quant's outputs are checked against); cuda, cuda:N or cpu = the ONNX "
               "graph run with PyTorch (needs torch: pip install 'quant-trt[gpu]'), in IEEE fp32 (TF32 off)")


def device_name(text: str) -> str:
    """'cpu', 'cuda' or 'cuda:N' from ``text`` (case and spaces ignored), checked without importing torch."""
    from quant.core.errors import QuantError

    name = str(text).strip().lower()
    index = name.partition(":")[2]
    if name == "cpu" or name == "cuda" or (name.startswith("cuda:") and index.isdigit()):
        return name
    raise QuantError(f"--device '{text}' is not a device", hint="use ort (ONNX Runtime, the default), cpu, cuda or cuda:N")
