"""The compiled trees: built at import, equal to xgboost, refused (with xgboost serving instead) when unfit."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
import yaml

from bento import features
from bento.model import compiled
from bento.model.compiled import BRANCHLESS
from bento.model.predictor import BACKENDS, XGBOOST, Predictor
from tests.helpers import INFER, bentoml_env, binary_matrix, copy_home, decode_binary_response, scrape, serve

TOLERANCE = 1e-6


def booster_of(model_dir: Path) -> xgb.Booster:
    booster = xgb.Booster(model_file=str(model_dir / "model.ubj"))
    booster.set_param({"nthread": 1})
    return booster


@pytest.fixture(scope="module")
def held_out(uci_zip) -> np.ndarray:
    """The encoded rows of the real test split (missing values as NaN), float32."""
    from training import data

    test = data.split(data.clean(data.load(uci_zip))).test
    return features.encode(data.records(test)).astype(np.float32)


def test_import_compiles_the_model_and_the_predictor_serves_with_it(bento_home):
    folder = bento_home["model_dir"] / compiled.COMPILED_DIR
    manifest = json.loads((folder / compiled.MANIFEST_FILE).read_text())
    assert manifest["sha256"] == hashlib.sha256((folder / compiled.LIBRARY_FILE).read_bytes()).hexdigest()
    assert manifest["platform"] == compiled.current_platform()
    assert manifest["trees"] == booster_of(bento_home["model_dir"]).num_boosted_rounds()
    stored = yaml.safe_load((bento_home["model_dir"] / "model.yaml").read_text())
    assert stored["metadata"]["backend"] == BRANCHLESS
    predictor = Predictor.load(bento_home["model_dir"], bento_home["tag"])
    assert predictor.backend == BRANCHLESS
    assert predictor.compiled is not None and predictor.compiled.max_abs_diff <= TOLERANCE


def test_reference_rows_test_every_split_on_both_sides_and_missing(bento_home):
    """The stored reference rows hold exact thresholds, their neighbours and NaN: each comparison both ways."""
    with np.load(bento_home["model_dir"] / compiled.COMPILED_DIR / compiled.REFERENCE_FILE) as reference:
        rows = reference["rows"]
    booster = booster_of(bento_home["model_dir"])
    splits = booster.trees_to_dataframe().query("Feature != 'Leaf'")
    column, threshold = splits.iloc[0]["Feature"], np.float32(splits.iloc[0]["Split"])
    values = rows[:, int(column.lstrip("f"))]
    assert (values == threshold).any() and (values < threshold).any() and (values > threshold).any()
    assert np.isnan(rows).mean() > 0.05


@pytest.mark.real_data
def test_compiled_probabilities_equal_xgboost_on_the_held_out_rows(bento_home, held_out, figure):
    predictor = Predictor.load(bento_home["model_dir"], bento_home["tag"])
    assert predictor.backend == BRANCHLESS
    expected = booster_of(bento_home["model_dir"]).inplace_predict(held_out, validate_features=False)
    difference = np.abs(predictor.probabilities(held_out).astype(np.float64) - expected).max()
    assert difference <= TOLERANCE
    figure(f"max |compiled - xgboost| over {len(held_out):,} held-out rows", f"{difference:.2g}")


@pytest.mark.real_data
def test_probabilities_over_http_equal_xgboost_on_the_held_out_rows(client, bento_home, held_out):
    expected = booster_of(bento_home["model_dir"]).inplace_predict(held_out, validate_features=False)
    for start in range(0, len(held_out), 5000):
        chunk = held_out[start : start + 5000]
        body, headers = binary_matrix(chunk, outputs=[{"name": "probability", "parameters": {"binary_data": True}}])
        answer = client.post(INFER, content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        _, arrays = decode_binary_response(answer)
        assert np.abs(arrays["probability"].astype(np.float64) - expected[start : start + 5000]).max() <= TOLERANCE


@pytest.mark.slow
@pytest.mark.real_data
def test_a_tl2cgen_artifact_still_loads_and_serves_under_its_name(bento_home, held_out, tmp_path):
    """Models imported before the branch-free engine (or that it refused) carry TL2cgen's library: it still serves."""
    from training import compiler

    model_dir = tmp_path / "model"
    shutil.copytree(bento_home["model_dir"], model_dir)
    shutil.rmtree(model_dir / compiled.COMPILED_DIR)
    booster = booster_of(model_dir)
    compiler.compile_booster(booster, model_dir / compiled.COMPILED_DIR, engines=(compiled.TL2CGEN,))
    predictor = Predictor.load(model_dir, "readmission:tl2cgen")
    assert predictor.backend == compiled.TL2CGEN
    expected = booster.inplace_predict(held_out, validate_features=False)
    assert np.abs(predictor.probabilities(held_out).astype(np.float64) - expected).max() <= TOLERANCE


def test_metrics_name_the_compiled_backend(service):
    text = scrape(service)
    for backend in BACKENDS:
        assert f'readmission_model_backend{{backend="{backend}"}} {float(backend == BRANCHLESS)}' in text


# --- an artifact unfit to serve: xgboost serves instead ------------------------------------------------------


def _remove(folder: Path) -> None:
    shutil.rmtree(folder)


def _edit_manifest(**changes: object) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        manifest = json.loads((folder / compiled.MANIFEST_FILE).read_text())
        manifest["platform"] |= changes
        (folder / compiled.MANIFEST_FILE).write_text(json.dumps(manifest))

    return edit


def _unknown_engine(folder: Path) -> None:
    manifest = json.loads((folder / compiled.MANIFEST_FILE).read_text())
    (folder / compiled.MANIFEST_FILE).write_text(json.dumps(manifest | {"backend": "quickscorer"}))


def _garble_library(folder: Path) -> None:
    (folder / compiled.LIBRARY_FILE).write_bytes(os.urandom(8192))


def _shift_reference(folder: Path) -> None:
    with np.load(folder / compiled.REFERENCE_FILE) as reference:
        rows, probabilities = reference["rows"], reference["probabilities"]
    probabilities[7] += 1e-5
    np.savez(folder / compiled.REFERENCE_FILE, rows=rows, probabilities=probabilities)


UNFIT = {
    # what is wrong with the artifact: (the damage, what the log line says)
    "missing": (_remove, "no compiled model"),
    "unknown-engine": (_unknown_engine, "an unknown engine: quickscorer"),
    "other-architecture": (_edit_manifest(machine="aarch64"), "was built for"),
    "newer-libc": (_edit_manifest(libc="glibc 99.0"), "was built for"),
    "garbled-library": (_garble_library, "cannot be loaded"),
    "disagrees-with-xgboost": (_shift_reference, "differs from xgboost by"),
}


@pytest.mark.parametrize("unfit", list(UNFIT))
def test_an_unfit_artifact_falls_back_to_xgboost_with_a_log_line(bento_home, tmp_path, caplog, unfit):
    damage, needle = UNFIT[unfit]
    model_dir = tmp_path / "model"
    shutil.copytree(bento_home["model_dir"], model_dir)
    damage(model_dir / compiled.COMPILED_DIR)
    with caplog.at_level(logging.WARNING, logger="readmission"):
        predictor = Predictor.load(model_dir, "readmission:copy")
    assert predictor.backend == XGBOOST and predictor.compiled is None
    assert any("scores with xgboost" in r.message and needle in r.message for r in caplog.records), caplog.text
    rows = features.encode([features.validate(features.EXAMPLE_PATIENT)])
    expected = booster_of(model_dir).inplace_predict(rows, validate_features=False)
    assert predictor.probabilities(rows) == pytest.approx(expected, abs=TOLERANCE)


@pytest.mark.slow
def test_a_server_with_an_unfit_artifact_serves_with_xgboost_and_says_so(bento_home, tmp_path):
    home = copy_home(bento_home, tmp_path)
    _garble_library(home / bento_home["model_dir"].relative_to(bento_home["home"]) / compiled.COMPILED_DIR)
    server = serve(home, tmp_path)
    try:
        import httpx

        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.post("/predict", json=features.EXAMPLE_PATIENT).status_code == 200
        text = scrape(server)
        for backend in BACKENDS:
            assert f'readmission_model_backend{{backend="{backend}"}} {float(backend == XGBOOST)}' in text
        assert "scores with xgboost: the compiled model cannot be loaded" in server.log_text()
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("built_for", "here", "fits"),
    [
        ({"system": "Linux", "machine": "x86_64", "libc": "glibc 2.36"}, "glibc 2.36", True),
        ({"system": "Linux", "machine": "x86_64", "libc": "glibc 2.31"}, "glibc 2.36", True),
        ({"system": "Linux", "machine": "x86_64", "libc": "glibc 2.38"}, "glibc 2.36", False),
        ({"system": "Linux", "machine": "x86_64", "libc": "musl 1.2"}, "glibc 2.36", False),
        ({"system": "Linux", "machine": "aarch64", "libc": "glibc 2.36"}, "glibc 2.36", False),
        ({"system": "Darwin", "machine": "x86_64", "libc": "glibc 2.36"}, "glibc 2.36", False),
        ({}, "glibc 2.36", False),
    ],
)
def test_a_library_fits_the_same_system_and_architecture_and_an_older_libc(built_for, here, fits):
    assert compiled.compatible(built_for, {"system": "Linux", "machine": "x86_64", "libc": here}) is fits


@pytest.mark.slow
def test_import_without_a_compiler_warns_and_leaves_xgboost_to_serve(champion_store, tmp_path):
    import subprocess
    import sys

    home = tmp_path / "bentoml"
    env = {**os.environ, **bentoml_env(home), "READMISSION_HOME": str(champion_store["home"]), "CC": "no-such-cc"}
    env.pop("MLFLOW_TRACKING_URI", None)
    readmission = str(Path(sys.executable).parent / "readmission")
    done = subprocess.run([readmission, "import"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "is not compiled (no C compiler (no-such-cc)" in done.stderr
    (model_dir,) = (home / "models" / "readmission").glob("*/")
    assert not (model_dir / compiled.COMPILED_DIR).exists()
    assert yaml.safe_load((model_dir / "model.yaml").read_text())["metadata"]["backend"] == XGBOOST
    assert Predictor.load(model_dir, "readmission:copy").backend == XGBOOST
