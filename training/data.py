"""The UCI "Diabetes 130-US hospitals 1999-2008" data: locate, verify, read, clean and split."""

from __future__ import annotations

import hashlib
import io
import os
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bento import features
from bento.features import icd9
from training.settings import TrainingSettings

CSV_NAME = "diabetic_data.csv"
CSV_SHA256 = "0689e7ec031237dc63031b938805c48377748761a3b26acab621567afa24df97"  # pragma: allowlist secret
UCI_ARCHIVE_URL = "https://archive.ics.uci.edu/static/public/296/diabetes+130-us+hospitals+for+years+1999-2008.zip"
ID_COLUMNS = ("encounter_id", "patient_nbr")
LABEL_COLUMN = "readmitted"
REQUIRED_COLUMNS = (*ID_COLUMNS, *(f.name for f in features.FIELDS), LABEL_COLUMN)


class DataError(RuntimeError):
    """The data set is missing, unreadable or not what the model expects."""


@dataclass(frozen=True)
class Split:
    """Encounters split by patient: no patient appears in two parts."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    seed: int


def cache_dir() -> Path:
    """Where a downloaded archive is kept (READMISSION_CACHE, default ~/.cache/readmission)."""
    return TrainingSettings.from_env().cache


def locate(path: str | os.PathLike[str] | None = None) -> Path:
    """Find the data: `path`, else READMISSION_DATA, else the cache, else download from UCI."""
    chosen = path or TrainingSettings.from_env().data
    if chosen:
        if not Path(chosen).is_file():
            raise DataError(f"data file {chosen} does not exist")
        return Path(chosen)
    cached = cache_dir() / "dataset_diabetes.zip"
    if cached.is_file():
        return cached
    return _download(cached)


def _download(target: Path) -> Path:
    print(f"downloading the UCI archive to {target} ...", flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    try:
        with urllib.request.urlopen(UCI_ARCHIVE_URL, timeout=30) as response, partial.open("wb") as out:
            out.write(response.read())
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"cannot download the UCI data ({error}); put dataset_diabetes.zip or {CSV_NAME} "
            f"at {target} or point READMISSION_DATA (or --data) at it"
        ) from error
    partial.rename(target)
    return target


def read_csv_bytes(path: Path) -> bytes:
    """The raw bytes of diabetic_data.csv, from the zip as distributed or the extracted CSV."""
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty")
    if not zipfile.is_zipfile(path):
        if path.read_bytes()[:2] == b"PK":
            raise DataError(f"{path} is a truncated or damaged zip archive")
        return path.read_bytes()
    try:
        with zipfile.ZipFile(path) as archive:
            members = [name for name in archive.namelist() if name.rsplit("/", 1)[-1] == CSV_NAME]
            if not members:
                raise DataError(f"{path} holds no {CSV_NAME}")
            return archive.read(members[0])
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise DataError(f"{path} is a truncated or damaged zip archive ({error})") from error


def load(path: Path, verify: bool = True) -> pd.DataFrame:
    """Read and check the raw encounters; `verify` checks the sha256 of the published CSV."""
    raw = read_csv_bytes(path)
    if verify:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != CSV_SHA256:
            raise DataError(
                f"{CSV_NAME} in {path} has sha256 {digest}, not the published {CSV_SHA256} "
                "(a modified copy can be used with --no-verify)"
            )
    header = raw.split(b"\n", 1)[0].decode("utf-8", "replace")
    if "," not in header:
        delimiter = next((d for d in (";", "\t", "|") if d in header), None)
        hint = f" (it looks {delimiter!r}-delimited)" if delimiter else ""
        raise DataError(f"{path} is not a comma-separated file{hint}")
    try:
        frame = pd.read_csv(io.BytesIO(raw), dtype=str, na_values=["?"], keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path} cannot be parsed as CSV: {error}") from error
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks the columns {', '.join(missing)}")
    if frame.empty:
        raise DataError(f"{path} has a header but no encounters")
    return frame


def clean(raw: pd.DataFrame) -> pd.DataFrame:
    """Typed encounters in scope with the target, as the literature prepares this data.

    "?" is missing; "Unknown/Invalid" sex is missing; encounters that ended in death or
    hospice are dropped; the target is readmission within 30 days (`readmitted == "<30"`).
    """
    frame = raw.copy()
    frame["gender"] = frame["gender"].replace("Unknown/Invalid", None)
    for f in features.FIELDS:
        if f.kind in (features.Kind.NUMBER, features.Kind.CODE):
            values = pd.to_numeric(frame[f.name], errors="coerce")
            bad = frame[f.name][values.isna() & frame[f.name].notna()]
            if len(bad):
                raise DataError(f"column {f.name} holds non-numeric values such as {bad.iloc[0]!r}")
            frame[f.name] = values
        elif f.kind is features.Kind.ICD9:
            frame[f.name] = frame[f.name].str.strip().str.upper()
    frame = frame[~frame["discharge_disposition_id"].isin(features.EXCLUDED_DISCHARGES)]
    for f in features.FIELDS:
        present = frame[f.name].dropna()
        if f.kind in (features.Kind.CATEGORY, features.Kind.CODE):
            unknown = sorted(set(present.unique()) - set(f.values), key=str)
            if unknown:
                raise DataError(f"column {f.name} holds values outside the feature spec: {unknown[:5]}")
        elif f.kind is features.Kind.ICD9:
            invalid = present[~present.map(icd9.is_valid)]
            if len(invalid):
                raise DataError(f"column {f.name} holds invalid ICD-9 codes such as {invalid.iloc[0]!r}")
    labels = frame[LABEL_COLUMN]
    if not labels.isin(["<30", ">30", "NO"]).all():
        raise DataError(f"column {LABEL_COLUMN} holds values other than <30, >30, NO")
    frame[features.TARGET] = (labels == "<30").astype(int)
    return frame.drop(columns=[LABEL_COLUMN]).reset_index(drop=True)


def split(frame: pd.DataFrame, seed: int = 42, validation: float = 0.15, test: float = 0.15) -> Split:
    """Split by patient (`patient_nbr`) into train / validation / test with a fixed seed."""
    patients = frame["patient_nbr"].unique()
    order = np.random.default_rng(seed).permutation(len(patients))
    n_test, n_validation = round(len(patients) * test), round(len(patients) * validation)
    part = np.empty(len(patients), dtype=np.int8)
    part[order[:n_test]] = 2
    part[order[n_test : n_test + n_validation]] = 1
    part[order[n_test + n_validation :]] = 0
    assignment = frame["patient_nbr"].map(dict(zip(patients, part, strict=True)))
    parts = [frame[assignment == i].reset_index(drop=True) for i in range(3)]
    return Split(train=parts[0], validation=parts[1], test=parts[2], seed=seed)


def records(frame: pd.DataFrame) -> list[dict]:
    """Encounters as clinical records with the spec's Python types (None where missing)."""
    names = [f.name for f in features.FIELDS]
    typed = frame[names].astype(object).where(frame[names].notna(), None)
    rows = typed.to_dict("records")
    codes = [f.name for f in features.FIELDS if f.kind is features.Kind.CODE]
    numbers = [f.name for f in features.FIELDS if f.kind is features.Kind.NUMBER]
    for row in rows:
        for name in codes:
            if row[name] is not None:
                row[name] = int(row[name])
        for name in numbers:
            if row[name] is not None:
                row[name] = float(row[name])
    return rows


def design_matrix(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The model's input matrix and the target of a cleaned frame."""
    return features.encode(records(frame)), frame[features.TARGET].to_numpy()
