"""Clinical records to the model's vectors and back: validate, encode, the encoded flat form, decode.

Callers import this through `bento.features`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _OneHot:
    """A one-hot field's place in a row: the column of each value (a category's default has none: all zeros) or,
    for an ICD-9 field, of each group, then the column of the code's number."""

    name: str
    columns: Mapping[Any, int]
    number: int | None  # ICD-9 fields only


def _layout() -> tuple[tuple[str, ...], np.ndarray, tuple[_OneHot, ...]]:
    """The number and code fields, their columns, and the one-hot fields, in FIELDS' order."""
    numbers, number_columns, one_hot, start = [], [], [], 0
    for f in FIELDS:
        if f.kind in (Kind.NUMBER, Kind.CODE):
            numbers.append(f.name)
            number_columns.append(start)
        else:
            values = icd9.GROUPS if f.kind is Kind.ICD9 else f.encoded_values
            number = start + len(f.columns) - 1 if f.kind is Kind.ICD9 else None
            one_hot.append(_OneHot(f.name, {value: start + i for i, value in enumerate(values)}, number))
        start += len(f.columns)
    return tuple(numbers), np.array(number_columns), tuple(one_hot)


_NUMBERS, _NUMBER_COLUMNS, _ONE_HOT = _layout()


def encode(records: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Encode validated records into the model's float32 matrix (NaN where missing). A few numpy calls whatever the
    number of records and fields: the numbers in one assignment, the one-hot columns (and ICD-9 codes' numbers) in
    one scatter each."""
    width = len(COLUMNS)
    matrix = np.zeros((len(records), width), dtype=np.float32)
    numbers = [[math.nan if record[name] is None else record[name] for name in _NUMBERS] for record in records]
    matrix[:, _NUMBER_COLUMNS] = np.array(numbers, dtype=np.float64).reshape(len(records), len(_NUMBERS))
    ones, at, values = [], [], []  # flat indices of the ones, flat indices and values of the codes' numbers
    for field in _ONE_HOT:
        for row, record in enumerate(records):
            value = record[field.name]
            if field.number is None:
                if value in field.columns:  # None and the default have no column
                    ones.append(row * width + field.columns[value])
            elif value is None:
                at.append(row * width + field.number)
                values.append(math.nan)
            else:
                ones.append(row * width + field.columns[icd9.group(value)])
                at.append(row * width + field.number)
                values.append(icd9.numeric_value(value))
    flat = matrix.reshape(-1)
    flat[ones] = 1.0
    flat[at] = values
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
