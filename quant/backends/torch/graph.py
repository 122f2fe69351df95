"""quant's own ONNX executor on torch: an nn.Module that runs the graph's nodes in order, keyed by ONNX names.

Why our own and not a converter package: the one pure-Python converter we measured (onnx2torch 1.5.15) names
torchvision in its metadata, and pip then replaces a CPU torch by a CUDA build to satisfy it; it also needed
pre-passes and fixes for ResNet-50 and BERT. Executing the ONNX graph directly keeps every tensor under its
ONNX name (what the Q/DQ plan names), so capture and the emulated Q/DQ need no second naming scheme, and the
whole GPU path needs torch alone.

The module holds the graph's initializers as buffers (so ``.to(device)`` moves them), except small integer
tensors (shapes, axes), which stay on the CPU: an op reading them as Python ints then never waits for the GPU.
``execute`` runs one batch; ``taps[name](tensor)`` sees each named tensor as soon as it is computed, and
``input_hooks[node](args) -> args`` may replace a node's inputs (emulated Q/DQ). Tensors are freed after their
last use. Ops live in ``quant.backends.torch.ops`` and ``ops_shape``; a node with an op (or attribute value)
they do not implement stops conversion with one QuantError naming the op and the node.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from quant.core.errors import QuantError
from quant.core.lazy import require

torch = require("torch")

from quant.backends.torch import ops_shape  # noqa: E402,F401  (registers the shape, resize and Q/DQ ops)
from quant.backends.torch.ops import OPS, Context, Unsupported  # noqa: E402

HINT = "run it on ONNX Runtime instead: --device ort"
_HOST_INTEGERS = 4096  # integer initializers up to this many elements stay on the CPU


@dataclass
class Step:
    name: str
    op: str
    inputs: list[str]  # "" for a missing optional input
    outputs: list[str]
    run: Callable
    frees: tuple[str, ...] = ()  # tensors whose last reader is this step


def attributes(node, opset: int) -> dict:
    """The node's attributes with the defaults of its schema at ``opset`` (strings decoded, tensors as arrays)."""
    from onnx import defs, helper, numpy_helper

    try:
        schema = defs.get_schema(node.op_type, opset, node.domain or "")
    except Exception:  # onnx raises SchemaError for an op it does not know at this opset
        schema = None
    values = {}
    if schema is not None:
        for name, attr in schema.attributes.items():
            if attr.default_value is not None and attr.default_value.name:
                values[name] = helper.get_attribute_value(attr.default_value)
    for attr in node.attribute:
        values[attr.name] = helper.get_attribute_value(attr)
    for name, value in values.items():
        if isinstance(value, bytes):
            values[name] = value.decode("utf-8", "replace")
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            values[name] = [v.decode("utf-8", "replace") for v in value]
        elif hasattr(value, "dims") and hasattr(value, "data_type"):
            values[name] = numpy_helper.to_array(value)
    return values


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


class OnnxGraph(torch.nn.Module):
    """An ONNX graph (opset >= 13) as a torch module; ``forward(*inputs)`` returns the graph outputs."""

    def __init__(self, model) -> None:
        super().__init__()
        from quant.core.onnx_model import to_array

        graph = model.graph
        opset = _opset(model)
        initializer_names = {init.name for init in graph.initializer}
        self.input_names = [v.name for v in graph.input if v.name not in initializer_names]
        self.output_names = [v.name for v in graph.output]
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)
        self._host: dict[str, object] = {}
        self._buffers_by_name: dict[str, str] = {}
        for index, init in enumerate(graph.initializer):
            array = np.asarray(to_array(init))
            tensor = torch.from_numpy(array.copy())  # a copy: the model's arrays stay untouched
            if not tensor.is_floating_point() and tensor.numel() <= _HOST_INTEGERS:
                self._host[init.name] = tensor
            else:
                buffer = f"constant_{index}"
                self.register_buffer(buffer, tensor, persistent=False)
                self._buffers_by_name[init.name] = buffer
        self.steps: list[Step] = []
        self.producers: dict[str, str] = {}  # ONNX tensor -> the node that computes it
        known = set(self.input_names) | initializer_names
        for node in graph.node:
            self.steps.append(self._step(node, opset, known))
            for name in node.output:
                if name:
                    self.producers[name] = node.name
                    known.add(name)
        self._plan_frees()
        self.input_hooks: dict[str, Callable] = {}

    def _step(self, node, opset: int, known: set) -> Step:
        where = f"node '{node.name}'" if node.name else "a node with no name"
        if node.domain not in ("", "ai.onnx"):
            raise QuantError(f"the PyTorch backend has no implementation of the op {node.domain}.{node.op_type} "
                             f"({where})", hint=HINT)
        make = OPS.get(node.op_type)
        if make is None:
            raise QuantError(f"the PyTorch backend has no implementation of the ONNX op {node.op_type} ({where}, "
                             f"opset {opset})", hint=HINT)
        missing = [n for n in node.input if n and n not in known]
        if missing:
            raise QuantError(f"{where} reads '{missing[0]}' before any node computes it (the graph is not in "
                             "topological order)", hint="re-export or re-save the model with onnx.checker passing")
        outputs = list(node.output)
        while outputs and not outputs[-1]:
            outputs.pop()
        context = Context(node.op_type, node.name, len(outputs), lambda: self._anchor.device)
        try:
            run = make(attributes(node, opset), context)
        except Unsupported as exc:
            raise QuantError(f"the PyTorch backend does not implement {exc} ({where}, op {node.op_type})",
                             hint=HINT) from None
        return Step(node.name, node.op_type, list(node.input), outputs, run)

    def _plan_frees(self) -> None:
        last: dict[str, int] = {}
        for index, step in enumerate(self.steps):
            for name in step.inputs:
                if name:
                    last[name] = index
        keep = set(self.output_names) | set(self._host) | set(self._buffers_by_name)
        frees: dict[int, list[str]] = {}
        for name, index in last.items():
            if name not in keep:
                frees.setdefault(index, []).append(name)
        for index, step in enumerate(self.steps):
            step.frees = tuple(frees.get(index, ()))

    def readable(self, name: str) -> bool:
        """Whether ``execute`` can tap ``name``: a graph input, a constant or a node's output."""
        return name in self.producers or name in self._host or name in self._buffers_by_name or name in self.input_names

    def constants(self) -> dict:
        values = dict(self._host)
        for name, buffer in self._buffers_by_name.items():
            values[name] = getattr(self, buffer)
        return values

    def execute(self, feeds: dict, taps: dict[str, Callable] | None = None) -> dict:
        """Run the graph on ``feeds`` (ONNX input name -> tensor); returns the graph outputs by name."""
        taps = taps or {}
        env = self.constants()
        env.update(feeds)
        for name, tap in taps.items():
            if name in env:  # a graph input or a constant
                tap(env[name])
        hooks = self.input_hooks
        for step in self.steps:
            args = [env[name] if name else None for name in step.inputs]
            while args and args[-1] is None:
                args.pop()
            if hooks and step.name in hooks:
                args = hooks[step.name](args)
            try:
                out = step.run(*args)
            except Unsupported as exc:
                raise QuantError(f"the PyTorch backend does not implement {exc} (node '{step.name}', op {step.op})",
                                 hint=HINT) from None
            except (RuntimeError, IndexError, ValueError) as exc:
                raise RuntimeError(f"node '{step.name}' ({step.op}): {str(exc).splitlines()[0] if str(exc) else exc!r}"
                                   ) from None
            values = out if isinstance(out, tuple) else (out,)
            for name, value in zip(step.outputs, values):
                if name:
                    env[name] = value
                    tap = taps.get(name)
                    if tap is not None:
                        tap(value)
            for name in step.frees:
                env.pop(name, None)
        return {name: env[name] for name in self.output_names}

    def forward(self, *inputs):
        outputs = self.execute(dict(zip(self.input_names, inputs)))
        values = tuple(outputs[name] for name in self.output_names)
        return values[0] if len(values) == 1 else values
