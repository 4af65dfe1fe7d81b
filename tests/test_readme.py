"""The README's main commands and the serving guide's examples (docs/serving.md), run as a user
would paste them, in a project that `manset run` trained."""

import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, make_project
from manset_serving import load

from training.cli import main

BIN = Path(sys.executable).parent


def example(name: str) -> str:
    """The fenced block after `<!-- example: name -->` in docs/serving.md."""
    text = (ROOT / "docs" / "serving.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- example: {name} -->\n```\w+\n(.*?)```", text, re.S)
    assert found, f"docs/serving.md has no example {name!r}"
    return found.group(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        project = make_project(tmp_path_factory.mktemp("readme") / "project", mlflow_template)
        assert main(["run", "--root", str(project)]) == 0
    return project


def _python(code: str, cwd: Path, timeout: int = 300) -> str:
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(cwd)}
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                         timeout=timeout, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _expected(project: Path, text: str) -> str:
    return load(project / "models" / "category" / "champion").predict([text])[0]["label"]


def test_the_readme_main_commands_run_as_written(project: Path) -> None:
    """In a fresh project of its own (training registers a version): every main command but
    `run` (what the `trained` fixture does) and `serve` (test_http_example serves)."""
    block = re.search(r"## Main commands\n\n```sh\n(.*?)```",
                      (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert block, "README has no main commands"
    (project / "headlines.txt").write_text("Borsa rekor kırdı\nDerbide gol yağmuru\n")
    ran = []
    for line in block.group(1).splitlines():
        argv = shlex.split(line.replace(".venv/bin/", f"{BIN}/"), comments=True)
        if argv[1] in ("run", "serve"):
            continue
        out = subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, (line, out.stderr[-2000:])
        ran.append(argv[1])
    assert ran == ["import", "build", "train", "runs", "predict", "predict"]


def test_lean_predictor_example(trained: Path) -> None:
    out = _python(example("lean"), trained)
    assert f"'label': '{_expected(trained, 'Merkez Bankası faiz kararını açıkladı')}'" in out


def test_pyfunc_example(trained: Path) -> None:
    out = _python(example("pyfunc"), trained)
    assert _expected(trained, "Merkez Bankası faiz kararını açıkladı") in out


def test_http_example(trained: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    script = example("http").replace(".venv/bin/", f"{BIN}/").replace("8000", port)
    out = subprocess.run(["bash", "-c", f"{script}\nstatus=$?\nkill $!\nwait\nexit $status"],
                         cwd=trained, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    answer = json.loads(out.stdout)
    text = "Galatasaray derbide 3-1 kazandı"
    assert answer["results"][0]["category"]["label"] == _expected(trained, text)
    assert answer["models"]["category"]["version"] == "1"


@pytest.mark.slow
def test_spark_example(trained: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("no Java runtime (.ci/run installs one)")
    before = {p for p in trained.rglob("*") if p.is_file()}
    out = _python(example("spark"), trained, timeout=600)
    assert _expected(trained, "Galatasaray derbide 3-1 kazandı") in out
    # what it wrote is where git ignores it: run as written in a clone, it leaves no change
    written = [str(p.relative_to(trained)) for p in trained.rglob("*")
               if p.is_file() and p not in before]
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", *written],
                             capture_output=True, text=True).stdout.split()
    assert written and sorted(ignored) == sorted(written), (written, ignored)
    # every row of the written parquet: the champion's label (the one Spark test of spark_udf)
    scored = pd.read_parquet(trained / "out" / "scored.parquet")
    bundle = load(trained / "models" / "category" / "champion")
    assert len(scored) > 0
    assert list(scored["label"]) == [r["label"] for r in bundle.predict(list(scored["title"]))]
