"""Team mode (docs/team.md): PostgreSQL and an MLflow server with a shared artifact folder
on loopback (tests/team_servers.py). A small real project trains through it, another process
pulls its champion, two trainers log at once, and a store that cannot be used is one clear line
that leaves the registry and the bundles as they were."""

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import redirect_stderr
from dataclasses import dataclass
from pathlib import Path

import pytest
import team_servers
from conftest import ROOT, make_project, verify
from manset_serving import load
from mlflow import MlflowClient
from team_servers import Team, free_port

from training import dataset, tracking
from training.cli import main
from training.project import ProjectError
from training.tracking import stores

team = team_servers.team  # the module's PostgreSQL-backed server (a fixture)

NS = "team"  # MANSET_NAMESPACE of the module's project
MODEL = f"manset-{NS}-category"
MANSET = str(Path(sys.executable).parent / "manset")


def _track_to(mp: pytest.MonkeyPatch, uri: str, namespace: str = NS) -> None:
    """Point this process at `uri`; the monkeypatch also takes back what MLflow exports."""
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("MLFLOW_REGISTRY_URI", uri)
    mp.setenv("MANSET_NAMESPACE", namespace)


def _env(uri: str, namespace: str = NS) -> dict[str, str]:
    """The environment of another trainer: this one's, with only its own store settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MANSET_"))}
    return env | {"MLFLOW_TRACKING_URI": uri, "MANSET_NAMESPACE": namespace}


def _manset(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([MANSET, *args], env=env, capture_output=True, text=True, timeout=300)


def _client(team: Team) -> MlflowClient:
    return MlflowClient(team.url, registry_uri=team.url)


def _bundles(root: Path) -> dict[str, dict]:
    """The manifests of a project's bundles, each checked, and any staging leftovers."""
    models = root / "models" / "category"
    return {p.name: verify(p) if p.is_dir() and not p.name.startswith(".") else p.name
            for p in sorted(models.iterdir())}


def _registry(client: MlflowClient) -> list[tuple]:
    return sorted((v.name, str(v.version), v.run_id, tuple(sorted(v.aliases)))
                  for v in client.search_model_versions())


def _one_error_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.startswith("manset: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@dataclass(frozen=True)
class Trained:
    root: Path
    err: str  # what `manset train` printed


@pytest.fixture(scope="module")
def built(team: Team, mlflow_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small project, imported and built while the server starts (hence `team`)."""
    root = make_project(tmp_path_factory.mktemp("team") / "project", mlflow_template)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert main(["import", "--root", str(root)]) == 0
        assert main(["build", "--root", str(root)]) == 0
    return root


@pytest.fixture(scope="module")
def pipeline_tests(team: Team, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[tuple[subprocess.Popen, Path]]:
    """A few of the pipeline tests in another pytest, against the server: started as soon as it
    answers and left to run on the second core while this module's tests run."""
    log = tmp_path_factory.mktemp("pipeline") / "pytest.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MANSET_"))}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
             "tests/test_pipeline.py", "-k", "pull_copies or one_class_task"],
            cwd=ROOT, env=env | {"MLFLOW_TRACKING_URI": team.url}, stdout=out,
            stderr=subprocess.STDOUT)
    try:
        yield proc, log
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def trained(team: Team, built: Path, pipeline_tests: object) -> Trained:
    """The project after one `manset train tfidf` through the server (while the pipeline tests
    run beside it)."""
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, redirect_stderr(err):
        _track_to(mp, team.url)
        assert main(["train", "tfidf", "--root", str(built)]) == 0
    return Trained(built, err.getvalue())


def test_a_run_through_the_server_keeps_its_artifacts_on_the_server(team, trained):
    manifest = verify(trained.root / "models" / "category" / "champion")
    client = _client(team)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.run_id == manifest["mlflow_run_id"]
    run = client.get_run(champion.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["test_macro_f1"] > 0.5
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # served by the server
    listed = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/confusion_matrix.png" in listed
    on_server = {p.name for p in team.artifacts.rglob("*") if p.is_file()}
    assert {"confusion_matrix.png", "MLmodel", "model.safetensors"} <= on_server
    # nothing of the run on the trainer's disk: mlruns/ holds only the empty store it came with
    assert [p.name for p in (trained.root / "mlruns").rglob("*")] == ["mlflow.db"]
    assert f"Compare runs: open {team.url} in a browser\n" in trained.err


def test_another_process_pulls_the_champion_and_predicts_the_same(team, trained, tmp_path):
    dd, _ = dataset.load(trained.root / "data" / "build" / "category")
    texts = list(dd["test"]["text"])
    (tmp_path / "headlines.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"  # a fresh folder: no data, no models, no store
    elsewhere.mkdir()
    env = _env(team.url)
    pulled = _manset("pull", "--task", "category", "--root", str(elsewhere), env=env)
    assert pulled.returncode == 0, pulled.stderr
    predicted = _manset("predict", "--root", str(elsewhere), "--input",
                        str(tmp_path / "headlines.txt"), env=env)
    assert predicted.returncode == 0, predicted.stderr
    labels = [json.loads(x)["label"] for x in predicted.stdout.splitlines()]
    ours = load(trained.root / "models" / "category" / "champion").predict(texts)
    assert labels == [r["label"] for r in ours] and len(set(labels)) >= 4
    assert verify(elsewhere / "models" / "category" / "champion")["mlflow_run_id"] == \
        verify(trained.root / "models" / "category" / "champion")["mlflow_run_id"]
    assert not (elsewhere / "mlruns").exists()


def test_two_trainers_logging_at_once_lose_nothing(team, trained, tmp_path):
    """Two processes (two people's machines) train the same task at once, into a namespace that
    neither has used: both also create its experiment and registered model."""
    roots = [shutil.copytree(trained.root, tmp_path / name) for name in ("a", "b")]
    env = _env(team.url, "race")
    procs = [subprocess.Popen([MANSET, "train", "tfidf", "--root", str(root), "--C", c],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for root, c in zip(roots, ("0.5", "2"), strict=True)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    client = _client(team)
    (exp,) = client.search_experiments(filter_string="name = 'manset-race-category'")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(float(r.data.params["C"]) for r in runs) == [0.5, 2.0]
    for r in runs:
        assert r.info.status == "FINISHED"
        assert {"test_macro_f1", "test_accuracy", "predict_throughput_per_s"} <= set(r.data.metrics)
        assert client.list_artifacts(r.info.run_id, "evaluation")
    versions = client.search_model_versions("name = 'manset-race-category'")
    assert sorted(v.run_id for v in versions) == sorted(r.info.run_id for r in runs)
    assert sorted(verify(root / "models" / "category" / "tfidf")["mlflow_run_id"]
                  for root in roots) == sorted(r.info.run_id for r in runs)


@pytest.mark.parametrize("case", ["unreachable", "wrong password", "bad namespace"])
def test_a_store_that_cannot_be_used_is_one_line(team, trained, capsys, monkeypatch, case):
    before, registry = _bundles(trained.root), _registry(_client(team))
    if case == "unreachable":
        uri, ns, expected = f"http://127.0.0.1:{free_port()}", NS, "starting the run failed"
    elif case == "wrong password":  # a database URI is refused before any connection
        uri, ns = team.pg.uri(password="not-the-password"), NS
        expected = f"start a server on it instead: mlflow server --backend-store-uri " \
                   f"{team.pg.uri(password='***')} --artifacts-destination"
    else:
        uri, ns, expected = team.url, "two words", "MANSET_NAMESPACE='two words'"
    _track_to(monkeypatch, uri, ns)
    start = time.monotonic()
    assert main(["train", "tfidf", "--root", str(trained.root)]) == 1
    assert time.monotonic() - start < 60
    line = _one_error_line(capsys.readouterr().err)
    assert expected.lower() in line.lower() and "not-the-password" not in line
    assert main(["pull", "--task", "category", "--root", str(trained.root)]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert (uri if case == "unreachable" else expected).lower() in line.lower()
    assert _bundles(trained.root) == before
    assert _registry(_client(team)) == registry


def test_pull_without_a_champion_is_one_line(team, trained, capsys, monkeypatch):
    before = _bundles(trained.root)
    _track_to(monkeypatch, team.url, "nobody-trained-here")
    assert main(["pull", "--task", "category", "--root", str(trained.root)]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert f"{team.url}: no champion of manset-nobody-trained-here-category to pull" in line
    assert _bundles(trained.root) == before


def test_compare_runs_hint_is_the_sqlite_command_for_the_default_store(tmp_path, monkeypatch):
    """The hint `manset train` prints for the store configure() chose (through the CLI, against
    the server, in test_a_run_through_the_server_...)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    tracking.configure(tmp_path)
    assert stores.ui_hint(stores.in_use()) == \
        "mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db"
    monkeypatch.chdir(ROOT)  # elsewhere, the short form would open another store
    assert stores.ui_hint(stores.in_use()) == \
        f"mlflow ui --backend-store-uri sqlite:///{tmp_path.resolve() / 'mlruns' / 'mlflow.db'}"


def test_store_uris_checks_and_hints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    own = tmp_path / "mlruns" / "mlflow.db"
    assert stores.ui_hint(f"sqlite:///{own}") == \
        "mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db"
    other = f"sqlite:///{tmp_path / 'other' / 'mlruns' / 'mlflow.db'}"
    assert stores.ui_hint(other) == f"mlflow ui --backend-store-uri {other}"
    assert stores.ui_hint("https://bob:s3cret@mlflow.example.org:8443/team") == \
        "open https://mlflow.example.org:8443/team in a browser"
    for fine in ("sqlite:///x.db", "http://h:5000", "https://h", "databricks", "file:///m"):
        stores.check_uri(fine)
    for db in ("postgresql://bob:s3cret@h/mlflow", "postgresql+psycopg://bob:s3cret@h:5432/m",
               "mysql+pymysql://bob:s3cret@h/m", "mssql+pyodbc://bob:s3cret@h/m"):
        with pytest.raises(ProjectError, match="mlflow server --backend-store-uri") as e:
            stores.check_uri(db)
        assert "s3cret" not in str(e.value) and "bob:***@h" in str(e.value)


def test_the_pipeline_tests_pass_against_the_server(team, pipeline_tests):
    """The fixtures honour MLFLOW_TRACKING_URI: a few of the pipeline tests pass against the
    server, each in a namespace of its own."""
    proc, log = pipeline_tests
    proc.wait(timeout=400)
    out = log.read_text()
    assert proc.returncode == 0 and "2 passed" in out, out[-3000:]
    names = [e.name for e in _client(team).search_experiments()]
    assert any(n.startswith("manset-test_pull_copies") for n in names), names


# Last: it kills the module's server.
def test_a_server_that_dies_mid_run_is_one_line_and_changes_nothing(team, trained, tmp_path,
                                                                    capsys, monkeypatch):
    """The server is killed (SIGKILL, workers and all) once the trainer's run has logged its
    dataset, while it trains; the trainer stops with one line, registers nothing and keeps its
    bundles."""
    root = Path(shutil.copytree(trained.root, tmp_path / "project"))
    before, registry = _bundles(root), _registry(_client(team))
    database = MlflowClient(team.pg.uri(), registry_uri=team.pg.uri())  # behind its back
    exp = database.get_experiment_by_name(MODEL).experiment_id
    trained_done = threading.Event()

    def kill_once_the_run_is_under_way() -> None:
        while not trained_done.wait(0.05):
            running = database.search_runs([exp], "attributes.status = 'RUNNING'")
            if running and "dataset_fingerprint" in running[0].data.params:
                team.server.kill()
                return

    _track_to(monkeypatch, team.url)
    killer = threading.Thread(target=kill_once_the_run_is_under_way)
    killer.start()
    try:
        code = main(["train", "tfidf", "--root", str(root)])
    finally:
        trained_done.set()
        killer.join()
    assert not team.server.ready, "the run finished before the server could be killed"
    assert code == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"manset: error: MLflow store {team.server.url}: ")
    (run,) = database.search_runs([exp], "attributes.status = 'RUNNING'")  # the next run
    assert "test_macro_f1" not in run.data.metrics  # closes it, if its trainer is gone
    assert _registry(database) == registry
    assert _bundles(root) == before
