"""Abstention: the threshold chosen on validation, and "not sure" said alike by the CLI, the HTTP
service and the MLflow pyfunc."""

import json
from pathlib import Path

import mlflow
import pytest
from fastapi.testclient import TestClient
from manset_serving import load
from manset_serving.app import create_app
from manset_serving.settings import Settings

from training import dataset
from training.cli import main

pytestmark = pytest.mark.sqlite_store  # reads the project's store itself

NONSENSE = ["xq zvb", "Bugün", "Ve sonra", "Kim bilir?"]  # little a classifier can go on


def _texts(root: Path) -> list[str]:
    dd, _ = dataset.load(root / "data" / "build" / "category")
    return NONSENSE + list(dd["test"]["text"])[:60]


def test_the_threshold_is_chosen_on_validation_and_logged(trained: Path) -> None:
    champion = trained / "models" / "category" / "champion"
    config = json.loads((champion / "config.json").read_text())["abstain"]
    assert config["precision"] == 0.9 and 0 < config["threshold"] <= 1
    # the threshold answers the most validation rows at 0.9 precision: those answered
    # reach it, and one row more (the next surest) would not
    dd, _ = dataset.load(trained / "data" / "build" / "category")
    model = load(champion)
    proba = model.predict_proba(list(dd["validation"]["text"]))
    answered = proba.max(1) >= config["threshold"]
    right = proba.argmax(1) == dd["validation"]["label"]
    assert right[answered].mean() >= 0.9
    assert answered.mean() == pytest.approx(config["coverage"])
    mlflow.set_tracking_uri(f"sqlite:///{trained / 'mlruns' / 'mlflow.db'}")
    (run,) = mlflow.search_runs(experiment_names=["manset-category"], output_format="list")
    assert run.data.metrics["abstain_threshold"] == config["threshold"]
    assert 0 < run.data.metrics["test_abstain_coverage"] < 1
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id,
                                                                      "evaluation")}
    assert "evaluation/coverage_precision.png" in artifacts


def test_cli_service_and_pyfunc_abstain_alike(trained: Path, capsys) -> None:
    texts = _texts(trained)
    assert main(["predict", "--root", str(trained), *texts]) == 0
    plain = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert main(["predict", "--abstain", "--root", str(trained), *texts]) == 0
    cli = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    threshold = json.loads((trained / "models" / "category" / "champion" / "config.json")
                           .read_text())["abstain"]["threshold"]
    unsure = [max(p["probabilities"].values()) < threshold for p in plain]
    assert any(unsure) and not all(unsure)  # the check below can fail both ways
    for p, a, u in zip(plain, cli, unsure, strict=True):
        assert a["probabilities"] == p["probabilities"]  # the best guess is still there
        assert a["label"] == (None if u else p["label"])

    with TestClient(create_app(Settings(trained / "models", abstain=True))) as app:
        got = app.post("/v1/classify", json={"headlines": texts, "tasks": ["category"]})
    assert got.status_code == 200
    assert [r["category"]["label"] for r in got.json()["results"]] == [a["label"] for a in cli]

    store = f"sqlite:///{trained / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)  # not the registry an earlier test in this process set
    uri = "models:/manset-category@champion"
    frame = mlflow.pyfunc.load_model(uri, model_config={"abstain": True}).predict(texts)
    assert [None if lb is None or lb != lb else lb for lb in frame["label"]] == \
        [a["label"] for a in cli]
    assert list(mlflow.pyfunc.load_model(uri).predict(texts)["label"]) == \
        [p["label"] for p in plain]


def test_a_bundle_without_a_threshold_cannot_abstain(trained: Path, tmp_path: Path) -> None:
    import shutil

    from manset_serving.bundle import sha256

    copy = Path(shutil.copytree(trained / "models" / "category" / "tfidf", tmp_path / "b"))
    config = json.loads((copy / "config.json").read_text())
    del config["abstain"]
    (copy / "config.json").write_text(json.dumps(config))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["config.json"] = sha256(copy / "config.json")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    load(copy)  # answering is still fine
    with pytest.raises(ValueError, match=r"config.json.*no abstention threshold"):
        load(copy, abstain=True)
