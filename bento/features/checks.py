"""The vectorised check of a whole encoded matrix (the V2 tensor path): bounds, one-hot groups, allowed codes.

A matrix of up to QUICK_ROWS rows is first tested by `_passes`, a dozen operations that accept only valid matrices
(a single row in 11 µs instead of 24); one it does not accept, and every larger one, gets the full check, which
names the first offending row and column. Callers import this through `bento.features`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bento.features.field import FieldError, Kind
from bento.features.spec import COLUMN_INDEX, COLUMNS, FIELDS, FIELDS_BY_NAME


@dataclass(frozen=True)
class _MatrixRules:
    """Per-column bounds and group tables that validate a whole encoded matrix at once."""

    low: np.ndarray  # float32 per column; the lowest finite float32 where unbounded, so infinities are outside
    high: np.ndarray
    one_hot: np.ndarray  # bool per column
    group_starts: np.ndarray  # first column of each one-hot group (a group's columns are contiguous)
    group_names: tuple[str, ...]
    code_columns: np.ndarray  # indices of integer-code columns
    code_allowed: np.ndarray  # [code columns, max code + 1]: True for allowed codes
    # the quick test's tables: bounds that hold one-hot cells in [0, 1] and codes in [0, max code] too
    quick_low: np.ndarray
    quick_high: np.ndarray
    hot_columns: np.ndarray  # the one-hot columns, group after group
    hot_groups: np.ndarray  # float32 [one-hot columns, groups]: 1 where the column is one of the group's
    code_values: tuple[frozenset[float], ...]  # per code column, its allowed codes

    @classmethod
    def build(cls) -> _MatrixRules:
        finite = np.finfo(np.float32).max
        low = np.full(len(COLUMNS), -finite, dtype=np.float32)
        high = np.full(len(COLUMNS), finite, dtype=np.float32)
        one_hot = np.zeros(len(COLUMNS), dtype=bool)
        hot_groups: list[tuple[str, list[int]]] = []
        codes = [f for f in FIELDS if f.kind is Kind.CODE]
        allowed = np.zeros((len(codes), max(max(f.values) for f in codes) + 1), dtype=bool)
        for f in FIELDS:
            indices = [COLUMN_INDEX[c] for c in f.columns]
            if f.kind is Kind.NUMBER:
                low[indices], high[indices] = f.minimum, f.maximum
            elif f.kind in (Kind.CATEGORY, Kind.ICD9):
                hot = indices if f.kind is Kind.CATEGORY else indices[:-1]
                one_hot[hot] = True
                hot_groups.append((f.name, hot))
                if f.kind is Kind.ICD9:
                    low[indices[-1]], high[indices[-1]] = 1.0, 999.99
        for row, f in enumerate(codes):
            allowed[row, list(f.values)] = True
        if any(hot != list(range(hot[0], hot[0] + len(hot))) for _, hot in hot_groups):
            raise AssertionError("a one-hot group's columns are not contiguous")
        starts = np.array([hot[0] for _, hot in hot_groups])
        code_columns = np.array([COLUMN_INDEX[f.name] for f in codes])
        quick_low, quick_high = low.copy(), high.copy()
        quick_low[one_hot], quick_high[one_hot] = 0.0, 1.0
        quick_low[code_columns], quick_high[code_columns] = 0.0, allowed.shape[1] - 1
        hot_columns = np.array([column for _, hot in hot_groups for column in hot])
        membership = np.zeros((len(hot_columns), len(hot_groups)), dtype=np.float32)
        membership[np.arange(len(hot_columns)), [g for g, (_, hot) in enumerate(hot_groups) for _ in hot]] = 1.0
        code_values = tuple(frozenset(float(v) for v in f.values) for f in codes)
        return cls(
            low, high, one_hot, starts, tuple(n for n, _ in hot_groups), code_columns, allowed,
            quick_low, quick_high, hot_columns, membership, code_values,
        )  # fmt: skip


_RULES = _MatrixRules.build()
QUICK_ROWS = 16  # larger matrices go straight to the full check: its fewer passes over the data are then cheaper


def check_matrix(matrix: np.ndarray) -> None:
    """Validate an encoded matrix [N, len(COLUMNS)] as a whole; NaN means missing.

    Vectorised (a few numpy operations whatever the size). Raises FieldError naming the first
    offending row and column.
    """
    if len(matrix) > QUICK_ROWS or not _passes(matrix):
        _check_in_full(matrix)


def _passes(matrix: np.ndarray) -> bool:
    """Whether the matrix is valid, for sure; False where it may not be (the full check then decides)."""
    rules = _RULES
    if ((matrix < rules.quick_low) | (matrix > rules.quick_high)).any():  # NaN compares False: missing passes
        return False
    hot = matrix.take(rules.hot_columns, axis=1)
    # within [0, 1] (or NaN), a one-hot cell that equals its rounding is 0 or 1; its group then sums to at most 1
    if not (np.rint(hot) == hot).all() or ((hot @ rules.hot_groups) > 1).any():
        return False
    codes = matrix.take(rules.code_columns, axis=1).tolist()
    return all(v != v or v in allowed for row in codes for v, allowed in zip(row, rules.code_values, strict=True))


def _check_in_full(matrix: np.ndarray) -> None:
    """Raise FieldError for the first offending row and column of `matrix`, if any."""
    rules = _RULES
    with np.errstate(invalid="ignore"):
        bad = (matrix < rules.low) | (matrix > rules.high)  # NaN compares False: missing passes here
        bad |= rules.one_hot & ~((matrix == 0) | (matrix == 1))
    if bad.any():
        row, column = np.argwhere(bad)[0]
        value = matrix[row, column]
        reason = "must be 0 or 1 (one-hot)" if rules.one_hot[column] else f"{value:g} is outside the column's range"
        raise FieldError(f"row {row} column {COLUMNS[column]}", reason)
    # one-hot cells are 0 or 1 by now; each group's columns run from its start to the next group's
    several = np.add.reduceat(np.where(rules.one_hot, matrix, 0), rules.group_starts, axis=1) > 1
    if several.any():
        row, group = np.argwhere(several)[0]
        raise FieldError(f"row {row} field {rules.group_names[group]}", "more than one of its one-hot columns is 1")
    codes = matrix[:, rules.code_columns]
    missing = np.isnan(codes)
    whole = np.where(missing, 0, codes)
    in_table = (whole == np.round(whole)) & (whole >= 0) & (whole < rules.code_allowed.shape[1])
    index = np.where(in_table, whole, 0).astype(np.intp)
    valid = missing | (in_table & rules.code_allowed[np.arange(len(rules.code_columns)), index])
    if not valid.all():
        row, j = np.argwhere(~valid)[0]
        f = FIELDS_BY_NAME[COLUMNS[rules.code_columns[j]]]
        value = codes[row, j]
        reason = "is outside the model's scope" if value in f.out_of_scope else "is not an allowed code"
        raise FieldError(f"row {row} column {f.name}", f"{value:g} {reason}")
