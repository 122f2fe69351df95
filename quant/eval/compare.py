"""Run FP32 and INT8 side by side over held-out data and summarize how far INT8 strays."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from quant.core.errors import QuantError
from quant.core.io import to_jsonable
from quant.eval.metrics import OutputStats, TopK


@dataclass
class EvalReport:
    runtime: str
    runtime_description: str
    samples: int
    outputs: dict[str, dict]
    task: dict[str, dict] = field(default_factory=dict)  # e.g. {"top1": {"fp32":..,"int8":..,"drop_points":..}}
    worst_samples: list[dict] = field(default_factory=list)
    labels_source: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return to_jsonable({"runtime": {"int8": self.runtime, "description": self.runtime_description},
                "samples": self.samples, "labels": self.labels_source, "task": self.task,
                "outputs": self.outputs, "worst_samples": self.worst_samples, "notes": self.notes})

    def format_text(self) -> str:
        lines = [f"INT8 runtime: {self.runtime} - {self.runtime_description}",
                 f"held-out samples: {self.samples}" + (f" (labels: {self.labels_source})" if self.labels_source else "")]
        if self.task:
            lines.append(f"{'metric':<10} {'FP32':>9} {'INT8':>9} {'drop':>11}")
            for name, value in self.task.items():
                lines.append(f"{name:<10} {100 * value['fp32']:>8.2f}% {100 * value['int8']:>8.2f}% "
                             f"{value['drop_points']:>7.2f} pts")
        for name, value in self.outputs.items():
            agreement = "" if value["agreement"] is None else f"argmax agreement {100 * value['agreement']:.2f}%, "
            lines.append(f"output '{name}': {agreement}cosine {value['cosine']:.5f}, SQNR {value['sqnr_db']:.2f} dB, "
                         f"max abs error {value['max_abs_error']:.4g}, mean abs error {value['mean_abs_error']:.4g}")
        if self.worst_samples:
            worst = ", ".join(f"#{w['index']}" + (f" {w['file']}" if w.get("file") else "") + f" ({w['sqnr_db']:.1f} dB)"
                              for w in self.worst_samples)
            lines.append(f"worst samples by SQNR: {worst}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def compare(reference, candidate, batches: Iterable[tuple[list[int], dict[str, np.ndarray]]],
            labels: np.ndarray | None = None, topk: Sequence[int] = (1,), worst: int = 5,
            runtime: str = "", runtime_description: str = "", progress=None) -> EvalReport:
    """Compare two runners (same inputs and outputs) over ``batches``; ``labels`` indexed by sample index."""
    names = reference.output_names
    missing = [n for n in names if n not in candidate.output_names]
    if missing:
        raise QuantError(f"the INT8 model lacks the FP32 model's outputs {missing}",
                         hint="compare an INT8 model made from this FP32 model")
    stats = {name: OutputStats(name) for name in names}
    accuracy = {k: TopK(k) for k in topk} if labels is not None else {}
    order: list[int] = []
    predictions: list[tuple[int, int]] = []
    for indices, feeds in batches:
        ref_out = reference.run(feeds)
        cand_out = candidate.run(feeds, names)
        for name, r, c in zip(names, ref_out, cand_out):
            stats[name].update(r, c)
        first_ref, first_cand = np.asarray(ref_out[0]), np.asarray(cand_out[0])
        if labels is not None:
            if first_ref.ndim != 2:
                raise QuantError(f"labels need a classification output shaped [N, classes]; output '{names[0]}' "
                                 f"has shape {list(first_ref.shape)}", hint="drop --labels to compare outputs only")
            batch_labels = labels[np.asarray(indices)]
            if batch_labels.size and (batch_labels.min() < 0 or batch_labels.max() >= first_ref.shape[1]):
                raise QuantError(f"labels range {batch_labels.min()}..{batch_labels.max()} does not fit the "
                                 f"{first_ref.shape[1]} classes of output '{names[0]}'",
                                 hint="pass integer class indices 0..classes-1 as labels")
            for metric in accuracy.values():
                metric.update(first_ref, first_cand, batch_labels)
        if first_ref.ndim >= 2:
            predictions += list(zip(first_ref.reshape(len(indices), -1).argmax(1).tolist(),
                                    first_cand.reshape(len(indices), -1).argmax(1).tolist()))
        order += list(indices)
        if progress is not None:
            progress.update(len(indices))
    if not order:
        raise QuantError("the held-out data source is empty", hint="point --data at a non-empty data source")
    first = stats[names[0]]
    worst_rows = np.argsort(np.asarray(first.sample_sqnr), kind="stable")[:worst]
    worst_samples = []
    for row in worst_rows:
        entry = {"index": int(order[row]), "sqnr_db": first.sample_sqnr[row]}
        if predictions:
            entry["fp32_class"], entry["int8_class"] = predictions[row]
        if labels is not None:
            entry["label"] = int(labels[order[row]])
        worst_samples.append(entry)
    task = {("top1" if k == 1 else f"top{k}"): m.summary() for k, m in accuracy.items()}
    return EvalReport(runtime, runtime_description, len(order), {n: s.summary() for n, s in stats.items()},
                      task, worst_samples)
