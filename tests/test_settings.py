"""Bundles of another task, and options out of range, refused by the CLI and both servers with
one line."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from manset_serving import load
from manset_serving.app import create_app
from manset_serving.settings import Settings

from training.cli import main

SERVE = Path(sys.executable).parent / "manset-serve"
MANSET = Path(sys.executable).parent / "manset"


def test_a_bundle_of_another_task_is_refused(trained: Path, capsys) -> None:
    category = trained / "models" / "category" / "champion"
    load(category, task="category")
    with pytest.raises(ValueError, match=r"manifest.json.*'category' bundle, not a 'topic'"):
        load(category, task="topic")
    assert main(["predict", "--task", "topic", "--bundle", str(category), "--root",
                 str(trained), "Galatasaray kazandı"]) == 1
    err = capsys.readouterr().err
    assert "'category' bundle, not a 'topic' one" in err and len(err.strip().splitlines()) == 1


def test_the_service_refuses_a_champion_folder_of_another_task(trained: Path,
                                                                tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(trained / "models" / "category" / "champion",
                    models / "topic" / "champion")  # a category bundle where topic belongs
    shutil.copytree(trained / "models" / "category" / "champion",
                    models / "category" / "champion")
    with TestClient(create_app(Settings(models))) as app:
        ready = app.get("/readyz").json()
        got = app.post("/v1/classify", json={"headlines": ["Galatasaray kazandı"]})
    assert "topic" in json.dumps(ready) and "not a 'topic' one" in json.dumps(ready)
    assert got.status_code == 200 and set(got.json()["results"][0]) == {"category"}


@pytest.mark.parametrize("argv, message", [
    (["--port", "73536"], "73536 is outside 1-65535"),
    (["--port", "0"], "0 is outside 1-65535"),
    (["--threads", "0"], "0 is outside 1-1024"),
    (["--threads", "many"], "'many' is not a whole number"),
])
def test_manset_serve_refuses_options_out_of_range(tmp_path: Path, argv: list[str],
                                                   message: str) -> None:
    out = subprocess.run([str(SERVE), "--models", str(tmp_path), *argv], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and message in out.stderr


@pytest.mark.parametrize("argv", [["--port", "73536"], ["--threads", "0"]])
def test_manset_serve_command_refuses_options_out_of_range(tmp_path: Path,
                                                           argv: list[str]) -> None:
    # a process with a deadline: a server that starts anyway fails the test, not the suite
    out = subprocess.run([str(MANSET), "serve", "--root", str(tmp_path), *argv],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Invalid value" in out.stderr


def test_promote_needs_a_reason(trained: Path, capsys) -> None:
    assert main(["promote", "1", "--reason", "  ", "--root", str(trained)]) == 1
    assert "--reason is empty" in capsys.readouterr().err


def test_both_serve_commands_take_every_setting(capsys) -> None:
    from dataclasses import fields

    assert main(["serve", "--help"]) == 0
    typer_help = " ".join(capsys.readouterr().out.split())
    argparse_help = subprocess.run([str(SERVE), "--help"], capture_output=True, text=True,
                                   timeout=60).stdout
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        assert flag in typer_help and flag in argparse_help, flag
        assert f.metadata["help"].split()[0] in typer_help
