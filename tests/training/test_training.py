"""Training end to end against a real SQLite MLflow store in a temporary folder."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import xgboost
from mlflow.tracking import MlflowClient

from bento import features
from tests import sample_data
from tests.helpers import train_into
from training import cli, registry, train
from training.settings import MODEL_NAME


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    home = tmp_path_factory.mktemp("mlflow-home")
    data_file = sample_data.write_csv(home, count=1500)
    with pytest.MonkeyPatch.context() as patch:
        trained = train_into(home, data_file, patch, verify=False, model_card_path=home / "model-card.md")
        yield trained | {"first": trained["registered"]}


def test_first_model_becomes_champion_with_its_metrics_logged(store):
    first = store["first"]
    assert (first.version, first.alias) == ("1", "champion")
    assert (store["home"] / "mlflow.db").is_file()
    client = MlflowClient()
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert str(champion.version) == "1"
    run = client.get_run(champion.run_id)
    assert 0.5 < run.data.metrics["test_roc_auc"] <= 1.0
    assert (
        run.data.metrics["test_roc_auc_ci_low"]
        <= run.data.metrics["test_roc_auc"]
        <= run.data.metrics["test_roc_auc_ci_high"]
    )
    assert run.data.params["spec_hash"] == features.spec_hash()
    artifacts = {a.path for a in client.list_artifacts(champion.run_id)}
    assert {"model_card.md", "roc_pr.png", "reliability.png", "feature_importance.csv", "feature_spec.json",
            registry.METADATA_ARTIFACT, "subgroups.csv"} <= artifacts  # fmt: skip
    card = (store["home"] / "model-card.md").read_text()
    assert "decision support" in card and "Over 3 patient-grouped splits the same configuration" in card
    seeds = [run.data.metrics[f"seed_{seed}_test_roc_auc"] for seed in (42, 43, 44)]
    assert seeds[0] == run.data.metrics["test_roc_auc"]
    assert (run.data.metrics["seed_roc_auc_min"], run.data.metrics["seed_roc_auc_max"]) == (min(seeds), max(seeds))


def test_registered_model_predicts_probabilities_with_its_signature(store):
    x = np.zeros((3, len(features.COLUMNS)), dtype=np.float32)
    booster = mlflow.xgboost.load_model(f"models:/{MODEL_NAME}@champion")
    probability = booster.predict(xgboost.DMatrix(x))
    assert probability.shape == (3,) and ((probability > 0) & (probability < 1)).all()
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    assert np.allclose(pyfunc.predict(x), probability)
    output = pyfunc.metadata.get_output_schema().inputs[0]
    assert output.name == "probability"


def test_metadata_holds_what_serving_needs(store):
    client = MlflowClient()
    run_id = client.get_model_version_by_alias(MODEL_NAME, "champion").run_id
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=registry.METADATA_ARTIFACT)
    metadata = json.loads(Path(path).read_text())
    assert metadata["columns"] == list(features.COLUMNS)
    assert 0 < metadata["threshold"] < 1
    assert metadata["score_reference"][-1] == 1.0
    assert set(metadata["field_distributions"]) == {f.name for f in features.FIELDS}


def test_equal_model_becomes_challenger_and_force_makes_champion(store):
    again = train.run(str(store["data"]), store["settings"], verify=False, model_card_path=None)
    assert again.alias == "challenger"
    assert again.test_roc_auc == pytest.approx(store["first"].test_roc_auc)  # same seed, same data
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == "1"
    forced = train.run(str(store["data"]), store["settings"], force=True, verify=False, model_card_path=None)
    assert forced.alias == "champion"
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == forced.version


def test_cli_promotes_and_evaluates(store, capsys):
    assert cli.main(["promote", "1"]) == 0
    assert str(MlflowClient().get_model_version_by_alias(MODEL_NAME, "champion").version) == "1"
    assert cli.main(["evaluate"]) == 0
    out = capsys.readouterr().out
    assert "version 1" in out and "| ROC-AUC |" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["promote", "99"], "has no version 99"),
        (["evaluate", "42"], "no version or alias '42'"),
        (["train", "--data", "/nonexistent/data.zip"], "does not exist"),
    ],
)
def test_cli_failures_exit_non_zero_with_one_line(store, capsys, argv, message):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_help_and_usage_errors():
    with pytest.raises(SystemExit) as helped:
        cli.main(["--help"])
    assert helped.value.code == 0
    with pytest.raises(SystemExit) as wrong:
        cli.main(["fly"])
    assert wrong.value.code == 2


@pytest.mark.real_data
@pytest.mark.slow
def test_real_data_champion_reaches_published_discrimination(real_champion):
    registered = real_champion["registered"]
    assert registered.alias == "champion"
    # published reproductions on a patient-grouped split sit at 0.61-0.68
    assert registered.test_roc_auc > 0.65
    card = (real_champion["home"] / "model-card.md").read_text()
    assert "99,343 encounters" in card
