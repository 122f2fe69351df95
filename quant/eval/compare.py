"""Run FP32 and INT8 side by side over held-out data and summarize how far INT8 strays."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from quant.core.errors import QuantError
from quant.eval.batch_axis import check_batch_axis
from quant.core.io import to_jsonable
from quant.core.numbers import infinite_text, percent, shown
from quant.eval.metrics import OutputStats, TopK


@dataclass
class EvalReport:
    runtime: str
    runtime_description: str
    samples: int
    outputs: dict[str, dict]
    task: dict[str, dict] = field(default_factory=dict)  # {"top1": {"output", "fp32", "int8" (%), "drop" (pp), ...}}
    worst_samples: list[dict] = field(default_factory=list)
    labels_source: str | None = None
    notes: list[str] = field(default_factory=list)
    worst_output: str = ""
    user_scores: list[dict] = field(default_factory=list)  # --eval-fn: {function, score, higher_is_better, fp32, int8, drop}

    def to_json(self) -> dict:
        from quant.schemas import stamp

        return to_jsonable(stamp("eval", {"runtime": {"int8": self.runtime, "description": self.runtime_description},
                "samples": self.samples, "labels": self.labels_source, "task": self.task,
                "outputs": self.outputs, "worst_samples": self.worst_samples,
                "worst_samples_output": self.worst_output, "notes": self.notes,
                **({"user_evaluation": self.user_scores} if self.user_scores else {})}))

    def format_text(self) -> str:
        lines = [f"INT8 runtime: {self.runtime} - {self.runtime_description}",
                 f"held-out samples: {self.samples}" + (f" (labels: {self.labels_source})" if self.labels_source else "")]
        if self.task:
            lines.append(f"{'metric':<10} {'output':<16} {'FP32':>9} {'INT8':>9} {'drop':>10}")
            for name, value in self.task.items():
                lines.append(f"{name:<10} {_cut(value['output'], 16):<16} {percent(value['fp32']):>8}% "
                             f"{percent(value['int8']):>8}% {shown(value['drop'], [0.0], 2):>7} pp")
            for name, value in self.task.items():
                lines.append(f"{name} scored output '{value['output']}' {value['shape']}, classes on axis "
                             f"{value['class_axis']} ({value['why']})")
        width = min(max([6] + [len(n) for n in self.outputs]), 24)
        lines.append(f"{'output':<{width}} {'shape':<16} {'agreement':>17} {'cosine':>9} {'SQNR dB':>8} "
                     f"{'max abs err':>11} {'mean abs err':>12}")
        notes = []
        for name, value in self.outputs.items():
            if value["agreement"] is None:
                agreement = "n/a"
                notes.append(value["agreement_basis"])
            else:
                agreement = f"{percent(value['agreement'])}% (axis {value['class_axis']})"
                if "positions are not counted" in value["agreement_basis"]:  # FP32 ties (padding) left out
                    notes.append(f"agreement of '{name}': " + value["agreement_basis"].split("; ")[-1])
            lines.append(f"{_cut(name, width):<{width}} {value['shape'] or '':<16} {agreement:>17} {_num(value['cosine'], '.5f'):>9} "
                         f"{_num(value['sqnr_db'], '.2f'):>8} {_num(value['max_abs_error'], '.4g'):>11} "
                         f"{_num(value['mean_abs_error'], '.4g'):>12}")
        lines += user_score_lines(self.user_scores)
        if self.worst_samples:
            worst = ", ".join(f"#{w['index']}" + (f" {w['file']}" if w.get("file") else "") + f" ({w['sqnr_db']:.1f} dB)"
                              for w in self.worst_samples)
            lines.append(f"worst samples by SQNR of output '{self.worst_output}': {worst}")
        lines += [f"note: {n}" for n in notes + self.notes if n]
        return "\n".join(lines)


def user_score_lines(rows: list[dict]) -> list[str]:
    """The table of a user evaluation function's scores: FP32, INT8 and the drop, with the direction."""
    if not rows:
        return []
    labels = [r["function"] if r["score"] is None else f"{r['function']}@{r['score']}" for r in rows]
    width = min(max([16] + [len(label) for label in labels]), 48)
    lines = [f"{'evaluation function':<{width}} {'FP32':>12} {'INT8':>12} {'drop':>12}  direction"]
    for label, row in zip(labels, rows):
        direction = "higher is better" if row["higher_is_better"] else "lower is better"
        label = label if len(label) <= width else "..." + label[3 - width:]  # keep the function's name
        lines.append(f"{label:<{width}} {row['fp32']:>12.6g} {row['int8']:>12.6g} {row['drop']:>12.4g}  "
                     f"{direction}")
    lines.append("the evaluation function ran each model itself on the held-out data (drop > 0: INT8 is worse)")
    return lines


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _num(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _setup(names, first_ref, stats, labels, output_name, requested_axis):
    """Decide, from the first batch, which output labels score and which outputs hold class scores."""
    from quant.eval.outputs import (class_axis, class_scores_reason, find_output, holds_integers, integer_output_error,
                                    label_output, not_class_scores_note, single_class_note)

    shapes = [np.shape(r) for r in first_ref]
    named = find_output(names, output_name, "--output-name") if output_name is not None else None
    if named is not None and holds_integers(first_ref[named]):
        raise integer_output_error("--output-name", output_name)
    label_index, why = (label_output(names, shapes, labels, output_name, first_ref) if labels is not None else (None, ""))
    fits = [i for i, shape in enumerate(shapes) if requested_axis is None or _fits(shape, requested_axis)]
    if requested_axis is not None and not fits:
        class_axis(shapes[named if named is not None else 0], requested_axis)  # raises with the reason
    for index, (name, sample) in enumerate(zip(names, first_ref)):
        shape_axis = class_axis(shapes[index], requested_axis, sample) if index in fits else None
        axis = None if single_class_note(name, shapes[index], shape_axis) else shape_axis  # [N, 1]: cannot fail
        if index == label_index:
            basis = "labels score it"
        elif index == named:
            basis = "named by the user"
        else:
            basis = class_scores_reason(name, np.asarray(sample), axis)
        if basis and axis is not None and not holds_integers(sample):  # an argmax of class indices means nothing
            stats[name].class_axis = axis
            stats[name].class_note = f"class agreement on axis {axis}: {basis}"
        else:
            stats[name].class_note = not_class_scores_note(name, shapes[index], shape_axis)
    return label_index, why


def _fits(shape, axis: int) -> bool:
    return -len(shape) <= axis < len(shape) and (axis % len(shape)) >= 1


def compare(reference, candidate, batches: Iterable[tuple[list[int], dict[str, np.ndarray]]],
            labels: np.ndarray | None = None, topk: Sequence[int] = (1,), worst: int = 5,
            runtime: str = "", runtime_description: str = "", progress=None, output_name: str | None = None,
            class_axis: int | None = None) -> EvalReport:
    """Compare two runners (same inputs and outputs) over ``batches``; ``labels`` indexed by sample index.

    Labels score the output :func:`quant.eval.outputs.label_output` picks (or ``output_name``); argmax
    agreement is scored on ``class_axis`` (default 1) of outputs that hold class scores, n/a elsewhere.
    """
    from quant.eval.outputs import holds_integers, shape_text

    names = reference.output_names
    missing = [n for n in names if n not in candidate.output_names]
    if missing:
        raise QuantError(f"the INT8 model lacks the FP32 model's outputs {missing}",
                         hint="compare an INT8 model made from this FP32 model")
    stats = {name: OutputStats(name) for name in names}
    accuracy = {k: TopK(k) for k in topk} if labels is not None else {}
    order: list[int] = []
    predictions: list[tuple[int, int]] = []
    label_index = why = None
    for indices, feeds in batches:
        ref_out = reference.run(feeds)
        check_batch_axis(names, ref_out, len(indices))
        cand_out = candidate.run(feeds, names)
        if not order:
            label_index, why = _setup(names, ref_out, stats, labels, output_name, class_axis)
            classes = [i for i, n in enumerate(names) if stats[n].class_axis is not None]
            focus = next(i for i in ([label_index] if label_index is not None else [])
                         + ([names.index(output_name)] if output_name is not None else []) + classes
                         + [i for i, r in enumerate(ref_out) if not holds_integers(r)] + [0])
        for name, r, c in zip(names, ref_out, cand_out):
            stats[name].update(r, c)
        if label_index is not None:
            scored_ref, scored_cand = np.asarray(ref_out[label_index]), np.asarray(cand_out[label_index])
            batch_labels = labels[np.asarray(indices)]
            if batch_labels.size and batch_labels.min() < 0:
                raise QuantError(f"labels hold a negative class {batch_labels.min()}",
                                 hint="pass integer class indices 0..classes-1 as labels")
            for metric in accuracy.values():
                metric.update(scored_ref, scored_cand, batch_labels)
        focus_stats = stats[names[focus]]
        if focus_stats.class_axis is not None and np.ndim(ref_out[focus]) == 2:
            predictions += list(zip(np.asarray(ref_out[focus]).argmax(1).tolist(),
                                    np.asarray(cand_out[focus]).argmax(1).tolist()))
        order += list(indices)
        if progress is not None:
            progress.update(len(indices))
    if not order:
        raise QuantError("the held-out data source is empty", hint="point --data at a non-empty data source")
    first = stats[names[focus]]
    per_sample = np.asarray(first.sample_sqnr)
    # a sample whose INT8 output equals FP32's (SQNR +inf) is not among the worst, whatever their number
    worst_rows = [row for row in np.argsort(per_sample, kind="stable")
                  if not np.isnan(per_sample[row]) and per_sample[row] != np.inf][:worst]
    worst_samples = []
    for row in worst_rows:
        entry = {"index": int(order[row]), "sqnr_db": first.sample_sqnr[row]}
        infinite = infinite_text(entry["sqnr_db"])  # only '-inf' here: +inf samples are left out above
        if infinite:
            entry["sqnr_db_infinite"] = infinite
        if predictions:
            entry["fp32_class"], entry["int8_class"] = predictions[row]
        if labels is not None:
            entry["label"] = int(labels[order[row]])
        worst_samples.append(entry)
    task = {}
    for k, metric in accuracy.items():
        scored = stats[names[label_index]]
        task["top1" if k == 1 else f"top{k}"] = {"output": scored.name, "shape": shape_text(scored.shape),
                                                  "class_axis": 1, "why": why, **metric.summary()}
    report = EvalReport(runtime, runtime_description, len(order), {n: s.summary() for n, s in stats.items()},
                        task, worst_samples)
    report.worst_output = first.name
    return report
