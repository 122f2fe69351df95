"""Streaming FP32-vs-INT8 metrics per output: agreement, cosine, SQNR, abs errors, per-sample SQNR."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from quant.core.numbers import infinite_text
from quant.eval.batch_axis import check_same_shape
from quant.eval.outputs import argmax_agreement, shape_text, tied_positions


SCALAR_COSINE = "one value per sample: its cosine is only the sign (+1 or -1)"


def row_cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row pair of two [N, D] arrays (float64): 1 where both rows are zero, 0 where
    only one is (an INT8 row that lost all signal matches nothing), NaN where the INT8 row is NaN or Inf.
    The one definition behind eval's cosine column and the gate's cosine metric."""
    ref, cand = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    dots = np.sum(ref * cand, axis=1)
    with np.errstate(invalid="ignore"):
        both_zero = ~np.any(ref, axis=1) & ~np.any(cand, axis=1)
        cosine = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), np.where(both_zero, 1.0, 0.0))
    return np.where(np.isfinite(cand).all(axis=1), cosine, np.nan)


def sqnr_db(signal_power: float, noise_power: float) -> float:
    """10 log10(signal / noise) in dB; inf when the noise is zero."""
    if noise_power <= 0:
        return float("inf")
    if signal_power <= 0:
        return float("-inf")
    return float(10.0 * np.log10(signal_power / noise_power))


@dataclass
class OutputStats:
    """Accumulates the comparison of one output over batches (float64 sums; O(samples) scalars only)."""

    name: str
    signal: float = 0.0
    noise: float = 0.0
    max_abs: float = 0.0
    sum_abs: float = 0.0
    elements: int = 0
    cosine_sum: float = 0.0
    agree: int = 0
    positions: int = 0
    tied: int = 0  # positions left out of agreement: both models score every class alike there (padding)
    sample_sqnr: list[float] = field(default_factory=list)
    class_axis: int | None = None  # set when the output holds class scores (see quant.eval.outputs); else None
    class_note: str = ""  # why agreement is scored on this output, or why it is n/a
    shape: tuple = ()  # of the first batch
    extents: list = field(default_factory=list)  # (smallest, largest) size of each axis over the batches
    integer: bool = False  # class indices, counts, masks: SQNR and cosine of such values mean nothing
    nonfinite: int = 0  # samples whose FP32 output holds NaN/Inf: every error of the output is undefined
    samples: int = 0

    @property
    def shape_text(self) -> str | None:
        """'[N, 10]'; an axis that changed between batches as its range: '[N, 1..4, 3]' (not the first batch's)."""
        if not self.shape:
            return None
        return shape_text([d if lo == hi else f"{lo}..{hi}" for d, (lo, hi) in zip(self.shape, self.extents)])

    @property
    def tied_note(self) -> str:
        return (f"; {self.tied} of {self.tied + self.positions} positions are not counted: FP32 and INT8 both give "
                "every class the same score there (padding?)")

    def update(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        self.integer = self.integer or np.asarray(reference).dtype.kind in "biu"
        ref = np.asarray(reference, dtype=np.float64)
        cand = np.asarray(candidate, dtype=np.float64)
        check_same_shape(self.name, ref, cand)
        self.samples += len(ref)
        self.nonfinite += int(np.sum(~np.isfinite(ref.reshape(len(ref), -1)).all(axis=1))) if ref.ndim else 0
        err = cand - ref
        self.signal += float(np.sum(ref * ref))
        self.noise += float(np.sum(err * err))
        if err.size:
            self.max_abs = max(self.max_abs, float(np.max(np.abs(err))))
        self.sum_abs += float(np.sum(np.abs(err)))
        self.elements += int(err.size)
        rows_ref, rows_cand = ref.reshape(len(ref), -1), cand.reshape(len(cand), -1)
        self.cosine_sum += float(row_cosines(rows_ref, rows_cand).sum())
        row_err = rows_cand - rows_ref
        for s, n in zip(np.sum(rows_ref ** 2, axis=1), np.sum(row_err ** 2, axis=1)):
            self.sample_sqnr.append(sqnr_db(float(s), float(n)))
        if not self.shape:
            self.shape = ref.shape
        self.extents = [(min(lo, d), max(hi, d)) for (lo, hi), d in zip(self.extents, ref.shape)] \
            if self.extents and len(self.extents) == ref.ndim else self.extents or [(d, d) for d in ref.shape]
        if self.class_axis is not None:
            agree, positions = argmax_agreement(ref, cand, self.class_axis)
            self.agree += agree
            self.positions += positions
            self.tied += tied_positions(ref, cand, self.class_axis)

    def summary(self) -> dict:
        samples = len(self.sample_sqnr)
        if self.tied and self.class_axis is not None and self.tied_note not in self.class_note:
            self.class_note += self.tied_note
        scalar = bool(self.shape) and int(np.prod(self.shape[1:])) == 1  # [N], [N, 1]: the cosine of 1 value is ±1
        if scalar and not self.integer and SCALAR_COSINE not in self.class_note:
            self.class_note += f"; {SCALAR_COSINE}, so cosine is n/a (SQNR scores it)"
        if self.integer:  # n/a, said in agreement_basis; max/mean abs error stay (0 when every value is equal)
            self.class_note = f"output '{self.name}' holds integers (not scores): SQNR and cosine are n/a"
        if self.nonfinite:  # NaN rows made max abs error 0 and cosine a share of samples: no number is right
            self.class_note = (f"FP32 output '{self.name}' is NaN or Inf on {self.nonfinite} of {self.samples} "
                               "samples: SQNR, cosine and abs errors are n/a (check the held-out data)")
            return {"sqnr_db": None, "sqnr_db_infinite": None, "cosine": None, "shape": self.shape_text,
                    "class_axis": self.class_axis, "agreement": None, "agreement_unit": "%",
                    "agreement_basis": self.class_note, "max_abs_error": None, "mean_abs_error": None}
        sqnr = None if self.integer else sqnr_db(self.signal, self.noise)
        return {
            "sqnr_db": sqnr,
            "sqnr_db_infinite": infinite_text(sqnr),  # JSON holds no inf: 'inf' (INT8 equals FP32) or '-inf' here
            "cosine": None if self.integer or scalar else self.cosine_sum / samples if samples else float("nan"),
            "shape": self.shape_text,
            "class_axis": self.class_axis,
            "agreement": 100.0 * self.agree / self.positions if self.class_axis is not None and self.positions else None,
            "agreement_unit": "%",
            "agreement_basis": self.class_note,
            "max_abs_error": self.max_abs,
            "mean_abs_error": self.sum_abs / self.elements if self.elements else float("nan"),
        }


def topk_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> int:
    """How many rows of ``logits`` [N, C] have their label among the k largest (ties: lower index first)."""
    labels = np.asarray(labels).reshape(-1)
    top = np.argsort(-np.asarray(logits), axis=-1, kind="stable")[:, :k]
    return int(np.sum(np.any(top == labels[:, None], axis=1)))


def refuse_trivial_topk(k: int, classes: int, what: str, output: str = "an output") -> None:
    """QuantError when top-k of ``classes`` classes is 100% whatever the model does (k >= classes > 1)."""
    if k > 1 and k >= classes:
        from quant.core.errors import QuantError

        raise QuantError(f"top-{k} accuracy on {output} of {classes} classes is 100% whatever the model does",
                         hint=f"choose {what} below {classes}")


@dataclass
class TopK:
    """Top-k accuracy of FP32 and INT8 against integer labels (classification outputs [N, C])."""

    k: int = 1
    fp32_correct: int = 0
    int8_correct: int = 0
    count: int = 0

    def update(self, reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray) -> None:
        refuse_trivial_topk(self.k, np.shape(reference)[-1], "--topk values")
        self.fp32_correct += topk_hits(reference, labels, self.k)
        self.int8_correct += topk_hits(candidate, labels, self.k)
        self.count += len(np.asarray(labels).reshape(-1))

    def summary(self) -> dict:
        """Percent of samples (0..100) for FP32 and INT8; the drop in percentage points (pp)."""
        fp32 = 100.0 * self.fp32_correct / self.count if self.count else float("nan")
        int8 = 100.0 * self.int8_correct / self.count if self.count else float("nan")
        return {"unit": "%", "fp32": fp32, "int8": int8, "drop": fp32 - int8, "drop_unit": "pp"}
