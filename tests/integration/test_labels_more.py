"""Labels in every form people keep them: one-hot, [N, 1], float ids, .txt/.csv files, ClassLabel columns."""
import numpy as np
import pytest
from PIL import Image

import quant
from conftest import run_cli
from quant.core.errors import QuantError


@pytest.fixture(scope="module")
def truth(digits):
    """The digits model's top-1 with its integer labels (the reference every form must reproduce)."""
    with np.load(digits["heldout"]) as held:
        images, labels = held["input"], held["label"]
    report = quant.evaluate(digits["model"], digits["model"], {"input": images}, labels=labels)
    return images, labels, report.task["top1"]["fp32"]


@pytest.mark.parametrize("form", ["one_hot", "column", "float", "one_hot_float"])
def test_label_arrays_in_other_forms_score_the_same(truth, digits, form):
    images, labels, top1 = truth
    converted = {"one_hot": np.eye(10, dtype=np.int64)[labels], "column": labels[:, None],
                 "float": labels.astype(np.float32), "one_hot_float": np.eye(10, dtype=np.float32)[labels]}[form]
    report = quant.evaluate(digits["model"], digits["model"], {"input": images}, labels=converted)
    assert report.task["top1"]["fp32"] == top1 > 0.9


def test_non_integral_float_and_soft_labels_are_refused(truth, digits):
    images, labels, _ = truth
    floats = labels.astype(np.float64)
    floats[3] = 1.5
    with pytest.raises(QuantError, match="non-integer class id 1.5"):
        quant.evaluate(digits["model"], digits["model"], {"input": images}, labels=floats)
    soft = np.full((len(labels), 10), 0.1)
    with pytest.raises(QuantError, match="row 0 is not one-hot"):
        quant.evaluate(digits["model"], digits["model"], {"input": images}, labels=soft)


def test_text_and_csv_label_files(truth, digits, tmp_path):
    images, labels, top1 = truth
    np.savez(tmp_path / "held.npz", input=images)
    (tmp_path / "labels.txt").write_text("\n".join(str(v) for v in labels) + "\n")
    (tmp_path / "labels.csv").write_text("label\n" + "\n".join(f"{v}.0" for v in labels) + "\n")
    for name in ("labels.txt", "labels.csv"):
        proc = run_cli(["eval", digits["model"], digits["model"], "--data", tmp_path / "held.npz",
                        "--labels", tmp_path / name, "--json"])
        assert proc.returncode == 0, proc.stderr
        import json

        assert json.loads(proc.stdout)["task"]["top1"]["fp32"] == top1


def test_csv_with_file_names_is_matched_to_an_image_folder(tmp_path):
    from quant.datasets import open_source
    from quant.pipeline import find_labels

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    (tmp_path / "labels.csv").write_text("filename,label\nimg3.png,cat\nimg0.png,dog\nimg2.png,dog\nimg1.png,cat\n")
    source = open_source(folder)
    array, _ = find_labels(source, tmp_path / "labels.csv", [], integer=False)
    assert list(array) == ["dog", "cat", "dog", "cat"]  # in the folder's (sorted) file order
    with pytest.raises(QuantError, match="top-1|integer"):
        find_labels(source, tmp_path / "labels.csv", [], integer=True)  # names without named classes
    (tmp_path / "missing.csv").write_text("filename,label\nimg0.png,1\n")
    with pytest.raises(QuantError, match="no row for 'img1.png'"):
        find_labels(source, tmp_path / "missing.csv", [], integer=True)


def test_class_names_in_a_label_file_map_to_an_image_folder_classes(tmp_path):
    from quant.datasets import open_source
    from quant.pipeline import find_labels

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "images" / label / f"{i}.png")
    (tmp_path / "names.txt").write_text("cat\ncat\ndog\ndog\n")
    array, _ = find_labels(open_source(tmp_path / "images"), tmp_path / "names.txt", [], integer=True)
    assert list(array) == [0, 0, 1, 1]


def test_hf_class_label_column_is_found_and_not_fed_to_the_model(truth, digits, tmp_path):
    datasets = pytest.importorskip("datasets")
    images, labels, top1 = truth
    features = datasets.Features({"pixels": datasets.Array3D((1, 8, 8), "float32"),
                                  "digit": datasets.ClassLabel(names=[str(i) for i in range(10)])})
    table = datasets.Dataset.from_dict({"pixels": images.tolist(), "digit": labels.tolist()}, features=features)
    table.save_to_disk(str(tmp_path / "hf"))
    table.to_parquet(str(tmp_path / "digits.parquet"))
    for data in (tmp_path / "hf", tmp_path / "digits.parquet"):
        report = quant.evaluate(digits["model"], digits["model"], data)  # no labels= : the ClassLabel column
        assert report.labels_source == "digit" and report.task["top1"]["fp32"] == top1
        result = quant.calibrate(digits["model"], data, methods=("minmax",), num_samples=64)
        assert result.data["input_map"] == {"input": "pixels"}
