"""A seeded, disjoint calibration / held-out split, stratified when labels exist (scikit-learn)."""
from __future__ import annotations

import numpy as np

from quant.core.errors import QuantError
from quant.core.lazy import require


def split_indices(count: int, held_out: float | int, labels: np.ndarray | None = None,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(first, held_out) sorted index arrays; disjoint, covering range(count), stratified on labels."""
    if count < 2:
        raise QuantError(f"cannot split {count} sample(s) into two disjoint sets", hint="provide more samples")
    model_selection = require("sklearn.model_selection")
    indices = np.arange(count)
    try:
        first, second = model_selection.train_test_split(indices, test_size=held_out, random_state=seed,
                                                         stratify=labels)
    except ValueError as exc:
        raise QuantError(f"cannot split the data: {exc}", hint="choose a held-out size that leaves every class "
                         "at least one sample on each side") from None
    return np.sort(first), np.sort(second)
