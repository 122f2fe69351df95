"""The report of a multi-method calibration folder (one sub-folder per method + summary.json), and the check
that an eval.json was measured on the models of the folder it sits in."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from quant.core.errors import QuantError
from quant.core.numbers import json_number, percent, sqnr_shown
from quant.core.onnx_model import file_hash
from quant.report.escape import md_code

TRT_MODEL = "model.int8.onnx"


def md_name(name, table: bool = True) -> str:
    """A model/tensor/file name as a Markdown code span that shows it exactly (backticks included) and cannot break
    out of it or of a table cell (quant.report.escape.md_code; ``table=False`` outside a pipe table)."""
    return md_code(name, table=table)


def _load(path: Path):
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError) as exc:
        raise QuantError(f"cannot read '{path}': {exc}", hint="remove the damaged file or write it again") from None


def _sha(path: Path) -> str | None:
    return file_hash(path) if path.is_file() else None


def eval_model_warnings(evaluation: dict, int8_models: dict[str, Path], fp32_sha256: str | None) -> list[str]:
    """Warnings when eval.json names models other than the folder's (or names none)."""
    models = evaluation.get("models") if isinstance(evaluation, dict) else None
    if not isinstance(models, dict):
        return ["eval.json does not name the models it compared (written by an older quant, or by hand): the "
                "numbers below may not belong to this folder's models"]
    warnings = []
    fp32 = models.get("fp32") or {}
    if fp32_sha256 and isinstance(fp32, dict) and fp32.get("sha256") and fp32["sha256"] != fp32_sha256:
        warnings.append(f"eval.json compared FP32 model {md_name(fp32.get('path'), table=False)}, not the model this folder was "
                        "calibrated from (sha256 differs)")
    int8 = models.get("int8") or {}
    if "sha256" in int8 and len(int8_models) == 1:  # a single-model eval.json
        int8 = {next(iter(int8_models)): int8}
    for method, path in int8_models.items():
        entry = int8.get(method) if isinstance(int8, dict) else None
        actual = _sha(path)
        if not isinstance(entry, dict) or entry.get("sha256") is None:
            warnings.append(f"eval.json has no result for {md_name(path.relative_to(path.parents[1]), table=False)}")
        elif entry["sha256"] != actual:
            warnings.append(f"eval.json was measured on {md_name(entry.get('path'), table=False)}, not on this folder's "
                            f"{md_name(path.name, table=False)} of {md_name(method, table=False)} (sha256 differs)")
    return warnings


def _cell(entry: dict, key: str, fmt: str) -> str:
    """One method's value of an output metric: '-' where there is none, inf where JSON wrote an infinity as null."""
    if fmt == "pct" and entry.get(key) is not None:
        return f"{percent(entry[key])}%"
    text = json_number(entry, key, fmt)
    return "-" if text == "n/a" else text


def _eval_table(evaluation: dict, methods: list[str]) -> list[str]:
    results = evaluation.get("methods", {})
    shown = [m for m in methods if m in results]
    if not shown:
        return []
    first = results[shown[0]]
    lines = [f"Runtime: {first['runtime']['int8']}, {first['samples']} held-out samples, FP32 run once for all "
             "methods.", "", "| metric | FP32 | " + " | ".join(md_name(m) for m in shown) + " |",
             "|---|---|" + "---|" * len(shown)]
    for name, value in first.get("task", {}).items():
        cells = [f"{percent(results[m]['task'][name]['int8'])}%" for m in shown]  # eval.json holds percent
        label = f"{name}@{value['output']}" if value.get("output") is not None else name  # as the CLI prints it
        lines.append(f"| {md_name(label)} | {percent(value['fp32'])}% | " + " | ".join(cells) + " |")
    for output in first.get("outputs", {}):
        for key, title, fmt in (("agreement", "agreement", "pct"), ("cosine", "cosine", ".5f"),
                                ("sqnr_db", "SQNR (dB)", ".2f")):
            cells = [_cell(results[m]["outputs"][output], key, fmt) for m in shown]
            if all(c == "-" for c in cells):
                continue
            lines.append(f"| output {md_name(output)} {title} | | " + " | ".join(cells) + " |")
    worst = [f"{md_name(m, table=False)}: " + ", ".join(f"#{w['index']}" + (f" {md_name(w['file'], table=False)}" if w.get("file") else "")
                                           + f" ({sqnr_shown(w, '.1f')} dB)" for w in results[m].get("worst_samples", [])[:3])
             for m in shown if results[m].get("worst_samples")]
    if worst:
        lines += ["", "Worst samples by SQNR:", ""] + [f"- {w}" for w in worst]
    return lines


def write_methods_report(folder: Path, output: Path, worst: int = 6):
    """report.md / report.html / plots for a multi-method folder; returns (md path, html path)."""
    from quant.calibrators import get as get_calibrator
    from quant.core.histogram import load_histograms
    from quant.report import plots
    from quant.report.render import write_report_files

    summary = _load(folder / "summary.json")
    try:
        methods = [str(m) for m in summary["methods"]]
        activations = summary["activations"]
    except (KeyError, TypeError) as exc:
        raise QuantError(f"'{folder / 'summary.json'}' is damaged ({type(exc).__name__}: {exc})",
                         hint="calibrate again into a new folder") from None
    manifests = {m: _load(folder / m / "quant.json") for m in methods}
    present = [m for m in methods if manifests[m] is not None]
    if not present:
        raise QuantError(f"'{folder}' lists methods {methods} but holds none of their folders",
                         hint="pass a folder written by 'quant calibrate --method a,b'")
    manifest = manifests[present[0]]
    model = manifest.get("model", {})
    data = summary.get("data", {})
    sections = [("Calibration", "\n".join([
        f"- model: {md_name(model.get('path'), table=False)} (sha256 `{str(model.get('sha256'))[:16]}...`)",
        f"- data: {md_name(data.get('source'), table=False)}, {data.get('samples')} samples",
        f"- methods (one collection pass): {', '.join(md_name(m, table=False) for m in methods)}",
        f"- quantized layers: {len(manifest.get('layers', []))}"]), [])]

    evaluation = _load(folder / "eval.json")
    if evaluation is not None:
        int8_models = {m: folder / m / TRT_MODEL for m in present}
        warnings = eval_model_warnings(evaluation, int8_models, model.get("sha256"))
        for warning in warnings:
            sys.stderr.write(f"warning: {warning.replace('`', '')}\n")
        lines = [f"**Warning**: {w}" for w in warnings]
        lines += ([""] if lines else []) + (_eval_table(evaluation, methods) or
                                            ["eval.json holds no per-method results (evaluate the folder itself: "
                                             "`quant eval FP32 DIR --output-json DIR/eval.json`)."])
        sections.append(("FP32 vs INT8 by method", "\n".join(lines), []))

    spread = {}
    for tensor, values in activations.items():
        amaxes = [values[m] for m in methods if isinstance(values.get(m), (int, float)) and values[m] > 0]
        if len(amaxes) == len(methods):
            spread[tensor] = max(amaxes) / min(amaxes)
    ranked = sorted(spread, key=lambda t: -spread[t])[:worst]
    rows = ["| tensor | max abs | " + " | ".join(md_name(m) for m in methods) + " | max/min |",
            "|---|---|" + "---|" * (len(methods) + 1)]
    images = []
    histograms = load_histograms(folder / present[0] / "histograms.npz")
    for index, tensor in enumerate(ranked):
        values = activations[tensor]
        rows.append(f"| {md_name(tensor)} | {values.get('absmax', float('nan')):.4g} | "
                    + " | ".join(f"{values[m]:.4g}" for m in methods) + f" | {spread[tensor]:.2f} |")
        if tensor in histograms:
            hist = histograms[tensor]
            thresholds = {m: float(values[m]) for m in methods}
            images.append((f"methods_histogram_{index}.png", plots.histogram_plot(tensor, hist.edges, hist.counts,
                                                                                  thresholds)))
    if ranked:
        sections.append((f"Where the methods disagree most ({len(ranked)} tensors)",
                         "amax per method (the range each maps to +-127), largest ratio first; the histograms show "
                         "each method's threshold.\n\n" + "\n".join(rows), images))

    return write_report_files(output, f"# quant report: {md_code(folder.name)} (methods compared)",
                              f"{folder.name} (methods compared)", sections)
