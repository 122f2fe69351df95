"""Every JSON file quant writes validates against its schema (quant/schemas/*.schema.json), says which schema
and format version it follows, and uses one convention for units: percent for top-k and agreement, pp for
their absolute drops."""
import json

import jsonschema
import numpy as np
import pytest

import quant
from conftest import run_cli
from quant.schemas import FORMAT_VERSION, KINDS, load_schema, schema_id


def _validate(kind, document):
    jsonschema.Draft202012Validator(load_schema(kind)).validate(document)
    assert document["schema"] == schema_id(kind) and document["format_version"] == FORMAT_VERSION


@pytest.mark.parametrize("kind", KINDS)
def test_schemas_are_valid_json_schemas(kind):
    schema = load_schema(kind)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"] == schema_id(kind)


@pytest.fixture(scope="module")
def artifacts(digits, tmp_path_factory):
    root = tmp_path_factory.mktemp("schemas")
    proc = run_cli(["calibrate", digits["model"], "--data", digits["calibration"], "--method", "minmax,entropy",
                    "--output", root / "cal"])
    assert proc.returncode == 0, proc.stderr
    folder = root / "cal" / "minmax"
    steps = [
        ["eval", digits["model"], folder / "model.int8.onnx", "--data", digits["heldout"],
         "--output-json", folder / "eval.json"],
        ["gate", digits["model"], folder / "model.int8.onnx", "--data", digits["heldout"], "--metric", "top1",
         "--max-drop", "1", "--metric", "sqnr", "--min-value", "20", "--json-out", folder / "gate.json"],
        ["sensitivity", digits["model"], "--calibration", folder, "--data", digits["heldout"], "--num-samples", "120"],
        ["fallback", digits["model"], "--calibration", folder, "--data", digits["heldout"], "--num-samples", "120",
         "--metric", "top1", "--max-drop", "100", "--output", root / "fallback"],
    ]
    for args in steps:
        proc = run_cli(args)
        assert proc.returncode == 0, (args[0], proc.stderr)
    return {"root": root, "folder": folder}


def test_real_outputs_validate(artifacts):
    folder, root = artifacts["folder"], artifacts["root"]
    _validate("summary", json.loads((root / "cal" / "summary.json").read_text()))
    for path in (folder / "quant.json", root / "cal" / "entropy" / "quant.json", root / "fallback" / "quant.json"):
        _validate("quant", json.loads(path.read_text()))
    _validate("eval", json.loads((folder / "eval.json").read_text()))
    _validate("gate", json.loads((folder / "gate.json").read_text()))
    _validate("sensitivity", json.loads((folder / "sensitivity.json").read_text()))
    _validate("fallback", json.loads((root / "fallback" / "fallback.json").read_text()))


def test_one_unit_convention_across_eval_gate_sensitivity_and_fallback(artifacts):
    folder, root = artifacts["folder"], artifacts["root"]
    top1 = json.loads((folder / "eval.json").read_text())["task"]["top1"]
    gated = json.loads((folder / "gate.json").read_text())["checks"][0]
    sensitivity = json.loads((folder / "sensitivity.json").read_text())
    fallback = json.loads((root / "fallback" / "fallback.json").read_text())
    assert top1["unit"] == gated["unit"] == sensitivity["unit"] == fallback["unit"] == "%"
    assert top1["drop_unit"] == gated["drop_unit"] == fallback["drop_unit"] == "pp"
    assert 90.0 < top1["fp32"] <= 100.0 and top1["fp32"] == pytest.approx(gated["fp32"])  # percent, not a fraction
    assert sensitivity["output"] == fallback["output"] == gated["output"] == top1["output"] == "logits"


def test_the_schemas_reject_what_the_convention_forbids(artifacts):
    evaluation = json.loads((artifacts["folder"] / "eval.json").read_text())
    wrong = json.loads(json.dumps(evaluation))
    wrong["task"]["top1"]["drop_unit"] = "%"  # a drop in points labelled as percent
    with pytest.raises(jsonschema.ValidationError):
        _validate("eval", wrong)
    wrong = json.loads(json.dumps(evaluation))
    wrong["task"]["top1"]["fp32"] = 250.0  # not a percentage
    with pytest.raises(jsonschema.ValidationError):
        _validate("eval", wrong)
    gate = json.loads((artifacts["folder"] / "gate.json").read_text())
    gate["checks"] = []  # a passing gate that checked nothing
    with pytest.raises(jsonschema.ValidationError):
        _validate("gate", gate)


def test_error_report_validates(digits, artifacts, tmp_path):
    proc = run_cli(["gate", tmp_path / "missing.onnx", artifacts["folder"] / "model.int8.onnx", "--data",
                    digits["heldout"], "--metric", "top1", "--max-drop", "1", "--json-out", tmp_path / "gate.json"])
    assert proc.returncode == 2
    document = json.loads((tmp_path / "gate.json").read_text())
    _validate("gate", document)
    assert document["error"]["message"] in proc.stderr


def test_multi_output_eval_validates(tmp_path):
    from models_outputs import digits_split, features_then_logits

    _, _, calibration, held_x, held_y = digits_split()
    model = features_then_logits(tmp_path / "m.onnx")
    np.savez(tmp_path / "cal.npz", x=calibration)
    np.savez(tmp_path / "held.npz", x=held_x, label=held_y)
    quant.calibrate(model, tmp_path / "cal.npz", methods=("minmax",)).save(tmp_path / "out")
    report = quant.evaluate(model, tmp_path / "out" / "model.int8.onnx", tmp_path / "held.npz")
    _validate("eval", json.loads(json.dumps(report.to_json())))
