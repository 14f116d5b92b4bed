"""Feature drift: every clinical field of the encoded matrix counted in a few buckets, the same way in training
and in serving.

A field's buckets: a category's values (the field's default is the all-zero one-hot row), a code's values, an
ICD-9 diagnosis's chapter group, a number's bins between quantiles of the training data (at most 10), and
"missing" wherever the encoded matrix can say missing (NaN, or an all-zero one-hot group without a default).
Training stores the reference (`drift_reference` in the model metadata: per field the buckets, the numeric
edges and the training shares); each worker counts the rows it serves in the same buckets
(bento/monitoring/drift_counts.py), and Prometheus compares the two as a PSI per field (observability/prometheus/rules).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from bento import features
from bento.features import icd9

MISSING = "missing"
MAX_BINS = 10


@dataclass(frozen=True)
class FieldBuckets:
    """How one field's encoded columns map to bucket numbers 0 .. len(labels) - 1."""

    field: features.Field
    start: int  # the field's first column
    edges: tuple[float, ...] = ()  # numbers: bin i holds [edges[i - 1], edges[i])

    @property
    def labels(self) -> tuple[str, ...]:
        """The bucket names, in bucket-number order."""
        f = self.field
        if f.kind is features.Kind.CATEGORY:
            return (*f.encoded_values, MISSING if f.default is None else f.default)
        if f.kind is features.Kind.ICD9:
            return (*icd9.GROUPS, MISSING)
        if f.kind is features.Kind.CODE:
            return (*(str(code) for code in f.values), MISSING)
        bins = [f"<{self.edges[0]:g}"] if self.edges else ["all"]
        bins += [f"[{low:g}, {high:g})" for low, high in pairwise(self.edges)]
        bins += [f">={self.edges[-1]:g}"] if self.edges else []
        return (*bins, MISSING)

    def bucket(self, matrix: np.ndarray) -> np.ndarray:
        """The bucket number of every row (int64 [N])."""
        f = self.field
        if f.kind in (features.Kind.CATEGORY, features.Kind.ICD9):
            width = len(f.encoded_values) if f.kind is features.Kind.CATEGORY else len(icd9.GROUPS)
            hot = matrix[:, self.start : self.start + width] == 1
            return np.where(hot.any(axis=1), hot.argmax(axis=1), width)
        column = matrix[:, self.start]
        missing = np.isnan(column)
        if f.kind is features.Kind.CODE:
            table = _code_table(f)
            whole = np.where(missing, -1, column).astype(np.int64)
            known = (whole >= 0) & (whole < len(table))
            return np.where(known, table[np.where(known, whole, 0)], len(f.values))
        return np.where(missing, len(self.edges) + 1, np.searchsorted(self.edges, column, side="right"))


def _code_table(f: features.Field) -> np.ndarray:
    """Code -> bucket number; codes outside the field's list (refused before scoring) count as missing."""
    table = np.full(max(f.values) + 1, len(f.values), dtype=np.int64)
    table[list(f.values)] = np.arange(len(f.values))
    return table


class Buckets:
    """The buckets of every clinical field: one flat numbering over all of them, counted at once."""

    def __init__(self, edges: Mapping[str, tuple[float, ...]]) -> None:
        self.fields = tuple(
            FieldBuckets(f, features.COLUMN_INDEX[f.columns[0]], edges.get(f.name, ())) for f in features.FIELDS
        )
        sizes = [len(b.labels) for b in self.fields]
        self.offsets = np.cumsum([0, *sizes[:-1]])
        self.series: tuple[tuple[str, str], ...] = tuple(
            (b.field.name, label) for b in self.fields for label in b.labels
        )

    def counts(self, matrix: np.ndarray) -> np.ndarray:
        """Rows per (field, bucket), in the order of `series` (int64)."""
        flat = np.concatenate([b.bucket(matrix) + offset for b, offset in zip(self.fields, self.offsets, strict=True)])
        return np.bincount(flat, minlength=len(self.series))


@dataclass(frozen=True)
class Reference:
    """The training distribution: the buckets and the share of training rows in each."""

    buckets: Buckets
    shares: np.ndarray  # float64, in the order of buckets.series

    @classmethod
    def from_training(cls, matrix: np.ndarray) -> Reference:
        """Bin edges from the training rows' quantiles, then the rows' share per bucket."""
        edges = {}
        for f in features.FIELDS:
            if f.kind is features.Kind.NUMBER:
                values = matrix[:, features.COLUMN_INDEX[f.name]]
                values = values[~np.isnan(values)].astype(np.float64)
                quantiles = np.quantile(values, np.linspace(0, 1, MAX_BINS + 1)[1:-1], method="lower")
                edges[f.name] = tuple(float(e) for e in np.unique(quantiles) if e > values.min())
        buckets = Buckets(edges)
        return cls(buckets, buckets.counts(matrix) / len(matrix))

    def to_metadata(self) -> dict[str, Any]:
        """The JSON form stored with the model: per field its buckets, edges and training shares."""
        shares = self.shares.tolist()
        result: dict[str, Any] = {}
        for b, offset in zip(self.buckets.fields, self.buckets.offsets.tolist(), strict=True):
            labels = b.labels
            result[b.field.name] = {
                "buckets": list(labels),
                "edges": list(b.edges),
                "shares": [round(s, 6) for s in shares[offset : offset + len(labels)]],
            }
        return result

    @classmethod
    def from_metadata(cls, stored: Mapping[str, Any]) -> Reference:
        """Read `to_metadata`'s form back; ValueError where it does not fit this feature spec."""
        if list(stored) != [f.name for f in features.FIELDS]:
            raise ValueError("drift_reference does not list the spec's fields")
        buckets = Buckets({name: tuple(float(e) for e in entry["edges"]) for name, entry in stored.items()})
        shares = []
        for b in buckets.fields:
            entry = stored[b.field.name]
            if list(entry["buckets"]) != list(b.labels) or len(entry["shares"]) != len(b.labels):
                raise ValueError(f"drift_reference of {b.field.name} has other buckets than this spec")
            shares.extend(float(s) for s in entry["shares"])
        return cls(buckets, np.array(shares))
