"""Realistic encounters for the load test, never constant payloads.

Where they come from, first that works:

1. a prepared file of records (`LOADTEST_ENCOUNTERS` or `--encounters`: JSON lines, optionally gzipped);
2. the held-out test split of the UCI data (`READMISSION_DATA`, else `../shared/data/dataset_diabetes.zip`),
   extracted once with `training.data` and cached in `loadtest/.cache/` (so each Locust process reads it in
   a fraction of a second);
3. records sampled field by field from the value frequencies that training stores with the model
   (`field_distributions` in `model_metadata.json`: `READMISSION_MODEL_METADATA`, else the newest
   `readmission` model in `$BENTOML_HOME`);
4. records sampled from the feature specification alone (allowed values and ranges), with a warning.

Every record passes `bento.features.validate`. The encoded forms (`encoded_form`, `v2_rows`) come from
`bento.features.encode`: the spec is never duplicated here.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import logging
import math
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bento import features
from bento.settings import MODEL_NAME

LOADTEST = Path(__file__).resolve().parent
REPO = LOADTEST.parent
CACHE = LOADTEST / ".cache"
MAX_ATTEMPTS = 50
MAX_RECORDS = int(os.environ.get("LOADTEST_MAX_RECORDS", "5000"))  # per Locust process, from a records file

log = logging.getLogger(__name__)

# ICD-9 codes used only when neither the data nor the model's distributions are at hand.
_FALLBACK_ICD9 = ("428", "414", "786", "410", "486", "427", "276", "250", "250.02", "401", "496", "599", "V57")


@dataclass(frozen=True)
class Encounters:
    """A pool of valid clinical records and where they came from."""

    records: tuple[dict[str, Any], ...]
    source: str
    path: Path | None = None  # the JSON-lines file the records were read from, when there is one

    def __post_init__(self) -> None:
        if not self.records:
            raise ValueError("an encounter pool needs at least one record")

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """One record, drawn at random."""
        return self.records[rng.randrange(len(self.records))]

    def batch(self, rng: random.Random, size: int) -> list[dict[str, Any]]:
        """`size` records drawn at random (with replacement)."""
        return [self.sample(rng) for _ in range(size)]


class DistributionSampler:
    """Draws records field by field from per-field value frequencies ({json value: frequency})."""

    def __init__(self, distributions: Mapping[str, Mapping[str, float]]) -> None:
        self._fields: list[tuple[str, list[Any], list[float]]] = []
        for f in features.FIELDS:
            table = distributions.get(f.name)
            if not table:
                raise ValueError(f"no distribution for field {f.name}")
            values, weights = [], []
            for encoded, weight in table.items():
                value = json.loads(encoded)
                if value is None and f.required and f.default is None:
                    continue  # a required field is never sent missing
                if f.kind is features.Kind.CODE and value in f.out_of_scope:
                    continue
                if weight > 0:
                    values.append(value)
                    weights.append(float(weight))
            if not values:
                raise ValueError(f"field {f.name} has no value the service accepts")
            self._fields.append((f.name, values, list(itertools.accumulate(weights))))

    def record(self, rng: random.Random) -> dict[str, Any]:
        """One valid record (re-drawn until `features.validate` accepts it)."""
        for _ in range(MAX_ATTEMPTS):
            record = {name: rng.choices(values, cum_weights=cum)[0] for name, values, cum in self._fields}
            try:
                return features.validate(record)
            except features.FieldError:
                continue
        raise RuntimeError(f"no valid record in {MAX_ATTEMPTS} draws; the distributions disagree with the spec")

    def records(self, count: int, seed: int = 0) -> list[dict[str, Any]]:
        """`count` records from a seeded generator."""
        rng = random.Random(seed)
        return [self.record(rng) for _ in range(count)]


def spec_distributions() -> dict[str, dict[str, float]]:
    """Plausible frequencies derived from the feature specification alone (the last resort)."""
    result: dict[str, dict[str, float]] = {}
    for f in features.FIELDS:
        if f.kind is features.Kind.NUMBER:
            low, high = int(f.minimum or 0), int(f.maximum or 0)
            top = low + max(1, (high - low) // 4)
            # geometric-ish: small counts are common, large ones rare
            table = {json.dumps(v): 0.8 ** (v - low) for v in range(low, top + 1)}
        elif f.kind is features.Kind.CODE:
            table = {json.dumps(v): 1.0 for v in f.values if v not in f.out_of_scope}
        elif f.kind is features.Kind.ICD9:
            table = {json.dumps(code): 1.0 for code in _FALLBACK_ICD9}
        else:
            table = {json.dumps(v): (8.0 if v == f.default else 1.0) for v in f.values}
            if not f.required and f.default is None:
                table["null"] = 1.0
        total = sum(table.values())
        result[f.name] = {k: v / total for k, v in table.items()}
    return result


# ----------------------------------------------------------------------------------------------------------
# sources


def data_file() -> Path | None:
    """The UCI data: READMISSION_DATA, else the team's shared copy; None when absent (or no training package)."""
    try:
        from training.settings import data_file as training_data_file  # absent from the load-test image
    except ImportError:
        return None
    return training_data_file()


def model_metadata_file() -> Path | None:
    """`model_metadata.json` of the model: READMISSION_MODEL_METADATA, else the newest in $BENTOML_HOME."""
    chosen = os.environ.get("READMISSION_MODEL_METADATA")
    if chosen:
        return Path(chosen) if Path(chosen).is_file() else None
    homes = [os.environ.get("BENTOML_HOME"), REPO / ".readmission" / "bentoml", Path.home() / "bentoml"]
    for home in homes:
        if not home:
            continue
        store = Path(home) / "models" / MODEL_NAME
        latest = store / "latest"
        if latest.is_file():
            candidate = store / latest.read_text().strip() / "model_metadata.json"
            if candidate.is_file():
                return candidate
    return None


def read_records(path: Path, limit: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Records from a JSON-lines file (gzipped when the name ends in .gz), each validated.

    With `limit`, a seeded random subset of that many (validating 15,000 records takes a second).
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip()]
    if limit is not None and len(lines) > limit:
        lines = random.Random(seed).sample(lines, limit)
    return [features.validate(json.loads(line)) for line in lines]


def write_records(records: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Write records as gzipped JSON lines, atomically (several Locust processes may race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    with gzip.open(partial, "wt", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")
    partial.replace(path)
    return path


def heldout_cache_path(data: Path) -> Path:
    """Where the held-out records of this data file are cached (keyed by path, size and mtime)."""
    stat = data.stat()
    key = hashlib.sha256(f"{data.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return CACHE / f"heldout-{key}.jsonl.gz"


def heldout_records(data: Path) -> list[dict[str, Any]]:
    """The held-out test split of the data as validated records, cached after the first extraction.

    The few encounters the service refuses (no primary diagnosis, sex unknown) are left out.
    """
    cached = heldout_cache_path(data)
    if cached.is_file():
        return read_records(cached)
    from training import data as training_data  # pandas; absent from the load-test image

    frame = training_data.clean(training_data.load(data))
    records, refused = [], 0
    for raw in training_data.records(training_data.split(frame).test):
        try:
            records.append(features.validate(raw))
        except features.FieldError:
            refused += 1  # e.g. no primary diagnosis: the service refuses these (4xx), not load
    log.info("held-out split: %d records, %d skipped as the service would refuse them", len(records), refused)
    write_records(records, cached)
    return records


def from_distributions(path: Path, count: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """`count` records sampled from the field distributions in a model_metadata.json."""
    metadata = json.loads(path.read_text())
    return DistributionSampler(metadata["field_distributions"]).records(count, seed)


def load(explicit: str | os.PathLike[str] | None = None, count: int = 2000) -> Encounters:
    """The best pool available (see the module docstring for the order)."""
    chosen = explicit or os.environ.get("LOADTEST_ENCOUNTERS")
    if chosen:
        records = read_records(Path(chosen), limit=MAX_RECORDS)
        return Encounters(tuple(records), f"records file {chosen}", Path(chosen))
    data = data_file()
    if data is not None:
        try:
            records = heldout_records(data)
            return Encounters(tuple(records), f"held-out test split of {data}", heldout_cache_path(data))
        except ImportError as error:  # the training package (pandas) is not installed here
            log.info("cannot read %s here (%s); using the model's distributions", data, error)
    metadata = model_metadata_file()
    if metadata is not None:
        return Encounters(tuple(from_distributions(metadata, count)), f"field distributions in {metadata}")
    log.warning("no data set and no model metadata found: sampling encounters from the feature spec alone")
    return Encounters(tuple(DistributionSampler(spec_distributions()).records(count)), "feature specification")


# ----------------------------------------------------------------------------------------------------------
# request bodies


def encoded_form(record: Mapping[str, Any]) -> dict[str, float]:
    """The encoded flat form of the original design: every non-missing model column of the record."""
    row = features.encode([record])[0]
    return {column: float(value) for column, value in zip(features.COLUMNS, row, strict=True) if not math.isnan(value)}


def v2_rows(records: Sequence[Mapping[str, Any]]) -> list[float | None]:
    """The records as a flat row-major FP32 tensor body for V2 infer (JSON null where missing)."""
    matrix = features.encode(records)
    return [None if math.isnan(v) else v for v in matrix.ravel().tolist()]


def v2_infer_body(records: Sequence[Mapping[str, Any]], request_id: str | None = None) -> dict[str, Any]:
    """A V2 (Open Inference Protocol) infer request for the records, tensor `input-0` of shape [N, columns]."""
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(records), len(features.COLUMNS)],
                "datatype": "FP32",
                "data": v2_rows(records),
            }
        ]
    }
    if request_id is not None:
        body["id"] = request_id
    return body


def summary(pool: Encounters) -> dict[str, Any]:
    """How varied a pool is: record count, distinct records, distinct values per field (for logs and tests)."""
    distinct = {json.dumps(r, sort_keys=True) for r in pool.records}
    per_field = {f.name: len({json.dumps(r[f.name]) for r in pool.records}) for f in features.FIELDS}
    matrix = features.encode(list(pool.records[:1000]))
    return {
        "source": pool.source,
        "records": len(pool.records),
        "distinct_records": len(distinct),
        "distinct_values": per_field,
        "finite_columns": int(np.isfinite(matrix).all(axis=0).sum()),
    }


def main() -> None:
    """Print where the encounters come from and how varied they are (`python -m loadtest.encounters`)."""
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(summary(load()), indent=2))


if __name__ == "__main__":
    main()
