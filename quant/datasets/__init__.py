"""Calibration and held-out data: open a source by path, map it onto the model's inputs, split it."""
from __future__ import annotations

from pathlib import Path

from quant.core.errors import QuantError
from quant.core.oserrors import check_regular_input
from quant.datasets.arrays import ArraySource, open_arrays
from quant.datasets.base import DataSource, InputSpec, iter_batches, resolve_input_map, select
from quant.datasets.images import IMAGE_SUFFIXES, ImageFolderSource, Preprocess
from quant.datasets.recorded import PreprocessChoice, choose_preprocess
from quant.datasets.split import split_indices

__all__ = ["ArraySource", "DataSource", "ImageFolderSource", "InputSpec", "Preprocess", "iter_batches",
           "PreprocessChoice", "choose_preprocess", "open_source", "resolve_input_map", "uses_preprocess", "select", "split_indices"]


def open_source(data: "str | Path | DataSource", preprocess: "Preprocess | dict | PreprocessChoice | None" = None,
                split: str | None = None) -> DataSource:
    """Open calibration or evaluation data.

    Accepts a DataSource, a ``.npy``/``.npz`` file, a folder of ``.npy`` files (one per key, or one per
    sample ``x_0000.npy``...), a folder of images (class sub-folders give labels), a folder saved by
    Hugging Face ``save_to_disk``, a local ``.parquet``/``.arrow`` file, Polygraphy's saved inputs
    (``.json``) or data loader script (``loader.py[:load_data]``), or in-memory data: a NumPy array or
    tensor, a dict of arrays, an iterable or generator of feeds, a torch DataLoader. ``preprocess`` (for images): a full spec, a dict of fields changed from
    the default, or a :class:`PreprocessChoice`; options given for array data are refused.
    """
    choice = choose_preprocess(preprocess)
    if split is not None and not _is_saved_dataset(data):
        raise QuantError(f"--split selects a split of a Hugging Face dataset saved with save_to_disk, but the data "
                         f"'{data}' is not one: it would be ignored",
                         hint="drop --split, or pass the folder written by DatasetDict.save_to_disk")
    source = _open(data, choice.spec if choice else None, split)
    if choice is not None and choice.explicit and not uses_preprocess(source):
        raise QuantError(f"image preprocessing options (--resize, --mean, --std, --preprocess-from, ...) were given, but the data "
                         f"{source.description or data} holds arrays, not images: they would be ignored",
                         hint="drop the preprocessing options, or apply them to the arrays before saving them")
    if choice is not None and uses_preprocess(source):
        from quant.core.notes import note

        for text in choice.notes:
            note(text)
    return source


def uses_preprocess(source: DataSource) -> bool:
    """Whether the source turns images into arrays (an image folder, image columns of a table)."""
    if isinstance(source, ImageFolderSource):
        return True
    return bool(getattr(source, "image_columns", ()))


def _is_saved_dataset(data) -> bool:
    """Whether ``data`` is a folder written by Hugging Face ``save_to_disk`` (the one source with splits); True for
    in-memory data and for a path that does not exist (the caller chose, or _open says it is missing)."""
    if not isinstance(data, (str, Path)):
        return True
    from quant.datasets.feeds import parse_loader_spec

    path = Path(data)
    if parse_loader_spec(str(data)) is None and not path.exists():
        return True
    return path.is_dir() and any((path / name).exists() for name in ("dataset_info.json", "dataset_dict.json",
                                                                       "state.json"))


def _open(data, preprocess: Preprocess | None, split: str | None) -> DataSource:
    if type(data).__module__.startswith("quant.datasets"):  # one of ours
        return data
    if not isinstance(data, (str, Path)):
        from quant.datasets.feeds import UserSource, from_python, is_user_source

        return UserSource(data) if is_user_source(data) else from_python(data)
    from quant.datasets.feeds import open_loader_script, open_polygraphy_inputs, parse_loader_spec

    script = parse_loader_spec(str(data))
    if script is not None:
        return open_loader_script(*script)
    path = Path(data)
    if not path.exists():
        raise QuantError(f"data '{path}' does not exist", hint="pass --data a .npz/.npy file, an image folder, "
                         "a saved Hugging Face dataset or a parquet/arrow file")
    check_regular_input(path, "data")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".npy", ".npz"):
            return open_arrays(path)
        if suffix == ".json":
            return open_polygraphy_inputs(path)
        if suffix in (".parquet", ".arrow"):
            from quant.datasets.hf import open_table_file
            return open_table_file(path, preprocess)
        raise QuantError(f"data '{path}' has an unsupported type '{suffix}'",
                         hint="use .npy, .npz, .parquet, .arrow, Polygraphy's inputs .json, a loader.py[:function], "
                              "an image folder or a saved HF dataset")
    if _is_saved_dataset(path):
        from quant.datasets.hf import open_hf
        return open_hf(path, split, preprocess)
    if any(path.glob("*.npy")):
        return open_arrays(path)
    has_images = any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.rglob("*"))
    if has_images:
        return ImageFolderSource(path, preprocess or Preprocess())
    raise QuantError(f"the data source '{path}' is empty: no images, .npy files or dataset found in it",
                     hint="put images (or class sub-folders of images) or .npy files in the folder")
