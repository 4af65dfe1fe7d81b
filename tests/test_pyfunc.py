"""The MLflow pyfunc: every input shape a caller uses, a clear error for bad input, a logged model
that carries manset_serving only and loads without the training code, `mlflow models serve` on
loopback. Spark: the example of docs/serving.md in test_readme.py."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from manset_serving import load
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from test_service import start_server
from test_serving import small_bundle

from training import export, tracking

TEXTS = ["Galatasaray derbiyi 3-1 kazandı", "Borsa güne yükselişle başladı",
         "Kanser tedavisinde yeni umut"]
URI = "models:/manset-category@champion"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path):
    """A store with the small bundle logged, registered and made champion; the bundle path."""
    root = tmp_path_factory.mktemp("pyfunc")
    bundle = small_bundle(root / "bundle")
    db = root / "mlflow.db"
    db.write_bytes(mlflow_template.read_bytes())
    uri = f"sqlite:///{db}"
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp = mlflow.create_experiment("pyfunc", artifact_location=(root / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp):
        tracking.log_model(bundle, "category", TEXTS[:2],
                           pd.DataFrame(load(bundle).predict(TEXTS[:2])),
                           export.requirements("tfidf"))
    MlflowClient().set_registered_model_alias("manset-category", "champion", "1")
    yield uri, bundle
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


@pytest.fixture(scope="module")
def model(store):
    return mlflow.pyfunc.load_model(URI)


def _labels(bundle: Path, texts: list[str]) -> list[str]:
    return [r["label"] for r in load(bundle).predict(texts)]


@pytest.mark.parametrize("shape", ["list", "series", "text", "title", "other-column", "dict",
                                   "array"])
def test_every_input_shape_gives_the_bundle_labels(store, model, shape: str) -> None:
    _, bundle = store
    given = {"list": TEXTS, "series": pd.Series(TEXTS), "text": pd.DataFrame({"text": TEXTS}),
             "title": pd.DataFrame({"title": TEXTS}), "dict": {"text": TEXTS},
             "other-column": pd.DataFrame({"headline": TEXTS}), "array": np.array(TEXTS)}[shape]
    out = model.predict(given)
    assert list(out.columns) == ["label", "score", "probabilities"]
    assert list(out["label"]) == _labels(bundle, TEXTS)
    assert out["probabilities"][0] == load(bundle).predict(TEXTS[:1])[0]["probabilities"]


def test_the_column_name_is_never_classified(store, model) -> None:
    """Iterating a DataFrame yields its column names: a one-column frame must give one row per
    headline, scored on the headline."""
    _, bundle = store
    for frame in (pd.DataFrame({"Spor": ["Borsa güne yükselişle başladı"]}),
                  pd.DataFrame({"text": ["Borsa güne yükselişle başladı"]})):
        out = model.predict(frame)
        assert len(out) == 1 and out["label"][0] == _labels(bundle, list(frame.iloc[:, 0]))[0]
    one = model.predict(np.array("Borsa güne yükselişle başladı"))  # {"inputs": "..."} on serve
    assert len(one) == 1


@pytest.mark.parametrize(("given", "words"), [
    ([None], "headlines[0]: expected a string, got NoneType"),
    (["ok", ""], "headlines[1]: empty headline"),
    ([123], "headlines[0]: expected a string, got int"),
    (["x" * 100_000], "at most 1000"),
    (pd.DataFrame({"a": ["x"], "b": ["y"]}), "needs a 'text' or 'title' column"),
])
def test_bad_input_is_an_invalid_parameter_error(model, given, words: str) -> None:
    with pytest.raises(MlflowException) as e:
        model.predict(given)
    assert words in str(e.value) and e.value.error_code == "INVALID_PARAMETER_VALUE"


def test_the_logged_model_carries_the_serving_package_and_loose_requirements(store) -> None:
    local = Path(mlflow.artifacts.download_artifacts(URI))
    code = {p.relative_to(local / "code").as_posix() for p in (local / "code").rglob("*")}
    assert "manset_serving/models.py" in code
    assert not any(c.startswith("training") or "__pycache__" in c for c in code)
    requirements = (local / "requirements.txt").read_text().split()
    assert not any(r.startswith(("pandas==", "scikit-learn", "datasets", "torch", "manset"))
                   for r in requirements), requirements
    assert all("==" not in r for r in requirements if not r.startswith("mlflow")), requirements


def test_it_loads_where_the_training_code_is_not_installed(store, tmp_path: Path) -> None:
    """A process where `training` cannot be imported and the installed manset_serving is
    hidden: the model loads its own copy of the package and gives the bundle's labels."""
    uri, bundle = store
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import sys\n"
        "sys.modules['training'] = None\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'manset' not in type(f).__module__]\n"
        "sys.path[:] = [p for p in sys.path if not p.rstrip('/').endswith('serving')]\n")
    code = ("import json, sys, mlflow\n"
            f"mlflow.set_tracking_uri({uri!r})\n"
            f"m = mlflow.pyfunc.load_model({URI!r})\n"
            "import manset_serving\n"
            "out = m.predict(json.loads(sys.argv[1]))\n"
            "print(json.dumps({'file': manset_serving.__file__, "
            "'labels': list(out['label'])}))\n")
    env = {**os.environ, "PYTHONPATH": str(shim)}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(TEXTS)], env=env,
                         capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["labels"] == _labels(bundle, TEXTS)
    assert "/code/manset_serving/" in got["file"]  # the model's own copy
    blocked = subprocess.run([sys.executable, "-c", "import training"], env=env, cwd=tmp_path,
                             capture_output=True)
    assert blocked.returncode != 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_models_serve_answers_with_the_bundle_labels(store, tmp_path: Path) -> None:
    uri, bundle = store
    port = _free_port()
    bin_dir = Path(sys.executable).parent  # mlflow starts `uvicorn` by name: put it on PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen([str(bin_dir / "mlflow"), "models", "serve", "-m", URI,
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/ping", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow models serve did not start")
        want = _labels(bundle, TEXTS)
        # manset-serve answers MLflow's scoring route as `mlflow models serve` does
        ours = start_server(export.install_champion(tmp_path / "models", "category", bundle, 1,
                                              "run").parent.parent, tmp_path / "ours.log")
        for body in ({"inputs": TEXTS}, {"inputs": {"text": TEXTS}},
                     {"dataframe_split": {"columns": ["text"], "data": [[t] for t in TEXTS]}},
                     {"dataframe_records": [{"title": t} for t in TEXTS]},
                     {"inputs": TEXTS[0]}):
            r = httpx.post(f"{base}/invocations", json=body, timeout=30)
            assert r.status_code == 200, r.text
            n = 1 if isinstance(body.get("inputs"), str) else len(TEXTS)
            assert [p["label"] for p in r.json()["predictions"]] == want[:n], body
            mine = httpx.post(f"{ours.url}/invocations", json=body, timeout=30)
            assert (mine.status_code, mine.json()) == (200, r.json()), body
        for bad in ({"inputs": [None]}, {"inputs": [""]}, {"inputs": [123]}):
            r = httpx.post(f"{base}/invocations", json=bad, timeout=30)
            assert r.status_code == 400 and "headlines[0]" in r.text, (bad, r.text)
            mine = httpx.post(f"{ours.url}/invocations", json=bad, timeout=30)
            assert mine.status_code == 400 and "headlines[0]" in mine.text, (bad, mine.text)
            assert mine.json()["error_code"] == r.json()["error_code"]
        ours.stop()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
