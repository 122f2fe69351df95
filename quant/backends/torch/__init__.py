"""PyTorch backend: the same ONNX graph run with torch on CUDA or the CPU (``--device cuda[:N]|cpu``).

Imported only when a torch device is asked for; ``import quant`` never imports torch.
"""
DEVICE_HELP = ("where FP32 and emulated INT8 run: ort = ONNX Runtime on the CPU (default: installed with quant, "
               "no torch needed, the runtime quant's outputs are checked against); cuda, cuda:N or cpu = the ONNX "
               "graph converted to PyTorch (pip install 'quant[gpu]'), in IEEE fp32 (TF32 off)")
