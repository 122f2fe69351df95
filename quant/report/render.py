"""Collect what a calibration folder holds (quant.json, histograms, sensitivity, fallback, eval, gate)
and render it as report.md (with plots/*.png) and a self-contained report.html."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from quant.calibrators import get as get_calibrator
from quant.core.errors import QuantError
from quant.core.histogram import load_histograms
from quant.core.io import write_file_atomic
from quant.core.numbers import json_number, percent, shown, sqnr_shown
from quant.eval.gate import format_value
from quant.core.text import printable
from quant.report import plots
from quant.report.escape import md_code, md_text

METHODS = ("minmax", "percentile", "entropy", "mse")
REPORT_INPUTS = ("eval.json", "gate.json", "sensitivity.json", "fallback.json")


def _f(value, spec: str = ".4g") -> str:
    """A number from JSON, where NaN/Inf were written as null; 4 significant digits unless ``spec`` says."""
    return "n/a" if value is None else format(value, spec)


def _pct(value) -> str:
    """A percentage from JSON as eval prints it: 100.00 or 0.00 only when exact."""
    return "n/a" if value is None else percent(value)


def number(value) -> str:
    """A parameter value as a person writes it: 99.99, 2048, 0.0001234, True; text as it is."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return format(value, ".6g")


def parameter_table(parameters) -> str:
    """The method's parameters as a two-column Markdown table (not a Python dict)."""
    if not isinstance(parameters, dict) or not parameters:
        return "Parameters: none."
    rows = ["| parameter | value |", "|---|---|"]
    for key, value in parameters.items():
        shown = ", ".join(number(v) for v in value) if isinstance(value, (list, tuple)) else number(value)
        rows.append(f"| {md_code(str(key), table=True)} | {md_text(shown)} |")
    return "\n".join(rows)


def _load(folder: Path, name: str):
    """A JSON file of the folder, checked for the fields rendered here (None when absent)."""
    from quant.core import readback

    path = folder / name
    if not path.exists():
        return None
    if name == "quant.json":
        return readback.read_quant_json(path)
    specs = {"eval.json": readback.EVAL_SPEC, "gate.json": readback.GATE_SPEC,
             "sensitivity.json": readback.SENSITIVITY_SPEC, "fallback.json": readback.FALLBACK_SPEC}
    return readback.read_report_input(path, specs[name])


def _worst_tensors(histograms, manifest, limit: int) -> list[str]:
    """Tensors where the chosen threshold clips the most of the range (amax / max|x| smallest)."""
    activations = manifest.get("activations", {})
    ratio = {t: (v["amax"] / v["absmax"]) if v.get("absmax") else 1.0 for t, v in activations.items() if t in histograms}
    return sorted(ratio, key=lambda t: ratio[t])[:limit]


def write_report(folder: str | Path, output: str | Path | None = None, worst: int = 6,
                 log=None) -> tuple[Path, Path]:
    """Write report.md, report.html and plots/ into ``output`` (default: the folder). Returns both paths.

    ``log``: called with one line per stage ("report: 6 histogram plots, 1.2 s"), e.g. to print progress."""
    import time

    folder, start = Path(folder), time.perf_counter()

    def stage(text: str) -> None:
        if log is not None:
            log(f"report: {text}, {time.perf_counter() - start:.1f} s")

    manifest = _load(folder, "quant.json")
    if manifest is None and (folder / "summary.json").is_file():  # several methods: the comparison report
        from quant.report.methods import write_methods_report

        paths = write_methods_report(folder, Path(output or folder), worst)
        stage("compared the methods of the folder: done")
        return paths
    if manifest is None:
        raise QuantError(f"'{folder}' is not a quant calibration folder (no quant.json)",
                         hint="pass one method's folder written by 'quant calibrate' or 'quant fallback'")
    out = Path(output or folder)
    bins = (manifest.get("config") or {}).get("bins")
    histograms = load_histograms(folder / "histograms.npz", names=list(manifest.get("activations", {})),
                                 bins=bins if isinstance(bins, int) else None)
    # every input is checked before the first progress line: bad input stays the one Error line on stderr
    found = [name for name in REPORT_INPUTS if _load(folder, name) is not None]
    stage(f"read quant.json, the histograms of {len(histograms)} tensors" + "".join(f", {n}" for n in found))
    sections: list[tuple[str, str, list[tuple[str, bytes]]]] = []  # (title, markdown body, [(png name, bytes)])

    model = manifest["model"]
    body = [f"- model: {md_code(model['path'])} (sha256 {md_code(str(model['sha256'])[:16] + '...')}, "
            f"opset {md_text(model['opset'])})",
            f"- data: {md_code(manifest['data'].get('source'))}, {md_text(manifest['data'].get('samples'))} samples",
            f"- method: **{md_text(manifest['method'])}**",
            f"- quantized layers: {len(manifest['layers'])}, residual Adds: {len(manifest['residual_adds'])}, "
            f"nodes without Q/DQ: {len(manifest['unquantized'])}"]
    floats = [u for u in manifest["unquantized"] if "fallback" in u["reason"]]
    if floats:
        names = ", ".join(md_code(u["node"]) for u in floats)
        body.append(f"- layers kept in float by the fallback: {names}")
    for warning in manifest.get("warnings") or []:
        if isinstance(warning, dict):
            body.append(f"- warning: tensor {md_code(warning.get('tensor'))} {md_text(warning.get('problem'))}")
    body += ["", parameter_table(manifest.get("parameters"))]
    sections.append(("Calibration", "\n".join(body), []))

    table = _metric_table(folder)
    if table:
        sections.append(("FP32 vs INT8", _eval_check(folder, manifest) + table, []))

    stage(f"plotting the histograms of {min(worst, len(histograms))} tensors")
    images = []
    rows = ["| tensor | max abs | " + " | ".join(METHODS) + " |", "|---|---|" + "---|" * len(METHODS)]
    for index, tensor in enumerate(_worst_tensors(histograms, manifest, worst)):
        hist = histograms[tensor]
        thresholds = {m: get_calibrator(m).fit(hist).amax_ for m in METHODS}
        images.append((f"histogram_{index}.png", plots.histogram_plot(tensor, hist.edges, hist.counts, thresholds)))
        stage(f"histogram plot {index + 1}")
        rows.append(f"| {md_code(tensor, table=True)} | {hist.absmax:.4g} | " + " | ".join(f"{thresholds[m]:.4g}" for m in METHODS) + " |")
    sections.append((f"Histograms of the {len(images)} most clipped tensors",
                     "Log-scale |x| histograms with the threshold each method picks (dashed lines).\n\n" + "\n".join(rows),
                     images))

    sensitivity = _load(folder, "sensitivity.json")
    if sensitivity:
        stage(f"sensitivity of {len(sensitivity['layers'])} layers")
        unit = f" ({md_text(sensitivity['unit'])})" if sensitivity.get("unit") else ""
        lines = [f"Metric **{md_text(sensitivity['metric'])}**{unit}: FP32 {json_number(sensitivity, 'fp32')}, all INT8 "
                 f"{json_number(sensitivity, 'all_quantized')}. Rank correlation of the one-pass local SQNR with the "
                 f"exhaustive score: {_f(sensitivity['rank_correlation_one_pass_vs_exhaustive'], '.3f')}.", "",
                 "| rank | layer | only this | all but this | local SQNR (dB) |", "|---|---|---|---|---|"]
        for rank, layer in enumerate(sensitivity["layers"], start=1):
            lines.append(f"| {rank} | {md_code(layer['node'], table=True)} | {json_number(layer, 'only_this')} | "
                         f"{json_number(layer, 'all_but_this')} | {json_number(layer, 'local_sqnr_db', '.2f')} |")
        sections.append(("Per-layer sensitivity", "\n".join(lines),
                         [("sensitivity.png", plots.sensitivity_plot(sensitivity["layers"], sensitivity["metric"]))]))

    fallback = _load(folder, "fallback.json")
    if fallback:
        stage(f"fallback path of {len(fallback['path'])} steps")
        lines = [f"Bound: {md_text(fallback['criterion'])} - {'met' if fallback['passed'] else 'NOT met'} with "
                 f"{len(fallback['float_layers'])} layer(s) in float ({fallback['evaluations']} evaluations"
                 + (f" + {fallback['screen_evaluations']} on the screening subset" if fallback.get("screen_evaluations")
                    else "") + ").", "",
                 "| step | scored on | value | drop | change |", "|---|---|---|---|---|"]
        for step in fallback["path"]:  # the bisect search scores most steps on a subset of the held-out samples
            scored = f"{'subset' if step.get('data') == 'subset' else 'all'} {step.get('samples') or ''}".strip()
            lines.append(f"| {step['step']} | {scored} | {json_number(step, 'value')} | {json_number(step, 'drop')} | "
                         f"{md_text(step['action'])} |")
        if fallback.get("naive_first_last"):
            lines.append("")
            lines.append("Naive search for comparison: " + ", ".join(
                md_text(f"{k.replace('_', ' ')}: {v if v is not None else 'never'}")
                for k, v in fallback["naive_first_last"].items()))
        sections.append(("Fallback path", "\n".join(lines),
                         [("fallback.png", plots.fallback_plot(fallback["path"], fallback["metric"], fallback["fp32"]))]))

    stage("writing report.md and report.html")
    paths = write_report_files(out, f"# quant report: {md_code(folder.name)}", folder.name, sections)
    stage("done")
    return paths


def write_report_files(out: Path, heading: str, title: str, sections) -> tuple[Path, Path]:
    """``out``/report.md (first line ``heading``, Markdown as given) and report.html (``title``, escaped there),
    the plots of ``sections`` [(title, markdown text, [(png name, png bytes)])] in ``out``/plots."""
    (out / "plots").mkdir(parents=True, exist_ok=True)
    md = [heading, ""]
    for section, text, pngs in sections:
        md += [f"## {section}", "", text, ""]
        for name, data in pngs:
            write_file_atomic(out / "plots" / name, data)
            md += [f"![{name}](plots/{name})", ""]
    md_path, html_path = out / "report.md", out / "report.html"
    write_file_atomic(md_path, "\n".join(md).encode("utf-8"))  # UTF-8 whatever the locale (the HTML says so)
    write_file_atomic(html_path, _html(title, sections).encode("utf-8"))
    return md_path, html_path


def _eval_check(folder: Path, manifest: dict) -> str:
    """Warning lines when eval.json names other models than this folder's (also printed to stderr)."""
    import sys

    from quant.report.methods import eval_model_warnings

    evaluation = _load(folder, "eval.json")
    if evaluation is None or not (folder / "model.int8.onnx").is_file():
        return ""
    warnings = eval_model_warnings(evaluation, {manifest.get("method", folder.name): folder / "model.int8.onnx"},
                                   manifest.get("model", {}).get("sha256"))
    for warning in warnings:
        sys.stderr.write(f"warning: {warning.replace('`', '')}\n")
    return "".join(f"**Warning**: {w}\n\n" for w in warnings)


def _metric_table(folder: Path) -> str:
    """FP32 vs INT8 from eval.json (percent, pp) and gate.json (one line per gated metric), each naming its output."""
    evaluation, gate = _load(folder, "eval.json"), _load(folder, "gate.json")
    lines = []
    if evaluation:
        lines += [f"Runtime: {md_text(evaluation['runtime']['int8'])} ({md_text(evaluation['samples'])} held-out samples)."]
        if evaluation.get("task"):  # no labels: no task metric, and no empty table
            lines += ["", "| metric | output | FP32 | INT8 | drop |", "|---|---|---|---|---|"]
        for name, value in evaluation.get("task", {}).items():
            lines.append(f"| {md_text(name)} | {md_code(value['output'], table=True)} | {_pct(value['fp32'])}% | "
                         f"{_pct(value['int8'])}% | {_f(value['drop']) if value['drop'] is None else shown(value['drop'], [0.0], 2)} pp |")
        lines += ["", "| output | shape | agreement | cosine | SQNR (dB) | max abs error |", "|---|---|---|---|---|---|"]
        for name, value in evaluation["outputs"].items():
            agreement = "n/a" if value["agreement"] is None else f"{percent(value['agreement'])}% (axis {value['class_axis']})"
            lines.append(f"| {md_code(name, table=True)} | {md_text(value.get('shape') or '')} | {agreement} | "
                         f"{_f(value['cosine'], '.5f')} | {sqnr_shown(value)} | {_f(value['max_abs_error'], '.4g')} |")
        rows = evaluation.get("user_evaluation") or []
        if rows:
            lines += ["", "| evaluation function | FP32 | INT8 | drop | direction |", "|---|---|---|---|---|"]
            for row in rows:
                name = row["function"] + ("" if row["score"] is None else f"@{row['score']}")
                lines.append(f"| {md_code(name, table=True)} | {_f(row['fp32'])} | {_f(row['int8'])} | "
                             f"{_f(row['drop'])} | {'higher' if row['higher_is_better'] else 'lower'} is better |")
    if gate:
        if gate.get("error"):
            lines += ["", f"Gate: **ERROR**: {md_text(gate['error']['message'])}"]
        for check in gate.get("checks", []):
            on = md_text(check["metric"]) + ("" if check["output"] is None else f"@{md_code(check['output'])}")
            fp32, int8 = (float("nan") if check[k] is None else check[k] for k in ("fp32", "int8"))  # null: n/a
            if check.get("int8_infinite") in ("inf", "-inf"):  # JSON holds no inf: a noiseless SQNR
                int8 = float(check["int8_infinite"])
            lines += ["", f"Gate: **{'PASS' if check['passed'] else 'FAIL'}** on {on}: FP32 "
                          f"{md_text(format_value(fp32, check['unit']))}, INT8 "
                          f"{md_text(format_value(int8, check['unit'], fp32))}; {md_text(check['criterion'])}"]
    return "\n".join(lines).strip()


def _html(title: str, sections) -> str:
    from quant.report.markdown import to_html

    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>quant report: {html.escape(printable(title))}</title>",
             "<style>body{font-family:sans-serif;margin:2em 3%;color:#222}"  # the page's width, not pixels
             "table{border-collapse:collapse;margin:1em 0;max-width:100%}td,th{border:1px solid #ccc;"
             "padding:0.2em 0.6em;font-size:0.85em}code{background:#f4f4f4;overflow-wrap:anywhere}"
             "img{display:block;width:100%;max-width:100%;height:auto}</style></head><body>",
             f"<h1>quant report: <code>{html.escape(printable(title))}</code></h1>"]
    for heading, text, pngs in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(to_html(text))
        for name, data in pngs:
            parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{base64.b64encode(data).decode()}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
