"""Held-out data loaded once, with FP32 outputs cached, so many INT8 variants can be scored cheaply."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quant.eval.batch_axis import check_same_shape
from quant.eval.scoring import Metric


@dataclass
class HeldOut:
    """Batches of held-out inputs, their labels and the FP32 model's outputs (kept in memory)."""

    batches: list[tuple[list[int], dict[str, np.ndarray]]]
    reference: list[list[np.ndarray]]  # FP32 outputs per batch
    labels: np.ndarray | None
    output_names: list[str]
    description: str = ""
    fp32_runner: object = None  # the FP32 model itself, for metrics that run the model (--eval-fn)
    source: object = None  # the DataSource, for an evaluation function's data.column() (ground truth beside the inputs)

    @property
    def samples(self) -> int:
        return sum(len(indices) for indices, _ in self.batches)

    def bind(self, metric: Metric) -> Metric:
        """Resolve which output ``metric`` scores (once), from the output names and the first FP32 batch."""
        if metric.output_index is None and metric.output_name is None and not metric.basis and self.reference:
            metric.resolve(self.output_names, self.reference[0], self.labels)
        return metric

    def score(self, runner, metric: Metric) -> float:
        """The metric of ``runner``'s outputs (vs labels and the cached FP32 outputs)."""
        if getattr(metric, "whole_model", False):  # a user evaluation function runs the model itself
            return metric.evaluate(runner, self, "INT8")
        self.bind(metric)
        state = metric.start()
        for (indices, feeds), reference in zip(self.batches, self.reference):
            outputs = runner.run(feeds, self.output_names)
            self._check_shapes(metric, outputs, reference)
            metric.update(state, outputs, reference, None if self.labels is None else self.labels[np.asarray(indices)])
        return metric.finish(state)

    def _check_shapes(self, metric: Metric, outputs, reference) -> None:
        """The output the metric scores (every output for a function given them all) has FP32's shape."""
        scored = range(len(reference)) if metric.output_index is None else [metric.output_index]
        for index in scored:
            check_same_shape(self.output_names[index], reference[index], outputs[index])

    def fp32_score(self, metric: Metric) -> float:
        if getattr(metric, "whole_model", False):
            if self.fp32_runner is None:
                raise RuntimeError("HeldOut.fp32_runner is needed to score FP32 with an evaluation function")
            return metric.evaluate(self.fp32_runner, self, "FP32")
        self.bind(metric)
        state = metric.start()
        for (indices, _), reference in zip(self.batches, self.reference):
            metric.update(state, reference, reference, None if self.labels is None else self.labels[np.asarray(indices)])
        return metric.finish(state)

    def run(self, runner) -> list[list[np.ndarray]]:
        """``runner``'s outputs for every batch (one pass; keep them to score several metrics)."""
        return [runner.run(feeds, self.output_names) for _, feeds in self.batches]

    def score_outputs(self, outputs: list[list[np.ndarray]], metric: Metric) -> float:
        """The metric of outputs computed by :meth:`run` (vs labels and the cached FP32 outputs)."""
        self.bind(metric)
        state = metric.start()
        for (indices, _), batch, reference in zip(self.batches, outputs, self.reference):
            self._check_shapes(metric, batch, reference)
            metric.update(state, batch, reference, None if self.labels is None else self.labels[np.asarray(indices)])
        return metric.finish(state)
