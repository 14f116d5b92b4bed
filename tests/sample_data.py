"""A small synthetic data set with the real UCI schema, for tests that must not need the file."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

from bento import features
from training import data

ICD9_EXAMPLES = ("428", "250.83", "414", "786", "V57", "E885", "38", "250.02", "682", "599")


def rows(count: int = 600, seed: int = 7) -> list[dict[str, str]]:
    """Raw CSV rows as UCI writes them ('?' for missing, 'None' for a lab not measured)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        row: dict[str, str] = {"encounter_id": str(1000 + i), "patient_nbr": str(rng.randrange(count // 2))}
        for f in features.FIELDS:
            if f.kind is features.Kind.NUMBER:
                value = str(rng.randint(int(f.minimum or 0), min(int(f.maximum or 10), 30)))
            elif f.kind is features.Kind.ICD9:
                value = rng.choice(ICD9_EXAMPLES)
            elif f.kind is features.Kind.CODE:
                value = str(rng.choice(f.values))
            else:
                value = rng.choice(f.values)
            if not f.required and f.default is None and rng.random() < 0.1:
                value = "?"
            row[f.name] = value
        inpatient = int(row["number_inpatient"])
        row["readmitted"] = "<30" if rng.random() < 0.05 + inpatient / 40 else rng.choice([">30", "NO"])
        out.append(row)
    out[0]["discharge_disposition_id"] = "11"  # expired: must be dropped by cleaning
    return out


def csv_text(sample: list[dict[str, str]], delimiter: str = ",") -> str:
    """The rows as CSV text with the data set's column order."""
    columns = list(data.REQUIRED_COLUMNS)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    writer.writerows(sample)
    return buffer.getvalue()


def write_csv(folder: Path, count: int = 600) -> Path:
    """A synthetic diabetic_data.csv in `folder`."""
    path = folder / data.CSV_NAME
    path.write_text(csv_text(rows(count)))
    return path
