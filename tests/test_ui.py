"""The MLflow UI in a real browser: two trained runs, their names and `test_macro_f1` on the
experiment's run list and in the compare view.

Headless Chromium (Debian's `chromium`) renders each page with `--dump-dom`, no driver needed:
`--virtual-time-budget` runs the app's clock ahead but stands still while a request is in
flight, so the DOM comes back once the React app has fetched and drawn the runs.
`MANSET_UI_SCREENSHOT=docs/mlflow-compare.png pytest tests/test_ui.py` also saves the compare
view for the README.
"""

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import make_project
from mlflow import MlflowClient
from PIL import Image
from selectolax.lexbor import LexborHTMLParser

from training import evaluation
from training.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MISSING = "chromium is not installed (apt-get install chromium; .ci/run installs it)"
if CHROMIUM is None and os.environ.get("CI") != "true":
    pytest.skip(MISSING, allow_module_level=True)
# Root, no display, no network: no sandbox, no GPU, and none of the browser's own calls home.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1400,900",
         "--virtual-time-budget=10000"]


@dataclass(frozen=True)
class Run:
    id: str
    name: str
    f1: float


@dataclass(frozen=True)
class UI:
    url: str
    experiment_id: str
    runs: list[Run]  # best test_macro_f1 first


def _chromium() -> str:
    if CHROMIUM is None:  # only under CI=true, where a missing browser is a failure
        pytest.fail(MISSING)
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill(proc: subprocess.Popen) -> None:
    """The process and everything it started in its session (uvicorn's worker, Chromium's
    helpers), at once: a graceful stop of the server costs seconds, and it only reads."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow ui exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    pytest.fail(f"mlflow ui not up after {timeout_s} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Iterator[UI]:
    _chromium()
    project = make_project(tmp_path_factory.mktemp("ui") / "project", mlflow_template)
    store = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    url = f"http://127.0.0.1:{_free_port()}"
    log = project / "mlflow-ui.log"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # One worker and no job runner: the defaults (4 workers, a job queue) take twice as long to
    # start on 2 cores and serve nothing this test asks for.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"  # no calls home from a test
    # Started before training: its ~15 s of imports overlap the training below.
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store,
             "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1], "--workers", "1"],
            cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("MLFLOW_TRACKING_URI", raising=False)
            # the speed figures are not under test: time 2,000 headlines, not 20,000
            mp.setattr(evaluation, "speed",
                       functools.partial(evaluation.speed, batch=2000, singles=20))
            root = ["--root", str(project)]
            for argv in (["import", *root], ["build", *root],
                         ["train", "tfidf", *root, "--C", "0.5"],
                         ["train", "tfidf", *root, "--C", "2"]):
                assert main(argv) == 0, argv
        client = MlflowClient(store)
        found = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                   order_by=["metrics.test_macro_f1 DESC"])
        runs = [Run(r.info.run_id, r.info.run_name, r.data.metrics["test_macro_f1"])
                for r in found]
        [experiment_id] = {r.info.experiment_id for r in found}
        assert len(runs) == 2, runs
        _wait_healthy(url, server, log)
        yield UI(url, experiment_id, runs)
    finally:
        _kill(server)


def _render(url: str, tmp: Path, screenshot: Path | None = None) -> str:
    """The text of a page once the app has drawn it (and a screenshot of it), from a browser
    with a fresh profile that is always stopped."""
    shot = [f"--screenshot={screenshot}"] if screenshot else []
    browser = subprocess.Popen(
        [_chromium(), *FLAGS, f"--user-data-dir={tmp / 'profile'}", "--dump-dom", *shot,
         url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        dom, err = browser.communicate(timeout=90)
    finally:
        _kill(browser)
    assert browser.returncode == 0, err[-3000:]
    tree = LexborHTMLParser(dom)
    tree.strip_tags(["script", "style"])
    assert tree.body is not None, f"{url}: no page\n{err[-3000:]}"
    return " ".join(tree.body.text(separator=" ").split())


def _assert_shows(text: str, ui: UI, url: str) -> None:
    for run in ui.runs:
        assert run.name in text, f"run name {run.name!r} not on {url}:\n{text[:3000]}"
    assert "test_macro_f1" in text, f"test_macro_f1 not on {url}:\n{text[:3000]}"


def test_run_list_shows_both_runs_sorted_by_macro_f1(ui: UI, tmp_path: Path) -> None:
    # Sorted as a user ranks runs: the metric columns are hidden by default, the sort names the
    # metric, and the server's order must match the store's.
    url = (f"{ui.url}/#/experiments/{ui.experiment_id}/runs"
           f"?orderByKey={quote('metrics.`test_macro_f1`')}&orderByAsc=false")
    text = _render(url, tmp_path)
    _assert_shows(text, ui, url)
    best, worst = ui.runs[0].name, ui.runs[1].name
    if best not in worst and worst not in best:  # distinct names: the best one is listed first
        assert text.index(best) < text.index(worst), text[:3000]


def test_compare_view_shows_both_runs_and_macro_f1(ui: UI, tmp_path: Path) -> None:
    # MLflow 3's link from "Compare" on the run list: JSON arrays in a hash-routed query
    runs = json.dumps([r.id for r in ui.runs])
    experiments = json.dumps([ui.experiment_id])
    url = f"{ui.url}/#/compare-runs?runs={quote(runs)}&experiments={quote(experiments)}"
    shot = tmp_path / "compare.png"
    text = _render(url, tmp_path, screenshot=shot)
    _assert_shows(text, ui, url)
    for run in ui.runs:
        assert run.id in text, f"run {run.id} not in the compare view"
        # the parallel-coordinates plot labels the ends of the test_macro_f1 axis with both runs
        assert f"{run.f1:.5f}" in text, f"test_macro_f1 {run.f1:.5f} not in the compare view"

    with Image.open(shot) as image:
        assert image.size == (1400, 900)
        # a page still loading has a handful of colours, the drawn one thousands
        colours = image.convert("RGB").getcolors(maxcolors=image.width * image.height)
        assert len(colours) > 1000, f"{shot}: {len(colours)} colours, a blank or loading page"
    if target := os.environ.get("MANSET_UI_SCREENSHOT"):
        shutil.copy(shot, target)
