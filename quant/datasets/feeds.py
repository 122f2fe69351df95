"""Data that comes as a sequence of feeds: Python iterables and generators, torch DataLoaders, Polygraphy's
data loader scripts (``loader.py:load_data``) and Polygraphy's saved inputs (``polygraphy run --save-inputs``).

Each item is one feed: a dict ``{name: array}``, a tuple ``(x, y)`` / ``(x,)``, or an array (key ``input``).
An item is a batch when its arrays carry the model's batch axis (split into samples; our own batching then
regroups them, so results do not depend on the loader's batch size) and one sample when they do not.
Re-iterable data (lists, DataLoaders, loader functions) is read again on every pass, front to back, so
memory holds one feed; a one-shot generator is kept in memory.
"""
from __future__ import annotations

import base64
import bisect
import importlib.util
import io
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from quant.core.errors import QuantError
from quant.datasets.base import DataSource

FORMS = ("a dict {name: array}, a tuple (inputs, labels), or an array")


def to_array(value, where: str, numeric: bool = True) -> np.ndarray:
    """A NumPy array from an array, a torch tensor or a nested list of numbers (or strings: ``numeric=False``)."""
    if isinstance(value, np.ndarray):
        array = value
    elif hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor, without importing torch
        array = value.detach().cpu().numpy()
    else:
        try:
            array = np.asarray(value)
        except ValueError:
            raise QuantError(f"{where} holds ragged nested lists that do not form an array",
                             hint="give arrays or tensors") from None
    if array.dtype.kind not in ("biufc" if numeric else "biufcUS"):
        raise QuantError(f"{where} is a {type(value).__name__} that is not an array of numbers",
                         hint=f"give each feed as {FORMS}")
    return array


def to_feed(item, where: str) -> dict[str, np.ndarray]:
    """One item of a data loader as ``{key: array}``."""
    if isinstance(item, Mapping):
        return {str(k): to_array(v, f"{where} key '{k}'", numeric=str(k) not in ("label", "labels"))
                for k, v in item.items()}
    if isinstance(item, (tuple, list)) and len(item) in (1, 2) and not _is_number_list(item):
        inputs = item[0]
        feed = to_feed(inputs, where) if isinstance(inputs, Mapping) else {"input": to_array(inputs, f"{where} inputs")}
        if len(item) == 2:
            feed["label"] = to_array(item[1], f"{where} labels", numeric=False)
        return feed
    if isinstance(item, np.ndarray) or hasattr(item, "detach"):
        return {"input": to_array(item, where)}
    raise QuantError(f"{where} is a {type(item).__name__}, which quant cannot read as model inputs",
                     hint=f"yield {FORMS}")


def _is_number_list(item) -> bool:
    return all(isinstance(v, (int, float)) for v in item)


class FeedSource(DataSource):
    """Samples from a sequence of feeds that ``make_iter()`` yields, read front to back."""

    def __init__(self, make_iter: Callable[[], Iterator], description: str) -> None:
        self._make = make_iter
        self.description = description
        self._keys: list[str] | None = None
        self._rows: list[int] = []  # samples in each feed when feeds are batches; None entries: not batchable
        batchable = True
        self._keys_made_up = False
        for position, item in enumerate(make_iter()):
            feed = to_feed(item, f"feed {position} of {description}")
            self._keys_made_up = self._keys_made_up or not isinstance(item, Mapping)
            if self._keys is None:
                self._keys = list(feed)
            elif set(feed) != set(self._keys):
                raise QuantError(f"feed {position} of {description} has keys {sorted(feed)}, the first has "
                                 f"{sorted(self._keys)}", hint="yield the same names in every feed")
            lengths = {a.shape[0] if a.ndim else -1 for a in feed.values()}
            batchable = batchable and len(lengths) == 1 and min(lengths) >= 1
            self._rows.append(next(iter(lengths)) if len(lengths) == 1 else -1)
        if self._keys is None:
            raise QuantError(f"the data {description} yielded no feeds", hint="check the data loader")
        self._batchable = batchable
        self.synthetic_keys = ("input",) if self._keys_made_up else ()
        self.batched = batchable
        self._index()
        self._iter: Iterator | None = None
        self._next_feed = 0
        self._current: tuple[int, dict[str, np.ndarray]] | None = None

    def _index(self) -> None:
        sizes = self._rows if self.batched else [1] * len(self._rows)
        self._starts = list(np.cumsum([0] + sizes[:-1])) if sizes else []
        self._length = int(sum(sizes))

    def fit_to_inputs(self, inputs) -> DataSource:
        """Feeds are batches when their arrays have the model input's rank, single samples when one less."""
        names = [spec.name for spec in inputs]
        keys = [k for k in self._keys if k not in ("label", "labels")]
        if not keys:
            return self
        pairs = [(spec, spec.name if spec.name in keys else keys[0]) for spec in inputs
                 if spec.name in keys or (len(names) == 1 and len(keys) == 1)]
        first = self._feed(0)
        if pairs and all(first[key].ndim == len(spec.shape) - 1 for spec, key in pairs):
            self.batched = False
        elif pairs and all(first[key].ndim == len(spec.shape) for spec, key in pairs) and not self._batchable:
            raise QuantError(f"the feeds of {self.description} have arrays of different batch sizes",
                             hint="give every array of one feed the same first axis")
        self._index()
        return self

    def __len__(self) -> int:
        return self._length

    @property
    def keys(self) -> list[str]:
        return list(self._keys)

    def _feed(self, position: int) -> dict[str, np.ndarray]:
        if self._current is not None and self._current[0] == position:
            return self._current[1]
        if self._iter is None or position < self._next_feed:
            self._iter, self._next_feed = iter(self._make()), 0
        item = None
        while self._next_feed <= position:
            try:
                item = next(self._iter)
            except StopIteration:
                raise QuantError(f"{self.description} yielded fewer feeds on a second pass ({self._next_feed}) than "
                                 f"on the first ({len(self._rows)})", hint="make the data loader deterministic "
                                 "(no shuffling, seeded randomness)") from None
            self._next_feed += 1
        feed = to_feed(item, f"feed {position} of {self.description}")
        rows = next(iter({a.shape[0] if a.ndim else -1 for a in feed.values()}))
        if set(feed) != set(self._keys) or (self.batched and rows != self._rows[position]):
            raise QuantError(f"feed {position} of {self.description} differs between passes",
                             hint="make the data loader deterministic (no shuffling, seeded randomness)")
        self._current = (position, feed)
        return feed

    def sample(self, index: int) -> dict[str, np.ndarray]:
        position = bisect.bisect_right(self._starts, index) - 1
        feed = self._feed(position)
        if not self.batched:
            return dict(feed)
        row = index - self._starts[position]
        return {key: value[row] for key, value in feed.items()}

    def column(self, key: str) -> np.ndarray | None:
        if key not in self._keys:
            return None
        parts = []
        for position in range(len(self._rows)):
            value = self._feed(position)[key]
            parts.append(value if self.batched else value[None])
        try:
            return np.concatenate(parts)
        except ValueError:
            return None


class UserSource(DataSource):
    """A user's source (a DataSource subclass or any object with ``__len__``, ``keys`` and ``sample``), checked:
    ``keys`` may be a property or a method, samples may hold tensors."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.description = getattr(inner, "description", "") or type(inner).__name__
        keys = inner.keys() if callable(inner.keys) else inner.keys
        if isinstance(keys, str) or not isinstance(keys, Iterable) or not all(isinstance(k, str) for k in keys):
            raise QuantError(f"{self.description}.keys must be a list of strings, got {keys!r}"[:200],
                             hint="return the names of the arrays sample(i) gives, e.g. ['input', 'label']")
        self._keys = list(keys)
        try:
            self._length = int(len(inner))
        except TypeError as exc:
            raise QuantError(f"{self.description} has no length: {exc}", hint="implement __len__") from None
        for name in ("feeds_may_have_batch_axis", "classes", "files", "root", "class_label_columns", "image_columns"):
            if hasattr(inner, name):
                setattr(self, name, getattr(inner, name))

    def __len__(self) -> int:
        return self._length

    @property
    def keys(self) -> list[str]:
        return list(self._keys)

    def sample(self, index: int) -> dict[str, np.ndarray]:
        raw = self.inner.sample(index)
        if not isinstance(raw, Mapping):
            raise QuantError(f"{self.description}.sample({index}) returned a {type(raw).__name__}, not a dict",
                             hint="return {key: array} for one sample, without the batch axis")
        return {str(k): to_array(v, f"{self.description}.sample({index})['{k}']", numeric=False)
                for k, v in raw.items()}  # strings (a label key); an input's dtype is checked against the model

    def column(self, key: str) -> np.ndarray | None:
        column = getattr(self.inner, "column", None)
        # a label column may hold strings (text lines); model inputs are checked against their dtype elsewhere
        return None if column is None else (None if (value := column(key)) is None else
                                            to_array(value, key, numeric=False))


def is_user_source(data) -> bool:
    return isinstance(data, DataSource) or all(hasattr(data, n) for n in ("__len__", "keys", "sample"))


def from_python(data) -> DataSource:
    """A DataSource for in-memory data: an array or tensor, a dict of arrays, or an iterable of feeds."""
    from quant.datasets.arrays import ArraySource

    if isinstance(data, np.ndarray) or (hasattr(data, "detach") and hasattr(data, "numpy")):
        array = to_array(data, "the data array")
        source = ArraySource({"input": array}, f"array {list(array.shape)} {array.dtype}")
        source.synthetic_keys = ("input",)
        return source
    if isinstance(data, Mapping):
        arrays = {str(k): to_array(v, f"data key '{k}'") for k, v in data.items()}
        return ArraySource(arrays, "dict of arrays " + ", ".join(f"{k} {list(a.shape)}" for k, a in arrays.items()))
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise QuantError(f"data of type {type(data).__name__} is not supported",
                         hint="pass a path, a NumPy array, a dict of arrays, an iterable of feeds "
                              "(dicts, (x, y) tuples or arrays), a torch DataLoader or a quant.datasets.DataSource")
    if hasattr(data, "features") and hasattr(data, "column_names") and hasattr(data, "cast_column"):
        from quant.datasets.hf import TableSource  # a Hugging Face datasets.Dataset in memory

        return TableSource(data, f"datasets.Dataset ({len(data)} rows)")
    sampler = getattr(data, "sampler", None)
    if type(sampler).__name__ == "RandomSampler":
        raise QuantError("the DataLoader shuffles (shuffle=True): its samples change order on every pass",
                         hint="pass a DataLoader with shuffle=False; quant draws --num-samples itself, seeded")
    name = type(data).__name__
    if iter(data) is data:  # a generator or another one-shot iterator: keep its feeds
        items = list(data)
        return FeedSource(lambda: iter(items), f"{name} ({len(items)} feeds, in memory)")
    return FeedSource(lambda: iter(data), name)


def parse_loader_spec(text: str) -> tuple[Path, str] | None:
    """``script.py`` or ``script.py:function`` (Polygraphy's --data-loader-script), else None."""
    path, sep, function = str(text).rpartition(":")
    if sep and path.endswith(".py") and function.isidentifier():
        return Path(path), function
    if str(text).endswith(".py"):
        return Path(text), "load_data"  # Polygraphy's default --data-loader-func-name
    return None


def open_loader_script(path: Path, function: str) -> FeedSource:
    """Polygraphy's data loader script: ``function()`` returns an iterable of feed dicts (one per batch)."""
    if not path.is_file():
        raise QuantError(f"data loader script '{path}' does not exist", hint="pass --data-loader-script FILE.py[:FUNCTION]")
    module_name = f"_quant_data_loader_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))  # the script may import its neighbours
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise QuantError(f"data loader script '{path}' has a syntax error on line {exc.lineno}: {exc.msg}",
                         hint="fix the script") from None
    except (KeyboardInterrupt, QuantError):
        raise
    except BaseException as exc:  # any error of the script's own code, SystemExit included: bad input
        raise _loader_failure(f"data loader script '{path}'", "on import", exc) from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    loader = getattr(module, function, None)
    if not callable(loader):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise QuantError(f"data loader script '{path}' has no function '{function}'",
                         hint=f"name it with {path}:FUNCTION (functions there: {', '.join(found) or 'none'})")

    def make_iter():
        try:
            feeds = loader()
        except (KeyboardInterrupt, QuantError):
            raise
        except BaseException as exc:
            raise _loader_failure(f"data loader '{path}:{function}'", "when called", exc) from None
        if isinstance(feeds, Mapping) or not isinstance(feeds, Iterable):
            raise QuantError(f"{path}:{function}() returned a {type(feeds).__name__}, not an iterable of feeds",
                             hint="return or yield feed dicts {input name: array}, one per batch")
        return _guarded(iter(feeds), f"data loader '{path}:{function}'")

    return FeedSource(make_iter, f"{path}:{function}")


def _loader_failure(what: str, when: str, exc: BaseException) -> QuantError:
    """One Error line for a data loader that raised or called sys.exit (a traceback was printed, exit 1)."""
    if isinstance(exc, SystemExit):
        return QuantError(f"{what} called sys.exit({exc.code!r}) {when}", hint="a data loader must return or "
                          "yield feeds, not end the program")
    text = str(exc).splitlines()[0] if str(exc) else ""
    return QuantError(f"{what} failed {when}: {type(exc).__name__}: {text[:300]}".rstrip(": "),
                      hint="fix the data loader script (it runs in the quant process)")


def _guarded(feeds: Iterator, what: str) -> Iterator:
    """``feeds``, with an error raised while producing one turned into one Error line."""
    position = 0
    while True:
        try:
            item = next(feeds)
        except StopIteration:
            return
        except (KeyboardInterrupt, QuantError):
            raise
        except BaseException as exc:
            raise _loader_failure(what, f"while yielding feed {position}", exc) from None
        yield item
        position += 1


def is_polygraphy_json(path: Path) -> bool:
    return path.suffix.lower() == ".json"


def open_polygraphy_inputs(path: Path) -> FeedSource:
    """Inputs saved by ``polygraphy run --save-inputs FILE.json``: a JSON list of feed dicts whose arrays
    Polygraphy's JSON encoder wrote as ``{"array": base64(np.save bytes), "polygraphy_class": "ndarray"}``."""
    try:
        feeds = json.loads(path.read_text(), object_pairs_hook=_decode_polygraphy)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise QuantError(f"cannot read '{path}' as Polygraphy inputs: {exc}",
                         hint="pass a file written by 'polygraphy run --save-inputs'") from None
    if not isinstance(feeds, list) or not all(isinstance(f, dict) for f in feeds):
        raise QuantError(f"'{path}' is JSON but not a list of feed dicts (Polygraphy's --save-inputs format)",
                         hint="pass a file written by 'polygraphy run --save-inputs'")
    for position, feed in enumerate(feeds):
        for key, value in feed.items():
            if not isinstance(value, np.ndarray):
                raise QuantError(f"feed {position} of '{path}' holds a {type(value).__name__} for '{key}', not an "
                                 "encoded array", hint="pass a file written by 'polygraphy run --save-inputs'")
    return FeedSource(lambda: iter(feeds), f"{path} ({len(feeds)} Polygraphy feeds)")


_LEGACY_KEY, _LEGACY_MARKER = "__polygraphy_encoded_ndarray", "polygraphy_serialized_json_type"


def _decode_polygraphy(pairs):
    obj = dict(pairs)
    if obj.get("polygraphy_class") == "ndarray" or obj.get(_LEGACY_KEY) == _LEGACY_MARKER:
        text = obj.get("array")
        if not isinstance(text, str):
            raise ValueError("an encoded ndarray without its 'array' field")
        try:
            raw = base64.b64decode(text.encode(), validate=True)
        except ValueError:
            raw = text.encode("latin-1")  # Polygraphy's older encoding
        loaded = np.load(io.BytesIO(raw), allow_pickle=False)
        if not isinstance(loaded, np.ndarray):  # older files hold an .npz with one array
            with loaded:
                loaded = loaded[loaded.files[0]]
        return loaded
    return obj
