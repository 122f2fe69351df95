"""Hugging Face datasets saved with ``save_to_disk``, and local parquet / arrow files (offline)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from quant.core.errors import QuantError
from quant.core.lazy import require
from quant.datasets.base import DataSource
from quant.datasets.images import Preprocess


class TableSource(DataSource):
    """Rows of a table-like dataset; list columns become arrays, image columns go through ``preprocess``."""

    def __init__(self, table, description: str, preprocess: Preprocess | None = None) -> None:
        self.table = table  # a datasets.Dataset or a pyarrow.Table
        self.description = description
        self.preprocess = preprocess or Preprocess()

    def __len__(self) -> int:
        return len(self.table) if not hasattr(self.table, "num_rows") else int(self.table.num_rows)

    @property
    def image_columns(self) -> list[str]:
        """Columns holding encoded images (HF Image features; parquet structs with a 'bytes' field)."""
        if hasattr(self.table, "features"):
            return [name for name, feature in self.table.features.items() if type(feature).__name__ == "Image"]
        pa = require("pyarrow")
        return [f.name for f in self.table.schema
                if pa.types.is_struct(f.type) and any(f.type.field(i).name == "bytes" for i in range(f.type.num_fields))]

    @property
    def keys(self) -> list[str]:
        return list(self.table.column_names)

    @property
    def class_label_columns(self) -> list[str]:
        """Columns that are Hugging Face ClassLabel features (also when read back from parquet/arrow)."""
        if hasattr(self.table, "features"):
            return [name for name, f in self.table.features.items() if type(f).__name__ == "ClassLabel"]
        metadata = self.table.schema.metadata or {}
        try:
            features = json.loads(metadata.get(b"huggingface", b"{}")).get("info", {}).get("features", {})
        except (ValueError, AttributeError):
            return []
        return [name for name, f in features.items() if isinstance(f, dict) and f.get("_type") == "ClassLabel"
                and name in self.keys]

    def _row(self, index: int) -> dict:
        if hasattr(self.table, "slice") and not hasattr(self.table, "features"):  # pyarrow.Table
            return self.table.slice(index, 1).to_pylist()[0]
        return self.table[index]

    def sample(self, index: int) -> dict[str, np.ndarray]:
        return {key: self._to_array(key, value) for key, value in self._row(index).items()}

    def _to_array(self, key: str, value) -> np.ndarray:
        if isinstance(value, dict) and "bytes" in value:  # an image column read without decoding
            pil = require("PIL.Image")
            if value.get("bytes") is None:
                raise QuantError(f"image column '{key}' holds a file path, not the image bytes",
                                 hint="save the dataset with embedded images (datasets' save_to_disk does)")
            try:
                with pil.open(io.BytesIO(value["bytes"])) as image:
                    return self.preprocess.apply(image)
            except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError ...
                raise QuantError(f"cannot decode the image in column '{key}': {exc}",
                                 hint="check the dataset's image bytes") from None
        if hasattr(value, "convert") and hasattr(value, "size"):  # a decoded PIL image
            return self.preprocess.apply(value)
        try:
            return np.asarray(value)
        except ValueError:
            raise QuantError(f"column '{key}' holds ragged nested lists that do not form an array",
                             hint="store each sample as a rectangular array") from None

    def column(self, key: str) -> np.ndarray | None:
        if key not in self.keys:
            return None
        values = self.table[key] if hasattr(self.table, "features") else self.table.column(key).to_pylist()
        try:
            return np.asarray(values)
        except ValueError:
            return None


_HINT = "save the dataset again with Dataset.save_to_disk (its JSON metadata is damaged)"


def _specs():
    from quant.core.readback import ANY, MapOf, Optional

    state = {"_data_files": [{"filename": str}], "_fingerprint?": str, "_format_columns?": Optional([str]),
             "_format_kwargs?": MapOf(ANY), "_format_type?": Optional(str), "_output_all_columns?": bool,
             "_split?": Optional(str)}
    info = {"features?": Optional(MapOf(ANY)), "splits?": Optional(MapOf(ANY))}
    return state, info, {"splits": [str]}


def check_saved_dataset(path: Path) -> None:
    """Check the JSON metadata of a save_to_disk folder before datasets reads it (one Error line naming the file).

    dataset_dict.json lists the splits; each Dataset folder has state.json (its arrow files, which must lie
    in the folder) and dataset_info.json (the features).
    """
    from quant.core.readback import read_json

    state_spec, info_spec, dict_spec = _specs()
    if (path / "dataset_dict.json").is_file():
        splits = read_json(path / "dataset_dict.json", dict_spec, "the dataset metadata", _HINT)["splits"]
        folders = [path / split for split in splits if "/" not in split and "\\" not in split and split not in ("", ".", "..")]
        if len(folders) != len(splits):
            raise QuantError(f"the dataset metadata '{path / 'dataset_dict.json'}' is malformed: field 'splits' names a "
                             "split that is not a folder name", hint=_HINT)
    else:
        folders = [path]
    for folder in folders:
        if (folder / "state.json").is_file():
            state = read_json(folder / "state.json", state_spec, "the dataset metadata", _HINT)
            for index, entry in enumerate(state["_data_files"]):
                name = entry["filename"]
                if Path(name).name != name or name in ("", ".", ".."):
                    raise QuantError(f"the dataset metadata '{folder / 'state.json'}' is malformed: field "
                                     f"'_data_files[{index}].filename' must name a file in the folder, got {name!r}",
                                     hint=_HINT)
        if (folder / "dataset_info.json").is_file():
            read_json(folder / "dataset_info.json", info_spec, "the dataset metadata", _HINT)


def open_hf(path: Path, split: str | None, preprocess: Preprocess | None) -> TableSource:
    """A dataset folder written by ``save_to_disk`` (a Dataset, or a DatasetDict with ``split``)."""
    datasets = require("datasets")
    check_saved_dataset(path)
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises FileNotFoundError, ValueError, KeyError, TypeError ... on bad metadata
        text = str(exc).splitlines()[0] if str(exc) else ""
        raise QuantError(f"cannot load the Hugging Face dataset at '{path}': {type(exc).__name__}: {text[:200]}",
                         hint="pass a folder written by Dataset.save_to_disk") from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if split is None:
            if len(splits) != 1:
                raise QuantError(f"the dataset at '{path}' has splits {splits}", hint="choose one with --split NAME")
            split = splits[0]
        if split not in loaded:
            raise QuantError(f"the dataset at '{path}' has no split '{split}'", hint=f"choose from: {', '.join(splits)}")
        loaded = loaded[split]
        description = f"{path} [{split}]"
    else:
        description = str(path)
    # Rows as saved, every column (a saved set_format(columns=...) or torch/numpy format is not ours to apply).
    loaded = loaded.with_format(None)
    # Images are decoded by us (and preprocessed), not by datasets.
    try:
        for name, feature in loaded.features.items():
            if type(feature).__name__ == "Image":
                loaded = loaded.cast_column(name, datasets.Image(decode=False))
        if len(loaded):
            loaded[0]  # features that do not fit the arrow data fail here, not in the middle of a run
    except Exception as exc:  # datasets/pyarrow raise ValueError, TypeError, ArrowInvalid ... on mismatched metadata
        text = str(exc).splitlines()[0] if str(exc) else ""
        raise QuantError(f"the Hugging Face dataset at '{path}' does not match its metadata (dataset_info.json "
                         f"features): {type(exc).__name__}: {text[:200]}", hint=_HINT) from None
    return TableSource(loaded, description, preprocess)


def open_table_file(path: Path, preprocess: Preprocess | None) -> TableSource:
    """A local .parquet or .arrow (IPC file or stream) file."""
    pa = require("pyarrow")
    try:
        if path.suffix == ".parquet":
            table = require("pyarrow.parquet").read_table(str(path), memory_map=True)
        else:
            ipc = require("pyarrow.ipc")
            with pa.memory_map(str(path)) as source:
                try:
                    table = ipc.open_file(source).read_all()
                except pa.ArrowInvalid:
                    source.seek(0)
                    table = ipc.open_stream(source).read_all()
    except Exception as exc:  # pyarrow raises ArrowInvalid, ArrowIOError, OSError ...
        raise QuantError(f"cannot read '{path}' as {path.suffix[1:]}: {exc}",
                         hint="pass a parquet or arrow file written by pyarrow or datasets") from None
    return TableSource(table, str(path), preprocess)
