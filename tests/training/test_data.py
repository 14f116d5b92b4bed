import zipfile

import pandas as pd
import pytest

from bento import features
from tests import sample_data
from training import data


@pytest.fixture
def sample_csv(tmp_path):
    return sample_data.write_csv(tmp_path)


def test_zip_and_extracted_csv_read_the_same(tmp_path, sample_csv):
    archive = tmp_path / "dataset_diabetes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(sample_csv, "dataset_diabetes/diabetic_data.csv")
    from_zip = data.load(archive, verify=False)
    from_csv = data.load(sample_csv, verify=False)
    pd.testing.assert_frame_equal(from_zip, from_csv)
    assert len(from_csv) == 600


def test_checksum_is_verified(sample_csv):
    with pytest.raises(data.DataError, match="sha256"):
        data.load(sample_csv)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text(""), "is empty"),
        (lambda p: p.write_text(sample_data.csv_text(sample_data.rows(20), delimiter=";")), "';'-delimited"),
        (
            lambda p: p.write_text(sample_data.csv_text(sample_data.rows(20)).replace(",A1Cresult", ",HbA1c")),
            "A1Cresult",
        ),
        (lambda p: p.write_text(sample_data.csv_text([])), "no encounters"),
    ],
)
def test_malformed_csv_names_the_problem(tmp_path, make, message):
    path = tmp_path / "diabetic_data.csv"
    make(path)
    with pytest.raises(data.DataError, match=message):
        data.load(path, verify=False)


def test_truncated_zip_is_reported(tmp_path, sample_csv):
    archive = tmp_path / "dataset_diabetes.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.write(sample_csv, "diabetic_data.csv")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(data.DataError, match="truncated or damaged zip"):
        data.load(archive, verify=False)


def test_zip_without_the_csv_is_reported(tmp_path):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(data.DataError, match=r"holds no diabetic_data\.csv"):
        data.load(archive, verify=False)


def test_values_outside_the_spec_are_reported(tmp_path):
    rows = sample_data.rows(30)
    rows[5]["race"] = "Martian"
    path = tmp_path / "diabetic_data.csv"
    path.write_text(sample_data.csv_text(rows))
    with pytest.raises(data.DataError, match="race holds values outside the feature spec"):
        data.clean(data.load(path, verify=False))


def test_missing_file_and_offline_download_give_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(data.DataError, match="does not exist"):
        data.locate(tmp_path / "nowhere.zip")
    monkeypatch.delenv("READMISSION_DATA", raising=False)
    monkeypatch.setenv("READMISSION_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "UCI_ARCHIVE_URL", "http://127.0.0.1:9/unreachable.zip")  # a closed port, for real
    with pytest.raises(data.DataError) as caught:
        data.locate(None)
    assert "READMISSION_DATA" in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "cache" / "dataset_diabetes.zip").exists()


def test_cleaning_drops_death_and_hospice_and_sets_the_target(sample_csv):
    raw = data.load(sample_csv, verify=False)
    clean = data.clean(raw)
    assert len(clean) == len(raw) - 1
    assert not clean["discharge_disposition_id"].isin(features.EXCLUDED_DISCHARGES).any()
    assert clean[features.TARGET].sum() == (raw["readmitted"] == "<30").sum() - (raw.loc[0, "readmitted"] == "<30")
    assert clean["weight"].isna().any()  # '?' is missing


def test_split_keeps_each_patient_in_one_part_and_is_reproducible(sample_csv):
    clean = data.clean(data.load(sample_csv, verify=False))
    parts = data.split(clean, seed=3)
    patients = [set(p["patient_nbr"]) for p in (parts.train, parts.validation, parts.test)]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    assert sum(len(p) for p in (parts.train, parts.validation, parts.test)) == len(clean)
    again = data.split(clean, seed=3)
    assert again.test["encounter_id"].tolist() == parts.test["encounter_id"].tolist()
    assert data.split(clean, seed=4).test["encounter_id"].tolist() != parts.test["encounter_id"].tolist()


@pytest.mark.real_data
def test_real_data_verifies_cleans_and_splits_by_patient(uci_zip):
    clean = data.clean(data.load(uci_zip))
    assert len(clean) == 99_343
    assert 0.11 < clean[features.TARGET].mean() < 0.12
    parts = data.split(clean)
    assert not set(parts.train["patient_nbr"]) & set(parts.test["patient_nbr"])
    x, y = data.design_matrix(parts.test)
    assert y.sum() > 0
    assert x.shape == (len(parts.test), len(features.COLUMNS))
