"""Emulated INT8 for sensitivity and fallback on ONNX Runtime: one session, Q/DQ switched per layer by feeds.

Sensitivity and fallback score dozens to hundreds of Q/DQ variants of one model (every layer alone, all but
one, the subsets of a search). Building each variant's Q/DQ model and ONNX Runtime session costs more than
scoring it on small held-out sets; so one model is built with every Q/DQ pair of the plan, and each layer
gets a scalar bool input ``quantized_<k>``. A variant is a different feed:

* the layer's weight is a graph input, fed either the FP32 weight or its Q -> DQ value (computed once, as
  ONNX Runtime computes it: quant.backends.fold_qdq), with no copy per run;
* each activation input the layer's Q/DQ rewires (and the residual input of the Add fused into it) reads
  ``If(quantized_<k>)``, whose branches are the Q/DQ pair or the tensor itself (an ``If`` rather than a
  ``Where``: ONNX Runtime's Where with a scalar condition is several times slower than the Q/DQ it selects,
  and a layer in float then computes no Q/DQ at all).

Each weighted op thus computes on the same float32 values as in the variant's own Q/DQ model from
``quant.qdq.build_qdq_model(keep_float=...)``. A weight fed as an input is not pre-packed by ONNX Runtime,
while a constant one would be (another GEMM path, other float rounding): so every emulate session runs
with pre-packing off (see :class:`quant.backends.onnxruntime.OrtRunner`). Outputs are bit-identical to the
per-variant sessions (tests/integration/test_ort_switch.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from quant.core.lazy import require


@dataclass
class Switched:
    """The switched model and what a variant feeds it."""

    model: object  # onnx.ModelProto
    switches: dict[str, str]  # layer node -> its bool input (True: quantized)
    weights: dict[str, tuple[str, np.ndarray, np.ndarray]]  # weight input -> (layer node, float32 value, Q->DQ value)


def switch_model(model, plan, activation_amax: dict[str, float], weight_amax: dict[str, np.ndarray],
                 weight_storage: str = "int8", fold_cache: dict | None = None) -> Switched:
    """The Q/DQ model of every layer, switched per layer by inputs (see the module's docstring).

    Each quantized weight is a graph input of its layer (one per layer where layers share a weight), fed
    the float weight or its Q -> DQ value (folded once, as ONNX Runtime computes it); a weight that cannot be
    folded (a weight that is also a graph input, as IR < 4 lists them) keeps its Q/DQ behind an ``If``, as
    activations do. ``fold_cache`` as in :func:`quant.backends.fold_qdq.fold_constant_qdq`. Consumers of a quantized tensor
    that belong to no layer (nor to a layer's residual Add) keep their Q/DQ unconditionally, as
    ``build_qdq_model`` keeps them whatever ``keep_float`` says.
    """
    from quant.backends.fold_qdq import _fold
    from quant.core.onnx_model import initializers, to_array
    from quant.qdq.insert import build_qdq_model, name_allocator

    onnx = require("onnx")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    quantized, folded = _fold(build_qdq_model(model, plan, activation_amax, weight_amax, weight_storage=weight_storage),
                              fold_cache)
    graph = quantized.graph
    fresh = name_allocator(graph)
    owner = {layer.node: layer.node for layer in plan.layers}
    owner.update({r["node"]: r["layer"] for r in plan.residuals})
    switches = {layer.node: fresh(f"quantized_{index}") for index, layer in enumerate(plan.layers)}
    switched: dict[tuple[str, int], str] = {}  # (node, input index) -> original tensor
    for tensor, consumers in plan.consumers.items():
        for node_name, index in consumers:
            if node_name in owner:
                switched[(node_name, index)] = tensor
    weight_of: dict[tuple[str, int], str] = {}
    nodes_by_name = {n.name: n for n in model.graph.node}
    for layer in plan.layers:
        if layer.weight is not None:
            index = list(nodes_by_name[layer.node].input).index(layer.weight.tensor)
            switched[(layer.node, index)] = weight_of[(layer.node, index)] = layer.weight.tensor

    originals = initializers(model)
    available = {init.name for init in graph.initializer} | {o for n in graph.node for o in n.output} | \
        {i.name for i in graph.input}
    producers = {out: n for n in graph.node for out in n.output}
    types = plan.tensor_types
    selects: dict[tuple[str, str], str] = {}  # (dequantized, switch) -> If output, shared by consumers
    weights: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}
    nodes = []
    for node in graph.node:
        for index, name in enumerate(node.input):
            tensor = switched.get((node.name, index))
            if tensor is None or name == tensor:
                continue
            layer = owner[node.name]
            if (node.name, index) in weight_of and name in folded:
                feed = fresh(f"{tensor}_weight")
                weights[feed] = (layer, to_array(originals[tensor]).astype(np.float32), folded[name])
                node.input[index] = feed
                continue
            switch = switches[layer]
            if (name, switch) not in selects:
                if tensor not in available:  # a float weight build_qdq_model dropped (INT8 weight storage)
                    graph.initializer.append(originals[tensor])
                    available.add(tensor)
                selects[(name, switch)] = fresh(f"{tensor}_switched")
                nodes.append(_select(helper, onnx, fresh, producers, switch, name, tensor, types[tensor],
                                     selects[(name, switch)]))
            node.input[index] = selects[(name, switch)]
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(_live(nodes, {o.name for o in graph.output}))
    used = _read_names(graph)
    for name, value in folded.items():  # folded values no switched input replaced (none from build_qdq_model)
        if name in used:
            graph.initializer.append(numpy_helper.from_array(value, name))
    for switch in switches.values():
        graph.input.append(helper.make_tensor_value_info(switch, onnx.TensorProto.BOOL, []))
    for feed, (_, value, _) in weights.items():
        graph.input.append(helper.make_tensor_value_info(feed, onnx.TensorProto.FLOAT, list(value.shape)))
    return Switched(quantized, switches, weights)


def _select(helper, onnx, fresh, producers, switch: str, dequantized: str, tensor: str, elem_type: int, output: str):
    """``If(switch)``: the Q/DQ nodes that make ``dequantized`` from ``tensor`` (copied into the branch, so a
    layer in float does not compute them), else ``tensor`` itself."""
    chain = [producers[dequantized]]
    if chain[0].input[0] in producers and producers[chain[0].input[0]].op_type == "QuantizeLinear":
        chain.insert(0, producers[chain[0].input[0]])
    renamed, branch = {}, []
    for original in chain:
        copy = onnx.NodeProto()
        copy.CopyFrom(original)
        copy.name = fresh(f"{original.name}_switched")
        for i, name in enumerate(copy.input):
            copy.input[i] = renamed.get(name, name)
        for i, name in enumerate(copy.output):
            copy.output[i] = renamed[name] = fresh(f"{name}_switched")
        branch.append(copy)
    quantized_out, float_out = renamed[dequantized], fresh(f"{tensor}_float")
    then_branch = helper.make_graph(branch, fresh(f"{tensor}_quantized_branch"), [],
                                    [helper.make_tensor_value_info(quantized_out, elem_type, None)])
    else_branch = helper.make_graph([helper.make_node("Identity", [tensor], [float_out], name=fresh(f"{tensor}_Identity"))],
                                    fresh(f"{tensor}_float_branch"), [],
                                    [helper.make_tensor_value_info(float_out, elem_type, None)])
    return helper.make_node("If", [switch], [output], name=fresh(f"{tensor}_If"), then_branch=then_branch,
                            else_branch=else_branch)


def _read_names(graph) -> set[str]:
    """Every name a node of ``graph`` or of its subgraphs (If branches, Loop bodies, at any depth) reads."""
    from quant.qdq.insert import _subgraphs

    return {t for g in [graph, *_subgraphs(graph)] for n in g.node for t in n.input}


def _live(nodes, outputs: set[str]) -> list:
    """``nodes`` without the Q/DQ nodes nothing reads any more (their copies run inside the If branches)."""
    from quant.qdq.insert import subgraph_reads

    outputs = outputs | subgraph_reads(nodes)  # the subgraphs of the nodes, which the pruning does not change
    while True:
        used = {t for n in nodes for t in n.input} | outputs
        kept = [n for n in nodes if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
                or any(o in used for o in n.output)]
        if len(kept) == len(nodes):
            return kept
        nodes = kept


class SwitchedRunner:
    """One emulate session of the switched model; ``set_float(keep_float)`` picks the variant it runs."""

    def __init__(self, switched: Switched) -> None:
        from quant.backends.onnxruntime import OrtRunner

        self._runner = OrtRunner(switched.model, mode="emulate", fold_weights=False)
        self._switched = switched
        self.output_names = self._runner.output_names
        self._feeds: dict[str, np.ndarray] = {}
        self.set_float(frozenset())

    def set_float(self, keep_float: Sequence[str]) -> "SwitchedRunner":
        """Layers in ``keep_float`` (and the residual Adds fused into them) run in float from now on."""
        keep = set(keep_float)
        feeds = {switch: np.array(layer not in keep) for layer, switch in self._switched.switches.items()}
        for feed, (layer, value, quantized) in self._switched.weights.items():
            feeds[feed] = value if layer in keep else quantized
        self._feeds = feeds
        self.variant = frozenset(keep)  # which variant this one object runs now (callers that memoize check it)
        return self

    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        return self._runner.run({**feeds, **self._feeds}, list(outputs) if outputs else self.output_names)


def switchable(result) -> bool:
    """Whether ``result``'s variants can share one switched session with bit-identical outputs: every quantized
    tensor float32 (ONNX Runtime's CPU provider computes float16 ops through inserted Casts, which it places
    differently around an If than around the DequantizeLinear of the variant's own model) and no float16
    rewrite of the written model (--high-precision fp16)."""
    from quant.qdq.float_types import quantized_types

    onnx = require("onnx")
    if result.config.high_precision == "fp16":
        return False
    if not result.plan.tensor_types:
        result.plan.tensor_types = quantized_types(result.model, result.plan)
    return all(t == onnx.TensorProto.FLOAT for t in result.plan.tensor_types.values())


def switched_factory(result, method: str):
    """``make(keep_float) -> runner`` over one switched emulate session of ``result``'s ``method``, built on the
    first call (quant.pipeline.evaluation.qdq_runner_factory's contract: use the runner before the next call)."""
    runner: list[SwitchedRunner] = []

    def make(keep_float: frozenset) -> SwitchedRunner:
        if not runner:
            runner.append(SwitchedRunner(switch_model(result.model, result.plan, result.activation_amax[method],
                                                      result.weight_amax, weight_storage=result.config.weight_storage)))
        return runner[0].set_float(keep_float)

    return make
