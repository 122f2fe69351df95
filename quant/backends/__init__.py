"""Runtimes that execute models: ONNX Runtime (default, CPU) and TensorRT (engine build, lazily imported)."""
