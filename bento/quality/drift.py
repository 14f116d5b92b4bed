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

    @property
    def width(self) -> int:
        """A category's or diagnosis's one-hot columns (0 for a one-column field)."""
        f = self.field
        if f.kind is features.Kind.CATEGORY:
            return len(f.encoded_values)
        return len(icd9.GROUPS) if f.kind is features.Kind.ICD9 else 0


def _code_table(f: features.Field) -> np.ndarray:
    """Code -> bucket number; codes outside the field's list (refused before scoring) count as missing."""
    table = np.full(max(f.values) + 1, len(f.values), dtype=np.int64)
    table[list(f.values)] = np.arange(len(f.values))
    return table


class _Numbering:
    """Every field's bucket numbers as arrays over all fields of a kind, so that a flush's rows are bucketed with a
    few numpy calls whatever the number of fields (a call per field cost the log's writer thread 0.35-0.9 ms a
    flush, at up to 10 flushes a second).

    One-hot fields (categories, diagnoses): the first hot column's place in its group, the group's width where none is
    hot (the default or missing bucket); found with one matrix product where no group has two hot columns (as in every
    checked row), else with a minimum over each group. Codes: the code's place in the field's list, missing where it is
    NaN or not listed. Numbers: the edges at or below the value (np.searchsorted's side="right"), missing where NaN."""

    def __init__(self, fields: tuple[FieldBuckets, ...]) -> None:
        kinds = [b.field.kind for b in fields]
        hot = [i for i, b in enumerate(fields) if b.width]
        codes = [i for i, kind in enumerate(kinds) if kind is features.Kind.CODE]
        numbers = [i for i, kind in enumerate(kinds) if kind is features.Kind.NUMBER]
        widths = [fields[i].width for i in hot]
        self.hot_fields = np.array(hot)
        self.hot_columns = np.concatenate([np.arange(fields[i].start, fields[i].start + fields[i].width) for i in hot])
        self.hot_places = np.concatenate([np.arange(width) for width in widths])
        self.hot_none = np.repeat(widths, widths)  # in every column of a group: the group's width
        self.hot_starts = np.cumsum([0, *widths[:-1]])
        group = np.repeat(np.arange(len(hot)), widths)
        members = np.zeros((len(group), len(hot)), dtype=np.float32)  # 1 where a column is one of the group's
        members[np.arange(len(group)), group] = 1.0
        places = members * (self.hot_places + 1).astype(np.float32)[:, None]  # a column's place + 1 in its group
        self.hot_products = np.hstack([members, places])  # hot cells @ this: hot columns, then place + 1, a group
        self.hot_widths = np.array(widths)
        tables = [_code_table(fields[i].field) for i in codes]
        self.code_fields = np.array(codes)
        self.code_columns = np.array([fields[i].start for i in codes])
        self.code_table = np.concatenate(tables)
        self.code_starts = np.cumsum([0, *(len(t) for t in tables[:-1])])
        self.code_sizes = np.array([len(t) for t in tables])
        self.code_missing = np.array([len(fields[i].field.values) for i in codes])
        edges = [fields[i].edges for i in numbers]
        self.number_fields = np.array(numbers)
        self.number_columns = np.array([fields[i].start for i in numbers])
        self.number_edges = np.full((len(numbers), max(map(len, edges), default=0)), np.nan)  # NaN: never at or below
        for row, field_edges in enumerate(edges):
            self.number_edges[row, : len(field_edges)] = field_edges
        self.number_missing = np.array([len(e) + 1 for e in edges])
        self.fields = len(fields)

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        """The bucket number of every row and field (int64 [N, fields])."""
        numbers = np.empty((len(matrix), self.fields), dtype=np.int64)
        numbers[:, self.hot_fields] = self._hot(matrix[:, self.hot_columns] == 1)
        codes = matrix[:, self.code_columns]
        whole = np.where(np.isnan(codes), -1, codes).astype(np.int64)
        known = (whole >= 0) & (whole < self.code_sizes)
        listed = self.code_table[self.code_starts + np.where(known, whole, 0)]
        numbers[:, self.code_fields] = np.where(known, listed, self.code_missing)
        values = matrix[:, self.number_columns]
        at_or_below = (values[:, :, None] >= self.number_edges).sum(axis=2)
        numbers[:, self.number_fields] = np.where(np.isnan(values), self.number_missing, at_or_below)
        return numbers

    def _hot(self, hot: np.ndarray) -> np.ndarray:
        """The bucket of every row and one-hot group, from whether each one-hot column is hot (bool [N, columns])."""
        count, place = np.hsplit(hot.astype(np.float32) @ self.hot_products, 2)
        if count.max(initial=0) <= 1:
            return np.where(count == 0, self.hot_widths, place.astype(np.int64) - 1)
        return np.minimum.reduceat(np.where(hot, self.hot_places, self.hot_none), self.hot_starts, axis=1)


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
        self._numbering = _Numbering(self.fields)

    def counts(self, matrix: np.ndarray) -> np.ndarray:
        """Rows per (field, bucket), in the order of `series` (int64)."""
        return np.bincount((self._numbering(matrix) + self.offsets).ravel(), minlength=len(self.series))


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
