"""The model files with and without the unusual-patient reference: `Predictor.load` reads it back from the metadata,
a model trained before the check (no reference) loads and serves with the check off, and a damaged reference is a
load error naming it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bento import features
from bento.model import risk_bands
from bento.model.predictor import BOOSTER_FILE, METADATA_FILE, ModelLoadError, Predictor
from tests.helpers import RECORD, matrix_of


def model_folder(tiny: Predictor, folder: Path, **extra: Any) -> Path:
    """The tiny model written as `readmission import` writes a model (no compiled trees: xgboost scores)."""
    tiny.booster.save_model(str(folder / BOOSTER_FILE))
    metadata = {
        "spec_hash": features.spec_hash(),
        "columns": list(features.COLUMNS),
        "threshold": tiny.info.threshold,
        "prevalence": tiny.info.prevalence,
        "score_reference": risk_bands.histogram(tiny.probabilities(matrix_of([RECORD]))),
        **extra,
    }
    (folder / METADATA_FILE).write_text(json.dumps(metadata))
    return folder


def test_the_reference_is_read_back_from_the_metadata(tiny, tmp_path):
    stored = tiny.info.unusual_reference.to_metadata()
    loaded = Predictor.load(model_folder(tiny, tmp_path, unusual_reference=stored), "readmission:with")
    rows = matrix_of([RECORD, {**RECORD, "number_emergency": 100}])
    assert loaded.unusual is not None and loaded.unusual.findings(rows) == tiny.unusual.findings(rows)


def test_a_model_trained_before_the_check_loads_and_scores_with_the_check_off(tiny, tmp_path):
    loaded = Predictor.load(model_folder(tiny, tmp_path), "readmission:old")
    assert loaded.unusual is None and loaded.info.unusual_reference is None
    rows = matrix_of([RECORD])
    assert loaded.probabilities(rows).tolist() == tiny.probabilities(rows).tolist()


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ([], "unusual_reference is not a JSON object"),
        ({"rare": {}}, "KeyError 'outlier'"),
    ],
)
def test_a_damaged_reference_is_a_load_error_naming_it(tiny, tmp_path, damage, says):
    with pytest.raises(ModelLoadError, match=says):
        Predictor.load(model_folder(tiny, tmp_path, unusual_reference=damage), "readmission:damaged")
