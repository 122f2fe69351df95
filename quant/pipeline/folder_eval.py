"""Evaluate a calibration folder: every method of a multi-method folder against one FP32 pass, one table.

``quant calibrate --method entropy,minmax,...`` writes one sub-folder per method (each with its
model.int8.onnx) and summary.json. Here the FP32 model runs once over the held-out data and its outputs
are kept (the inputs are not: memory is the FP32 outputs, not the data); every method's INT8 model is then
run on the data read again in the same order and compared with those outputs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from quant.collect.collector import _progress
from quant.core.errors import QuantError
from quant.core.numbers import percent
from quant.core.onnx_model import file_hash

TRT_MODEL = "model.int8.onnx"
FOLDER_FORMAT = "quant-eval-folder/1"


def model_identity(path: str | Path) -> dict:
    """{"path": absolute path, "sha256": digest} of a model file (what eval.json records of each model)."""
    path = Path(path)
    return {"path": str(path.resolve()), "sha256": file_hash(path)}


def folder_methods(folder: str | Path) -> dict[str, Path]:
    """method -> its model.int8.onnx, for a single-method folder ({method: folder/model.int8.onnx}) or a
    multi-method one (one sub-folder per method, listed in summary.json)."""
    folder = Path(folder)
    if (folder / TRT_MODEL).is_file():
        method = _manifest_method(folder) or folder.name
        return {method: folder / TRT_MODEL}
    summary = folder / "summary.json"
    if not summary.is_file():
        raise QuantError(f"'{folder}' holds neither {TRT_MODEL} nor summary.json",
                         hint="pass a folder written by 'quant calibrate', or the INT8 model file itself")
    try:
        methods = json.loads(summary.read_text())["methods"]
        methods = [str(m) for m in methods]
    except (ValueError, KeyError, TypeError) as exc:
        raise QuantError(f"'{summary}' is damaged ({type(exc).__name__}: {exc})",
                         hint="calibrate again into a new folder") from None
    models = {}
    for method in methods:
        path = folder / method / TRT_MODEL
        if not path.is_file():
            raise QuantError(f"'{folder}' lists method '{method}' but has no {method}/{TRT_MODEL}",
                             hint="calibrate with --target tensorrt (or all), or evaluate one model file")
        models[method] = path
    if not models:
        raise QuantError(f"'{summary}' lists no methods", hint="calibrate again into a new folder")
    return models


def _manifest_method(folder: Path) -> str | None:
    try:
        method = json.loads((folder / "quant.json").read_text()).get("method")
    except (OSError, ValueError, AttributeError):
        return None
    return method if isinstance(method, str) else None


class _Replay:
    """A runner that returns the FP32 outputs computed once, batch after batch, in order."""

    def __init__(self, cached) -> None:
        self.output_names = cached.output_names
        self._outputs = iter(cached.fp32_outputs)

    def run(self, feeds, outputs=None):
        values = next(self._outputs, None)
        if values is None:  # more batches than in the FP32 pass: the data did not come back as it was read
            raise RuntimeError("held-out batches changed between the FP32 pass and an INT8 pass")
        return values


@dataclass
class FolderEval:
    """One EvalReport per method, all against the same FP32 outputs."""

    folder: Path
    fp32: dict
    reports: dict  # method -> EvalReport
    int8: dict = field(default_factory=dict)  # method -> model identity

    def to_json(self) -> dict:
        methods = {}
        for method, report in self.reports.items():
            methods[method] = {**report.to_json(), "models": {"fp32": self.fp32, "int8": self.int8[method]}}
        return {"format": FOLDER_FORMAT, "folder": str(self.folder.resolve()),
                "models": {"fp32": self.fp32, "int8": self.int8}, "methods": methods}

    def format_text(self) -> str:
        first = next(iter(self.reports.values()))
        methods = list(self.reports)
        width = max([10] + [len(m) for m in methods])
        lines = [f"INT8 runtime: {first.runtime} - {first.runtime_description}",
                 f"held-out samples: {first.samples}" + (f" (labels: {first.labels_source})" if first.labels_source
                                                        else "") + f"; FP32 run once for {len(methods)} methods"]
        label = max([24] + [len(f"'{n}' agreement") for n in first.outputs])
        lines.append(f"{'metric':<{label}} {'FP32':>{width}} " + " ".join(f"{m:>{width}}" for m in methods))
        for name in first.task:
            row = [f"{percent(self.reports[m].task[name]['int8'])}%" for m in methods]  # already in percent
            title = f"{name}@{first.task[name]['output']}"
            lines.append(f"{title:<{label}} {percent(first.task[name]['fp32']):>{width - 1}}% "
                         + " ".join(f"{v:>{width}}" for v in row))
        for output in first.outputs:
            for key, title, fmt in (("agreement", "agreement", "pct"), ("cosine", "cosine", ".5f"),
                                    ("sqnr_db", "SQNR (dB)", ".2f"), ("max_abs_error", "max abs error", ".4g")):
                values = [self.reports[m].outputs[output][key] for m in methods]
                if all(v is None for v in values):
                    continue
                cells = ["-" if v is None else f"{percent(v)}%" if fmt == "pct" else format(v, fmt) for v in values]
                lines.append(f"{f'{output!r} {title}':<{label}} {'':>{width}} " + " ".join(f"{c:>{width}}" for c in cells))
        best = self.best()
        if best:
            lines.append(f"highest INT8 {best[1]} {best[2]}: {best[0]} (a difference of a few samples is noise)")
        for method in methods:
            worst = self.reports[method].worst_samples[:3]
            if worst:
                lines.append(f"{method} worst samples by SQNR of output '{self.reports[method].worst_output}': "
                             + ", ".join(_sample(w) for w in worst))
        notes = sorted({n for r in self.reports.values() for n in r.notes})
        lines += [f"note: {n}" for n in notes]
        return "\n".join(lines)

    def best(self) -> tuple[str, str, str] | None:
        """(methods, metric, value): highest top-1 when labels were given, else highest SQNR of the output the
        worst samples are taken from (the one --output-name names), or of the first output that has one; every
        method that reaches the highest value is named (a tie is not a winner)."""
        first = next(iter(self.reports.values()))
        if "top1" in first.task:
            values = {m: r.task["top1"]["int8"] for m, r in self.reports.items()}
            metric, shown = "top1", "{}%"
            values_shown = {m: percent(v) for m, v in values.items()}
        else:
            candidates = sorted(first.outputs, key=lambda o: o != first.worst_output)  # the focus output first
            output = next((o for o in candidates
                           if all(r.outputs[o]["sqnr_db"] is not None for r in self.reports.values())), None)
            if output is None:
                return None
            values = {m: r.outputs[output]["sqnr_db"] for m, r in self.reports.items()}
            metric, shown = f"SQNR of output '{output}'", "{} dB"
            values_shown = {m: f"{v:.2f}" for m, v in values.items()}
        top = max(values.values())
        tied = [m for m in self.reports if values[m] == top]
        return ", ".join(tied) + (" (tied)" if len(tied) > 1 else ""), metric, shown.format(values_shown[tied[0]])


def _sample(entry: dict) -> str:
    return f"#{entry['index']}" + (f" {entry['file']}" if entry.get("file") else "") + f" ({entry['sqnr_db']:.1f} dB)"


def name_worst_samples(report, source) -> None:
    """Add the file of each worst sample where the data source knows its files (image folders)."""
    files = getattr(source, "files", None)
    if not files:
        return
    root = getattr(source, "root", None)
    for entry in report.worst_samples:
        index = entry.get("index")
        if isinstance(index, int) and 0 <= index < len(files):
            path = Path(files[index])
            try:
                entry["file"] = str(path.relative_to(root)) if root is not None else str(path)
            except ValueError:
                entry["file"] = str(path)


def evaluate_folder(fp32_model, folder: str | Path, data, labels=None, runtime: str = "emulate",
                    batch_size: int = 32, num_samples: int | None = None, seed: int = 0,
                    input_map: dict[str, str] | None = None, preprocess=None, split: str | None = None,
                    topk: Sequence[int] = (1,), progress: bool = False, output_name: str | None = None,
                    class_axis: int | None = None, device: str | None = "ort") -> FolderEval:
    """Evaluate every method's model.int8.onnx in ``folder`` against one FP32 pass over ``data``."""
    if device not in (None, "ort"):
        raise QuantError("a folder of several methods is evaluated with ONNX Runtime (--device ort)",
                         hint="pass one method's model.int8.onnx with --device, or drop --device")
    from quant.core.onnx_model import load_model
    from quant.eval import compare
    from quant.pipeline.evaluation import RUNTIMES, _held_out_source, int8_runner
    from quant.backends.onnxruntime import OrtRunner

    if runtime == "tensorrt":
        raise QuantError("a calibration folder cannot be evaluated with --runtime tensorrt",
                         hint="pass the .engine file built by 'quant build' as INT8_MODEL")
    models = folder_methods(folder)
    fp32_proto = load_model(fp32_model) if isinstance(fp32_model, (str, Path)) else fp32_model
    from quant.eval.batch_axis import check_declared_batch_axis

    check_declared_batch_axis(fp32_proto)
    runners = {method: int8_runner(path, runtime) for method, path in models.items()}  # checks every model first
    from quant.datasets.recorded import choose_preprocess

    # One collection pass wrote every method, so the first method's quant.json holds the folder's preprocessing.
    preprocess = choose_preprocess(preprocess, next(iter(models.values())))
    held = _held_out_source(fp32_proto, data, labels, num_samples, seed, input_map, preprocess, split, integer=True)
    reference = OrtRunner(fp32_proto, mode="fp32")
    # Only the FP32 outputs are kept (not the inputs): the data is read again for each method, in the same order.
    cached = _Cached(reference.output_names, [reference.run(feeds) for _, feeds in held.batches(batch_size)])
    del reference  # its session and arena
    reports = {}
    for method, runner in runners.items():
        bar = _progress(len(held.indices), progress, f"evaluating {method}")
        try:
            report = compare(_Replay(cached), runner, held.batches(batch_size), labels=held.labels, topk=topk,
                             runtime=runtime, runtime_description=RUNTIMES[runtime], progress=bar,
                             output_name=output_name, class_axis=class_axis)
        finally:
            if bar is not None:
                bar.close()
        report.labels_source = held.label_name
        if runtime in ("ort-int8", "openvino"):
            report.notes.append(runner.integer_kernel_note())
        name_worst_samples(report, held.source)
        reports[method] = report
    fp32_id = model_identity(fp32_model) if isinstance(fp32_model, (str, Path)) else {"path": None, "sha256": None}
    return FolderEval(Path(folder), fp32_id, reports, {m: model_identity(p) for m, p in models.items()})


@dataclass
class _Cached:
    output_names: list
    fp32_outputs: list
