"""Feature drift without a server: the buckets of the encoded matrix, the training reference stored with the
model, and the PSI that Prometheus computes (the recording rule's formula, here in numpy) on the real held-out
rows and on a shifted stream of them (emergency admissions of patients over 80)."""

from __future__ import annotations

import bisect
import json
import time

import numpy as np
import pytest
from prometheus_client import REGISTRY

from bento import features
from bento.monitoring import drift_counts
from bento.predictionlog.store import LoggedBatch
from bento.quality import drift
from bento.quality.privacy import PUBLISH_ROWS
from observability.thresholds import FEATURE_PSI_THRESHOLD, PSI_EPSILON
from tests import sample_data
from tests.helpers import matrix_of, old_emergencies
from training import data


def psi(reference: drift.Reference, counts: np.ndarray) -> dict[str, float]:
    """PSI per field as the rule field:readmission_feature_psi:1h computes it: shares clamped, sum (p - q) ln(p / q)."""
    result = {}
    buckets = reference.buckets
    for b, offset in zip(buckets.fields, buckets.offsets.tolist(), strict=True):
        part = slice(offset, offset + len(b.labels))
        served = np.maximum(counts[part] / counts[part].sum(), PSI_EPSILON)
        training = np.maximum(reference.shares[part], PSI_EPSILON)
        result[b.field.name] = float(np.sum((served - training) * np.log(served / training)))
    return result


@pytest.fixture(scope="module")
def split(request, tmp_path_factory) -> data.Split:
    """The real data's train / validation / test split (seed 42), else a large synthetic sample's."""
    try:
        source, verify = request.getfixturevalue("uci_zip"), True
    except pytest.skip.Exception:
        source, verify = sample_data.write_csv(tmp_path_factory.mktemp("drift"), count=20_000), False
    return data.split(data.clean(data.load(source, verify=verify)), seed=42)


@pytest.fixture(scope="module")
def matrices(split) -> tuple[np.ndarray, np.ndarray]:
    return data.design_matrix(split.train)[0], data.design_matrix(split.test)[0]


@pytest.fixture(scope="module")
def reference(matrices) -> drift.Reference:
    return drift.Reference.from_training(matrices[0])


def test_every_row_lands_in_one_bucket_of_every_field_and_training_shares_sum_to_one(reference, matrices):
    test = matrices[1]
    counts = reference.buckets.counts(test)
    stored = reference.to_metadata()
    assert list(stored) == [f.name for f in features.FIELDS]
    for b, offset in zip(reference.buckets.fields, reference.buckets.offsets.tolist(), strict=True):
        labels = stored[b.field.name]["buckets"]
        assert len(labels) == len(set(labels)) <= 80
        assert sum(stored[b.field.name]["shares"]) == pytest.approx(1, abs=1e-4), b.field.name
        assert counts[offset : offset + len(labels)].sum() == len(test), b.field.name
        if b.field.kind is features.Kind.NUMBER:
            assert len(labels) <= drift.MAX_BINS + 1, b.field.name  # the bins and "missing"
    assert len(reference.buckets.series) == len(set(reference.buckets.series)) < 500  # bounded Prometheus series


def test_served_counts_of_known_rows(reference):
    example = dict(features.EXAMPLE_PATIENT)
    other = example | {"age": "[90-100)", "admission_type_id": 3, "diag_3": None, "number_inpatient": 0}
    matrix = np.vstack([matrix_of([example, other]), matrix_of([other])])
    matrix[2, features.COLUMN_INDEX["time_in_hospital"]] = np.nan  # missing, as a V2 tensor may send it
    matrix[2, features.COLUMN_INDEX["race_Caucasian"]] = 0  # race not recorded
    counts = dict(zip(reference.buckets.series, reference.buckets.counts(matrix).tolist(), strict=True))
    expected = {
        ("age", "[70-80)"): 1,
        ("age", "[90-100)"): 2,
        ("admission_type_id", "1"): 1,
        ("admission_type_id", "3"): 2,
        ("race", "Caucasian"): 2,
        ("race", "missing"): 1,
        ("insulin", "Up"): 3,
        ("glipizide", "No"): 3,  # the default: an all-zero one-hot group
        ("diag_1", "circulatory"): 3,  # 428
        ("diag_2", "diabetes"): 3,  # 250.02
        ("diag_3", "supplementary"): 1,  # V45
        ("diag_3", "missing"): 2,
        ("time_in_hospital", "missing"): 1,
    }
    for series, count in expected.items():
        assert counts[series] == count, series
    inpatient = {bucket: n for (name, bucket), n in counts.items() if name == "number_inpatient" and n}
    assert inpatient == {"<1": 2, ">=2": 1}
    assert sum(n for (name, _), n in counts.items() if name == "race") == 3


def test_the_reference_survives_the_model_metadata(reference):
    stored = json.loads(json.dumps(reference.to_metadata()))
    again = drift.Reference.from_metadata(stored)
    assert again.buckets.series == reference.buckets.series
    assert np.abs(again.shares - reference.shares).max() < 1e-6
    stored["age"]["buckets"] = stored["age"]["buckets"][:-1]
    with pytest.raises(ValueError, match="age"):
        drift.Reference.from_metadata(stored)
    with pytest.raises(ValueError, match="fields"):
        drift.Reference.from_metadata({"age": stored["age"]})


def test_a_model_without_a_reference_serves_with_drift_off(caplog):
    assert drift_counts.consumers(None) == []
    assert "feature drift is off" in caplog.text


def test_held_out_rows_do_not_drift_and_a_shifted_stream_does(reference, matrices, figure):
    test = matrices[1]
    unshifted = psi(reference, reference.buckets.counts(test))
    assert max(unshifted.values()) < 0.1, sorted(unshifted.items(), key=lambda kv: -kv[1])[:3]
    shifted = old_emergencies(test)
    assert len(shifted) >= 300
    moved = psi(reference, reference.buckets.counts(shifted))
    assert moved["age"] > FEATURE_PSI_THRESHOLD and moved["admission_type_id"] > FEATURE_PSI_THRESHOLD
    assert moved["gender"] < FEATURE_PSI_THRESHOLD  # not every field moves with them
    figure("held-out rows: largest PSI", f"{max(unshifted.values()):.4f}")
    figure("shifted rows: PSI of age, admission type", f"{moved['age']:.2f}, {moved['admission_type_id']:.2f}")


def test_counting_a_flush_is_cheap(reference, matrices, figure):
    rows = matrices[1][:5000]
    started = time.perf_counter()
    reference.buckets.counts(rows)
    seconds = time.perf_counter() - started
    figure("bucket counts of 5,000 rows (ms)", f"{seconds * 1000:.1f}")
    assert seconds < 1.0  # the writer thread flushes twice a second


def served_counts(series: tuple[tuple[str, str], ...]) -> np.ndarray:
    """readmission_feature_rows_total per (field, bucket) as this process publishes it."""
    published = {
        (sample.labels["field"], sample.labels["bucket"]): sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == "readmission_feature_rows_total"
    }  # one walk over the registry: a look-up per series walks it each time (a quarter of a second for them all)
    return np.array([published.get(key, 0.0) for key in series])


def test_a_flush_larger_than_the_sample_is_counted_evenly(reference, matrices):
    """1,000 rows aged [80-90) then 9,000 of another band in one flush: the published shares are the whole flush's
    within sampling error (a consumer counting only the first SAMPLE_ROWS rows would publish about half [80-90))."""
    rows = matrices[1][np.resize(np.arange(200), 10_000)].copy()  # ages as varied as the first 200 held-out rows
    ages = [features.COLUMN_INDEX[c] for c in features.COLUMNS if c.startswith("age_")]
    rows[:, ages] = 0
    rows[:1000, features.COLUMN_INDEX["age_[80-90)"]] = 1
    rows[1000:, features.COLUMN_INDEX["age_[40-50)"]] = 1
    batches = [  # the flush as the log hands it over: several model calls
        LoggedBatch("", len(part), 0.0, "1", np.zeros(len(part), np.float32), np.zeros(len(part), np.int64), part)
        for part in np.array_split(rows, 7)
    ]
    series = reference.buckets.series
    before = served_counts(series)
    (count,) = drift_counts.consumers(reference)
    count(batches)
    published, whole = served_counts(series) - before, reference.buckets.counts(rows)
    age = [i for i, (name, _) in enumerate(series) if name == "age"]
    sampled = published[age].sum()
    assert drift_counts.SAMPLE_ROWS // 2 < sampled <= drift_counts.SAMPLE_ROWS
    shares, expected = published[age] / sampled, whole[age] / len(rows)
    error = 4 * np.sqrt(expected * (1 - expected) / sampled) + 1e-9
    bands = [series[i][1] for i in age]
    assert np.all(np.abs(shares - expected) <= error), dict(zip(bands, shares.round(3).tolist(), strict=True))


def bucket_by_hand(reference: drift.Reference, row: np.ndarray) -> list[int]:
    """The flat bucket of every field of one row, field by field in plain Python: the definition the vectorised
    numbering must keep."""
    found = []
    for b, offset in zip(reference.buckets.fields, reference.buckets.offsets.tolist(), strict=True):
        f, value = b.field, float(row[b.start])
        if b.width:
            hot = [i for i in range(b.width) if row[b.start + i] == 1]
            bucket = hot[0] if hot else b.width
        elif f.kind is features.Kind.CODE:
            bucket = len(f.values) if np.isnan(value) or int(value) not in f.values else f.values.index(int(value))
        else:
            bucket = len(b.edges) + 1 if np.isnan(value) else bisect.bisect_right(b.edges, value)
        found.append(offset + bucket)
    return found


def test_the_vectorised_counts_bucket_every_row_as_by_hand(reference, matrices):
    """Held-out rows, then the same rows corrupted as no check lets through (two hot columns in a group, NaN
    anywhere, unlisted codes) and numbers exactly on the edges: every count as each row bucketed by hand."""
    rng = np.random.default_rng(11)
    held_out = matrices[1][:300]
    corrupted = held_out.copy()
    cells = rng.random(corrupted.shape)
    corrupted[cells < 0.05] = 1.0
    corrupted[cells > 0.97] = np.nan
    codes = [b.start for b in reference.buckets.fields if b.field.kind is features.Kind.CODE]
    corrupted[::7, codes] = 99.0
    for b in reference.buckets.fields:
        if b.edges:
            corrupted[::3, b.start] = rng.choice(np.array(b.edges, np.float32), len(corrupted[::3]))
    for rows in (held_out[:1], held_out, corrupted):
        by_hand = np.bincount(
            [bucket for row in rows for bucket in bucket_by_hand(reference, row)],
            minlength=len(reference.buckets.series),
        )
        assert np.array_equal(reference.buckets.counts(rows), by_hand)


def test_served_fields_are_published_at_most_once_a_second_and_when_the_stream_pauses(reference, matrices):
    series = reference.buckets.series
    (count,) = drift_counts.consumers(reference)

    def flush(rows: int) -> float:
        """Rows published (every field counts each row once: the first field's total) after a flush of `rows`."""
        before = served_counts(series)
        part = matrices[1][:rows]
        count(
            [LoggedBatch("", rows, 0.0, "1", np.zeros(rows, np.float32), np.zeros(rows, np.int64), part)]
            if rows
            else []
        )
        return float((served_counts(series) - before)[: len(reference.buckets.fields[0].labels)].sum())

    rows = drift_counts.SAMPLE_ROWS  # every row of such a flush is counted
    assert flush(rows) == rows  # the first publication is due at once
    assert flush(rows) == 0  # within FEATURE_PUBLISH_SECONDS of it: held back
    assert flush(0) == rows  # a flush with nothing queued: the stream paused, what waited is published
    assert flush(PUBLISH_ROWS - 1) == 0 and flush(0) == 0  # never fewer than PUBLISH_ROWS rows
