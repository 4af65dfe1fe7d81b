"""The family registry: a family another distribution adds (tests/fixtures/toy_family.py, one
file, installed here as pip would: a dist-info naming its entry points) is trained, exported,
tracked, blended, predicted with and served, and no module of manset names it."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, tracking_client, verify
from fastapi.testclient import TestClient
from manset_serving import load
from manset_serving.app import create_app
from manset_serving.settings import Settings

from training import families
from training.cli import main

TOY = ROOT / "tests" / "fixtures" / "toy_family.py"


@pytest.fixture()
def toy_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """toy_family.py on the path with the metadata an installed distribution has."""
    site = tmp_path / "site"
    info = site / "toy_family-0.1.dist-info"
    info.mkdir(parents=True)
    shutil.copy(TOY, site / "toy_family.py")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-family\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[manset.families]\ntoy = toy_family:FAMILY\n\n"
        "[manset_serving.families]\ntoy = toy_family:SERVED\n")
    monkeypatch.syspath_prepend(str(site))
    return site


def test_no_module_of_manset_names_the_toy_family() -> None:
    for folder in ("training", "serving/manset_serving"):
        for path in (ROOT / folder).rglob("*.py"):
            assert "toy" not in path.read_text(encoding="utf-8").lower(), path
    assert "toy" not in families.all_families()  # not installed: unknown


def test_a_family_added_by_another_distribution_trains_exports_predicts_and_serves(
        trained: Path, toy_installed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = ["--root", str(trained)]
    models = trained / "models" / "category"
    assert main(["train", "toy", "--help"]) == 0
    assert "--smoothing" in capsys.readouterr().out  # its settings are options
    assert main(["train", "toy", "--smoothing", "0.5", *root]) == 0

    manifest = verify(models / "toy")
    assert manifest["model"] == "toy"
    card = (models / "toy" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "## Toy" in card and "smoothing 0.5" in card  # its own section of the model card
    client = tracking_client(trained)
    run = client.get_run(manifest["mlflow_run_id"])
    assert run.data.tags["family"] == "toy" and run.data.params["smoothing"] == "0.5"
    assert "loso_macro_f1" in run.data.metrics and "test_macro_f1" in run.data.metrics

    capsys.readouterr()
    assert main(["predict", "--model", "toy", "Galatasaray derbide 3-1 kazandı", *root]) == 0
    answer = json.loads(capsys.readouterr().out)
    toy = load(models / "toy")
    assert answer["label"] in toy.labels
    assert answer == {"text": "Galatasaray derbide 3-1 kazandı",
                      **toy.predict(["Galatasaray derbide 3-1 kazandı"])[0]}

    # a member of an ensemble like any family, refit per source from its bundle's settings
    assert main(["train", "ensemble", "--members", "tfidf,toy", *root]) == 0
    config = json.loads((models / "ensemble" / "config.json").read_text())
    assert set(config["members"]) == {"tfidf", "toy"}
    assert "loso_macro_f1" in client.get_run(
        verify(models / "ensemble")["mlflow_run_id"]).data.metrics

    served = trained / "served" / "category" / "champion"
    shutil.copytree(models / "toy", served)
    with TestClient(create_app(Settings(trained / "served"))) as app:
        reply = app.post("/v1/classify", json={"headlines": ["Dolar rekor kırdı"]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["results"][0]["category"] == toy.predict(["Dolar rekor kırdı"])[0]


def test_an_unknown_family_is_named_with_the_known_ones(trained: Path, capsys) -> None:
    assert main(["train", "ensemble", "--members", "tfidf,xgboost", "--root", str(trained)]) == 1
    err = capsys.readouterr().err
    assert "model family 'xgboost': one of tfidf, bert, use, ensemble" in err


def test_a_plugin_that_cannot_load_is_left_out_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    info = tmp_path / "broken_family-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-family\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[manset.families]\nbroken = no_such_module:FAMILY\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "broken" not in families.all_families()
    assert "family 'broken' (no_such_module:FAMILY" in caplog.text
    assert "No module named 'no_such_module'" in caplog.text
    assert main(["train", "--help"]) == 0  # every other command still works


def test_a_served_plugin_that_cannot_load_is_the_bundles_error(
        trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bundle of a family whose serving entry point fails to import is refused like any
    faulty bundle (BundleError, a ValueError): a service keeps serving what it had."""
    from manset_serving import BundleError

    info = tmp_path / "site" / "broken_serving-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-serving\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[manset_serving.families]\nbroken = no_such_module:SERVED\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    bundle = Path(shutil.copytree(trained / "models" / "category" / "tfidf", tmp_path / "b"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps({**manifest, "model": "broken"}))
    with pytest.raises(BundleError, match="model family 'broken': its entry point cannot load "
                                          r"\(ModuleNotFoundError"):
        load(bundle)
