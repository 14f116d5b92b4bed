"""Unusual patients: whether an encoded row lies outside what the model learned from, and why.

Training stores the reference (`unusual_reference` in the model metadata), computed on the training split only:

- every count's training range: a value above its maximum or below its minimum is `above_training_range` or
  `below_training_range`;
- every category value, admission code and diagnosis chapter (and "missing", where a field may be missing) whose
  share of the training rows is below RARE_SHARE: `rare_category` (categories) or `rare_code` (admission codes and
  ICD-9 chapters), including values never seen in training (share 0);
- a multivariate outlier score: the squared Mahalanobis distance of the row's counts, log1p-transformed (the counts
  are right-skewed: a log brings them nearer a normal shape, where the distance is meaningful), to the training
  mean under the training covariance; above its training OUTLIER_QUANTILE it is `outlier_score`. Chosen because it
  sees combinations that no single range sees (many medications for a one-day stay), is fitted in one pass,
  stores a mean and an 8 x 8 matrix, and scores a batch with one matrix product: microseconds a row.

Missing counts and codes (NaN, possible only in V2 matrices) are never flagged by the range, code or outlier tests.
The check reads the encoded matrix, so every protocol shares it; it never changes a prediction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from bento import features
from bento.quality import drift

RARE_SHARE = 0.001  # a category, code or chapter held by fewer than 0.1% of the training rows is rare
OUTLIER_QUANTILE = 0.99  # about 1% of the training rows score above the outlier threshold, by construction
NUMBER_FIELDS = tuple(f for f in features.FIELDS if f.kind is features.Kind.NUMBER)
_NUMBER_COLUMNS = np.array([features.COLUMN_INDEX[f.name] for f in NUMBER_FIELDS])


class Reason(StrEnum):
    """Why a row is unusual: a closed set (the metric's label values)."""

    ABOVE_RANGE = "above_training_range"
    BELOW_RANGE = "below_training_range"
    RARE_CATEGORY = "rare_category"
    RARE_CODE = "rare_code"
    OUTLIER = "outlier_score"


@dataclass(frozen=True)
class Finding:
    """One reason a row is unusual, and the field it concerns (None for the outlier score)."""

    field: str | None
    reason: Reason

    def as_json(self) -> dict[str, str | None]:
        """The answer's form: {"field": ..., "reason": ...}."""
        return {"field": self.field, "reason": self.reason.value}


@dataclass(frozen=True)
class Reference:
    """What the training rows held: the counts' ranges, the rare buckets, the outlier model and its threshold."""

    ranges: dict[str, tuple[float, float]]  # count field -> (training minimum, maximum)
    rare: dict[str, tuple[str, ...]]  # field -> its rare buckets, named as bento/quality/drift.py names them
    mean: np.ndarray  # float64 [len(NUMBER_FIELDS)]: the mean of log1p(counts)
    whitening: np.ndarray  # float64 [k, k]: |(log1p(x) - mean) @ whitening|^2 is the squared Mahalanobis distance
    threshold: float  # the training OUTLIER_QUANTILE of that distance

    @classmethod
    def from_training(cls, matrix: np.ndarray) -> Reference:
        """Fit on the training split's encoded rows."""
        counts = matrix[:, _NUMBER_COLUMNS].astype(np.float64)
        ranges = {
            f.name: (float(np.nanmin(counts[:, i])), float(np.nanmax(counts[:, i])))
            for i, f in enumerate(NUMBER_FIELDS)
        }
        shares = drift.Reference.from_training(matrix)
        rare = {}
        for b, offset in zip(shares.buckets.fields, shares.buckets.offsets.tolist(), strict=True):
            if b.field.kind is not features.Kind.NUMBER:
                labels = b.labels
                found = [label for i, label in enumerate(labels) if shares.shares[offset + i] < RARE_SHARE]
                rare[b.field.name] = tuple(label for label in found if _can_occur(b.field, label))
        logs = np.log1p(counts[~np.isnan(counts).any(axis=1)])
        mean = logs.mean(axis=0)
        values, vectors = np.linalg.eigh(np.cov(logs, rowvar=False))
        whitening = vectors / np.sqrt(np.maximum(values, 1e-9))
        distances = np.sum(((logs - mean) @ whitening) ** 2, axis=1)
        return cls(ranges, rare, mean, whitening, float(np.quantile(distances, OUTLIER_QUANTILE)))

    def to_metadata(self) -> dict[str, Any]:
        """The JSON form stored with the model."""
        return {
            "rare_share": RARE_SHARE,
            "outlier_quantile": OUTLIER_QUANTILE,
            "ranges": {name: list(bounds) for name, bounds in self.ranges.items()},
            "rare": {name: list(labels) for name, labels in self.rare.items()},
            "outlier": {
                "fields": [f.name for f in NUMBER_FIELDS],
                "mean": self.mean.tolist(),
                "whitening": self.whitening.tolist(),
                "threshold": self.threshold,
            },
        }

    @classmethod
    def from_metadata(cls, stored: Mapping[str, Any]) -> Reference:
        """Read `to_metadata`'s form back; ValueError where it does not fit this feature spec."""
        outlier = stored["outlier"]
        names = [f.name for f in NUMBER_FIELDS]
        if outlier["fields"] != names or sorted(stored["ranges"]) != sorted(names):
            raise ValueError("unusual_reference does not list the spec's counts")
        rare = {name: tuple(str(label) for label in labels) for name, labels in stored["rare"].items()}
        for name, labels in rare.items():
            if name not in features.FIELDS_BY_NAME or not set(labels) <= set(_labels(features.FIELDS_BY_NAME[name])):
                raise ValueError(f"unusual_reference of {name} names buckets this spec does not have")
        mean, whitening = np.array(outlier["mean"], dtype=np.float64), np.array(outlier["whitening"], dtype=np.float64)
        if mean.shape != (len(names),) or whitening.shape != (len(names), len(names)):
            raise ValueError("unusual_reference's outlier model has the wrong shape")
        ranges = {name: (float(low), float(high)) for name, (low, high) in stored["ranges"].items()}
        return cls(ranges, rare, mean, whitening, float(outlier["threshold"]))


def _labels(f: features.Field) -> tuple[str, ...]:
    return drift.FieldBuckets(f, features.COLUMN_INDEX[f.columns[0]]).labels


def _can_occur(f: features.Field, label: str) -> bool:
    """Whether a checked row can hold this bucket: a required field is never missing, and a missing code (NaN, in
    a V2 matrix) is not tested."""
    return label != drift.MISSING or not (f.required or f.kind is features.Kind.CODE)


class Check:
    """The reference compiled into a few arrays, to check a batch with a handful of numpy operations (a single row
    with one-dimensional ones, which cost less).

    Every single-field test is "the column's value lies in [low, high]" (NaN never does), in float32 as the matrix
    is: a count above its range lies in (training maximum, spec maximum], below it in [spec minimum, training
    minimum), a rare one-hot value in [1, 1], a rare code c in [c, c]. The counts are taken once, with the tested
    columns, for the outlier score. A field whose rare bucket is its all-zero one-hot row (its default, or missing)
    is tested by the sum of its group.
    """

    def __init__(self, reference: Reference) -> None:
        self.reference = reference
        columns: list[int] = []
        bounds: list[tuple[float, float]] = []
        self.slots: list[Finding] = []
        self.zero_groups: list[tuple[np.ndarray, Finding]] = []

        def slot(column: int, low: float, high: float, finding: Finding) -> None:
            columns.append(column)
            bounds.append((low, high))
            self.slots.append(finding)

        for f in features.FIELDS:
            start = features.COLUMN_INDEX[f.columns[0]]
            if f.kind is features.Kind.NUMBER:
                assert f.minimum is not None and f.maximum is not None
                minimum, maximum = (np.float32(bound) for bound in reference.ranges[f.name])
                slot(
                    start,
                    float(np.nextafter(maximum, np.float32(np.inf))),
                    f.maximum,
                    Finding(f.name, Reason.ABOVE_RANGE),
                )
                slot(
                    start,
                    f.minimum,
                    float(np.nextafter(minimum, np.float32(-np.inf))),
                    Finding(f.name, Reason.BELOW_RANGE),
                )
                continue
            reason = Reason.RARE_CATEGORY if f.kind is features.Kind.CATEGORY else Reason.RARE_CODE
            labels = _labels(f)
            width = len(labels) - 1  # every bucket but the last (missing, or the default) has a column or a code
            for label in reference.rare.get(f.name, ()):
                index = labels.index(label)
                if index == width:  # the all-zero one-hot row: the default, or missing (never a code's: _can_occur)
                    self.zero_groups.append((start + np.arange(width), Finding(f.name, reason)))
                elif f.kind is features.Kind.CODE:
                    slot(start, f.values[index], f.values[index], Finding(f.name, reason))
                else:
                    slot(start + index, 1.0, 1.0, Finding(f.name, reason))
        self.tested = len(columns)
        self.columns = np.array([*columns, *_NUMBER_COLUMNS], dtype=np.intp)
        self.low, self.high = np.array(bounds, dtype=np.float32).T.copy()
        self.threshold = reference.threshold
        self.whitening = reference.whitening.astype(np.float32)
        self.center = (reference.mean @ reference.whitening).astype(np.float32)

    def findings(self, matrix: np.ndarray) -> list[list[Finding]]:
        """Per row of the encoded matrix (float32 [N, COLUMNS]), why it is unusual (an empty list when it is not)."""
        single = len(matrix) == 1
        values = (matrix[0] if single else matrix).take(self.columns, axis=-1)
        tested = values[..., : self.tested]
        inside = (tested >= self.low) & (tested <= self.high)
        z = np.log1p(values[..., self.tested :]) @ self.whitening - self.center
        outliers = (z @ z if single else np.einsum("ij,ij->i", z, z)) > self.threshold
        result: list[list[Finding]] = [[] for _ in range(len(matrix))]
        if np.count_nonzero(inside):
            rows, slots = np.nonzero(inside.reshape(len(matrix), -1))
            for row, index in zip(rows.tolist(), slots.tolist(), strict=True):
                result[row].append(self.slots[index])
        for hot, finding in self.zero_groups:
            for row in np.flatnonzero(matrix[:, hot].sum(axis=1) == 0).tolist():
                result[row].append(finding)
        if np.count_nonzero(outliers):
            for row in np.flatnonzero(outliers).tolist():
                result[row].append(OUTLIER_FINDING)
        return result


OUTLIER_FINDING = Finding(None, Reason.OUTLIER)
