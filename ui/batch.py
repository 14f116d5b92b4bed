"""Scoring a CSV of encounters: rows checked against the spec, valid ones scored in chunks.

The CSV has the columns of the UCI data set ("?" is missing); identifiers such as encounter_id
are kept in the results, columns the spec does not know are ignored.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bento.features import FIELDS, Field, FieldError, Kind
from ui.client import Client

ID_COLUMNS = ("encounter_id", "patient_nbr")
MISSING = ("", "?")


class BatchError(ValueError):
    """The file cannot be read as a CSV of encounters."""


@dataclass
class Upload:
    """A CSV checked row by row."""

    frame: pd.DataFrame  # the file as text, one row per encounter
    valid_rows: list[int] = field(default_factory=list)  # positions in `frame`
    records: list[dict[str, Any]] = field(default_factory=list)  # the records of those rows
    failures: pd.DataFrame = field(default_factory=pd.DataFrame)  # row, identifiers, problems
    missing_columns: list[str] = field(default_factory=list)  # spec fields the file lacks


def read(data: bytes) -> Upload:
    """Parse the CSV and check every row; raises BatchError when it is not a CSV of encounters."""
    try:
        frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise BatchError(f"The file is not a readable CSV ({type(error).__name__}).") from error
    known = [f for f in FIELDS if f.name in frame.columns]
    if not known or frame.empty:
        raise BatchError("The file has no encounters with the columns of the data set (race, gender, age, ...).")
    upload = Upload(frame, missing_columns=[f.name for f in FIELDS if f.name not in frame.columns])
    failures = []
    for position, row in enumerate(frame[[f.name for f in known]].itertuples(index=False, name=None)):
        record, problems = _check(zip(known, row, strict=True))
        if problems:
            identifiers = {c: frame.at[position, c] for c in ID_COLUMNS if c in frame.columns}
            failures.append({"row": position + 1, **identifiers, "problems": "; ".join(problems)})
        else:
            upload.valid_rows.append(position)
            upload.records.append(record)
    upload.failures = pd.DataFrame(failures)
    return upload


def _check(cells: Iterable[tuple[Field, str]]) -> tuple[dict[str, Any], list[str]]:
    record: dict[str, Any] = {}
    problems = []
    for f, text in cells:
        try:
            value = f.parse(_value(f, text))
        except FieldError as error:
            problems.append(f"{f.label} ({f.name}): {error.reason}")
            continue
        if value is not None:
            record[f.name] = value
    return record, problems


def _value(f: Field, text: str) -> Any:
    text = text.strip()
    if text in MISSING:
        return None
    if f.kind in (Kind.NUMBER, Kind.CODE):
        try:
            number = float(text)
        except ValueError:
            return text  # the spec names the problem
        return int(number) if number.is_integer() else number
    return text


def score(
    client: Client, records: list[dict[str, Any]], chunk: int, progress: Callable[[int, int], None] | None = None
) -> list[dict[str, Any]]:
    """The service's answers for `records`, asking at most `chunk` at a time; ServiceError on failure."""
    answers: list[dict[str, Any]] = []
    for start in range(0, len(records), chunk):
        answers.extend(client.predict_batch(records[start : start + chunk])["predictions"])
        if progress:
            progress(len(answers), len(records))
    return answers


def results(upload: Upload, answers: list[dict[str, Any]]) -> pd.DataFrame:
    """The scored rows: row number, the probability, band and flag, then the file's own columns."""
    scored = upload.frame.iloc[upload.valid_rows].reset_index(drop=True)
    scores = pd.DataFrame(
        {
            "row": [position + 1 for position in upload.valid_rows],
            "probability": [a["probability"] for a in answers],
            "risk_band": [a["risk_band"] for a in answers],
            "flagged": [bool(a["label"]) for a in answers],
        }
    )
    return pd.concat([scores, scored.drop(columns=[c for c in scores.columns if c in scored.columns])], axis=1)
