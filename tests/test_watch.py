"""Bundles that verify but cannot predict, a champion replaced file by file, and what clients
learn about the server: in process, with the real watcher."""

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from manset_serving import BundleError, load
from manset_serving.app import create_app
from manset_serving.bundle import sha256
from manset_serving.settings import Settings
from test_serving import small_bundle

from training import export


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_bundle(tmp_path_factory.mktemp("bundle") / "tfidf")


def edited(src: Path, dst: Path, run_id: str, write_config: bool = True,
           **config: object) -> Path:
    """A copy of a bundle under another run id with config.json changed and its checksum in the
    manifest updated: a bundle that verifies. write_config=False leaves the old config.json on
    disk, as a copy that has written the new manifest and not yet the config."""
    shutil.copytree(src, dst)
    cfg = json.loads((src / "config.json").read_text())
    for key, value in config.items():
        head, _, tail = key.partition("__")
        if tail:
            cfg[head][tail] = value
        else:
            cfg[key] = value
    text = json.dumps(cfg)  # NaN written as JSON's NaN, as Python writes it
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["mlflow_run_id"] = run_id
    (dst / "config.json").write_text(text)
    manifest["files"]["config.json"] = sha256(dst / "config.json")
    if not write_config:
        shutil.copy(src / "config.json", dst / "config.json")
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def _until(what: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("config, message", [
    ({"features__batch": 0}, "batch: 0 is outside"),
    ({"beta": math.nan}, "beta nan is not a positive number"),
    ({"beta": -1.0}, "beta -1.0 is not a positive number"),
    ({"features__char_bits": 40}, "char_bits: 40 is outside"),
])
def test_a_bundle_that_verifies_but_cannot_predict_is_refused(built: Path, tmp_path: Path,
                                                              config, message) -> None:
    bad = edited(built, tmp_path / "bad", "run-bad", **config)
    with pytest.raises(BundleError, match=r"config\.json") as e:
        load(bad)
    assert message in str(e.value)


def test_a_bundle_that_cannot_predict_never_replaces_the_served_one(built: Path,
                                                                     tmp_path: Path) -> None:
    models = tmp_path / "models"
    export.install_champion(models, "category", built, 1, "run-1")
    with TestClient(create_app(Settings(models, reload_seconds=0.05))) as app:
        assert app.get("/readyz").status_code == 200
        export.install_champion(models, "category", edited(built, tmp_path / "nan", "run-nan",
                                                           beta=math.nan), 2, "run-nan")
        _until(lambda: "category" in app.get("/readyz").json()["errors"])
        assert "beta nan" in app.get("/readyz").json()["errors"]["category"]
        got = app.post("/v1/classify", json={"headlines": ["Galatasaray derbiyi kazandı"]})
        assert got.status_code == 200 and "NaN" not in got.text
        assert got.json()["models"]["category"]["mlflow_run_id"] == "run-1"


def test_a_champion_replaced_file_by_file_is_loaded_once_it_settles(built: Path,
                                                                     tmp_path: Path) -> None:
    models = tmp_path / "models"
    export.install_champion(models, "category", built, 1, "run-1")
    champion = models / "category" / "champion"
    new = edited(built, tmp_path / "new", "run-2", beta=2.0)
    with TestClient(create_app(Settings(models, reload_seconds=0.05))) as app:
        # a copy tool writing the new bundle over the old one: the manifest first ...
        shutil.copy(new / "manifest.json", champion / "manifest.json")
        _until(lambda: "category" in app.get("/readyz").json()["errors"])
        assert "checksum" in app.get("/readyz").json()["errors"]["category"]
        time.sleep(0.3)  # ... the config a while later
        shutil.copy(new / "config.json", champion / "config.json")
        _until(lambda: app.get("/readyz").json()["errors"] == {})
        got = app.post("/v1/classify", json={"headlines": ["Galatasaray derbiyi kazandı"]})
        assert got.json()["models"]["category"]["mlflow_run_id"] == "run-2"


def test_clients_see_no_server_path_and_the_log_keeps_it(built: Path, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    models = tmp_path / "models"
    export.install_champion(models, "category", edited(built, tmp_path / "half", "run-half",
                                                       write_config=False, beta=2.0), 1, "x")
    caplog.set_level(logging.WARNING, "manset_serving.service")
    with TestClient(create_app(Settings(models))) as app:
        answers = [app.get("/readyz"), app.get("/v1/models"),
                   app.post("/v1/classify", json={"headlines": ["ok"], "tasks": ["category"]}),
                   app.post("/v1/classify", json={"headlines": ["ok"]})]
    for r in answers:
        assert str(tmp_path) not in r.text and "<models>/category/champion" in r.text, r.text
    assert [r.status_code for r in answers] == [503, 200, 503, 503]
    assert f"{models}/category/champion/config.json" in caplog.text
    with TestClient(create_app(Settings(tmp_path / "empty"))) as app:
        assert str(tmp_path) not in app.get("/readyz").text
