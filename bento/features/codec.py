"""Clinical records to the model's vectors and back: validate, encode, the encoded flat form, decode.

Callers import this through `bento.features`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bento.features import icd9
from bento.features.field import FieldError, Kind, number_text, short_repr
from bento.features.spec import COLUMN_FIELD, COLUMN_INDEX, COLUMNS, FIELDS, FIELDS_BY_NAME

ICD9_LARGEST = 999.99  # the numeric part of the largest code written with two decimals


def validate(record: Mapping[str, Any]) -> dict[str, Any]:
    """Check a clinical record against the spec; return it complete and normalised.

    Raises FieldError for the first unknown field or bad value.
    """
    for name in record:
        if name not in FIELDS_BY_NAME:
            raise FieldError(name, "unknown field")
    return {f.name: f.parse(record.get(f.name)) for f in FIELDS}


def encode(records: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Encode validated records into the model's float32 matrix (NaN where missing)."""
    matrix = np.zeros((len(records), len(COLUMNS)), dtype=np.float32)
    start = 0
    for f in FIELDS:
        width = len(f.columns)
        column = [record[f.name] for record in records]
        if f.kind in (Kind.NUMBER, Kind.CODE):
            matrix[:, start] = [np.nan if v is None else v for v in column]
        elif f.kind is Kind.CATEGORY:
            offsets = {value: start + i for i, value in enumerate(f.encoded_values)}
            for row, value in enumerate(column):
                if value is not None and value != f.default:
                    matrix[row, offsets[value]] = 1.0
        else:
            offsets = {group: start + i for i, group in enumerate(icd9.GROUPS)}
            code_column = start + width - 1
            for row, value in enumerate(column):
                if value is None:
                    matrix[row, code_column] = np.nan
                else:
                    matrix[row, offsets[icd9.group(value)]] = 1.0
                    matrix[row, code_column] = icd9.numeric_value(value)
        start += width
    return matrix


def vector_from_encoded(encoded: Mapping[str, Any]) -> np.ndarray:
    """Build one model row from the encoded flat form (`race_Caucasian: 1.0`, `age_[50-60)`: 1.0 ...).

    One-hot columns not given are 0 (the field's default, or missing where it has none),
    numeric columns not given are missing (NaN).
    Raises FieldError naming the column and the reason.
    """
    row = np.zeros(len(COLUMNS), dtype=np.float32)
    for f in FIELDS:
        if f.kind in (Kind.NUMBER, Kind.CODE):
            row[COLUMN_INDEX[f.name]] = np.nan
        elif f.kind is Kind.ICD9:
            row[COLUMN_INDEX[f"{f.name}_code"]] = np.nan
    for column, value in encoded.items():
        index = COLUMN_INDEX.get(column)
        if index is None:
            raise FieldError(column, "unknown column")
        if value is None:
            continue
        f = FIELDS_BY_NAME[COLUMN_FIELD[index]]
        if f.kind is Kind.ICD9 and column == f.columns[-1]:
            row[index] = _parse_icd9_number(column, value)
        elif f.kind in (Kind.NUMBER, Kind.CODE):
            row[index] = f.parse(value)
        else:
            if isinstance(value, bool) or value not in (0, 1):
                raise FieldError(column, f"a one-hot column must be 0 or 1, got {short_repr(value)}")
            row[index] = float(value)
    for f in FIELDS:
        if f.kind in (Kind.CATEGORY, Kind.ICD9):
            one_hot = f.columns if f.kind is Kind.CATEGORY else f.columns[:-1]
            if row[[COLUMN_INDEX[c] for c in one_hot]].sum() > 1:
                raise FieldError(f.name, "more than one of its one-hot columns is 1")
    return row


def _parse_icd9_number(column: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise FieldError(column, f"must be the numeric part of an ICD-9 code, got {short_repr(value)}")
    if not 1 <= value <= ICD9_LARGEST:  # beyond it, the float32 column would read back as "1000", not a code
        raise FieldError(column, f"{number_text(value)} is outside the ICD-9 range 1 to {ICD9_LARGEST}")
    return float(value)


def decode(row: np.ndarray) -> dict[str, Any]:
    """Turn one encoded row back into a clinical record where that is defined.

    Numbers, codes and categories come back exactly; an ICD-9 diagnosis comes back as its
    numeric code (V and E codes, which have none, come back as None).
    """
    record: dict[str, Any] = {}
    start = 0
    for f in FIELDS:
        width = len(f.columns)
        cells = row[start : start + width]
        if f.kind is Kind.NUMBER:
            record[f.name] = None if np.isnan(cells[0]) else float(cells[0])
        elif f.kind is Kind.CODE:
            record[f.name] = None if np.isnan(cells[0]) else int(cells[0])
        elif f.kind is Kind.CATEGORY:
            hot = np.flatnonzero(cells == 1.0)
            record[f.name] = f.encoded_values[hot[0]] if len(hot) else f.default
        else:
            code = cells[-1]
            record[f.name] = None if np.isnan(code) else f"{float(code):g}"
        start += width
    return record
