"""End to end on a small real slice: `manset run` into a temporary MLflow store, then the bundle,
the pyfunc and the in-memory pipeline must agree; then every kind of bad input."""

import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, make_project, verify
from manset_serving import load
from mlflow import MlflowClient
from sklearn.metrics import f1_score

from training import dataset
from training.cli import main
from training.families import tfidf
from training.tracking import PREDICTIONS


def _store(project: Path) -> MlflowClient:
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri, registry_uri=uri)


@pytest.mark.sqlite_store
def test_run_tracks_exports_and_registers(trained):
    bundle = trained / "models" / "category" / "tfidf"
    manifest = verify(bundle)
    assert {"model.safetensors", "labels.json", "config.json", "MODEL_CARD.md"} <= set(
        manifest["files"])
    labels = json.loads((bundle / "labels.json").read_text())
    assert labels == ["Dünya", "Ekonomi", "Gündem", "Kültür-Sanat", "Magazin", "Politika",
                      "Sağlık", "Spor"]

    client = _store(trained)
    exp = client.get_experiment_by_name("manset-category")
    (run,) = client.search_runs([exp.experiment_id])
    assert manifest["mlflow_run_id"] == run.info.run_id
    m = run.data.metrics
    # the figure is the macro-F1 of the test predictions the run logged, not just a number
    logged = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{PREDICTIONS}")
    assert m["test_macro_f1"] == pytest.approx(f1_score(
        logged["true"], logged["predicted"], labels=sorted(set(logged["true"])),
        average="macro"))
    assert m["test_macro_f1"] > 0.5 and m["predict_throughput_per_s"] > 0
    assert {f"test_f1_{lb}" for lb in labels} <= set(m)
    # cross-source: one fold per source; 42bin's Spor is learnt from TRT, its Dünya and Gündem
    # from no other source (unseen), and the pooled figures score each seen row once
    assert 30 <= m["loso_42bin-haber_rows"] <= 40 and m["loso_42bin-haber_unseen_rows"] >= 100
    assert m["loso_rows"] == sum(m[f"loso_{s}_rows"] for s in
                                 ("42bin-haber", "trthaber.com", "turkish-headlines")
                                 if f"loso_{s}_rows" in m)
    assert {"test_source_trthaber.com_macro_f1", "test_source_42bin-haber_accuracy"} <= set(m)
    assert run.data.params["dataset_fingerprint"] == manifest["dataset_fingerprint"]
    assert run.data.tags["mlflow.source.git.commit"]
    assert [i.dataset.digest for i in run.inputs.dataset_inputs] == \
        [manifest["dataset_fingerprint"]] * 3
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/confusion_matrix.png", "evaluation/classification_report.txt",
            "evaluation/worst_errors.json"} <= artifacts
    champion = client.get_model_version_by_alias("manset-category", "champion")
    assert champion.run_id == run.info.run_id


@pytest.mark.sqlite_store
def test_bundle_pyfunc_and_pipeline_agree_on_the_test_split(trained):
    dd, _ = dataset.load(trained / "data" / "build" / "category")
    texts = list(dd["test"]["text"])
    cfg = json.loads((trained / "models" / "category" / "tfidf" / "config.json").read_text())
    pipe = tfidf.make_pipeline(tfidf.TfidfConfig()).fit(
        list(dd["train"]["text"]), np.array(dd["train"]["label"]))
    names = dd["test"].features["label"].names
    in_memory = [names[i] for i in pipe.predict(texts)]

    bundle = load(trained / "models" / "category" / "champion")
    exported = [r["label"] for r in bundle.predict(texts)]
    _store(trained)
    pyfunc = mlflow.pyfunc.load_model("models:/manset-category@champion")
    served = list(pyfunc.predict(pd.DataFrame({"text": texts}))["label"])
    assert list(pyfunc.predict(texts)["label"]) == served  # a plain list works too
    assert exported == in_memory == served
    assert cfg["task"] == "category" and cfg["beta"] > 0


def test_predict_cli_arguments_and_files(trained, capsys, tmp_path):
    root = ["--root", str(trained)]
    assert main(["predict", *root, "Galatasaray derbide kazandı", "Borsa günü yükselişle kapattı"
                 ]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["label"] for x in lines] == ["Spor", "Ekonomi"]
    assert abs(sum(lines[0]["probabilities"].values()) - 1) < 1e-4
    txt = tmp_path / "h.txt"
    txt.write_text("Milli takım kadrosu açıklandı\n\nDolar rekor kırdı\n")
    csv = tmp_path / "h.csv"
    csv.write_text('id,title\n1,"Süper Lig\'de derbi heyecanı"\n')
    assert main(["predict", *root, "--input", str(txt)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["predict", *root, "--input", str(csv)]) == 0
    assert json.loads(capsys.readouterr().out)["label"] == "Spor"


@pytest.mark.parametrize(("content", "name", "message"), [
    (None, "missing.txt", "missing.txt: no such file"),
    ("", "empty.txt", "empty.txt: no headlines"),
    ("id,headline\n1,x\n", "nocol.csv", "missing column\\(s\\) title"),
    ('title\n"Maç bitti\n', "bad.csv", "bad.csv:\\d+"),
    ("title\nMaç\n   \n", "blank.csv", "blank.csv:3: empty headline"),
])
def test_predict_bad_input_is_one_clear_line(trained, capsys, tmp_path, content, name, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    assert main(["predict", "--root", str(trained), "--input", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(message, err.replace("\n", ""))


def test_predict_streams_a_large_input_and_reads_stdin(trained, capsys, tmp_path, monkeypatch):
    """Output comes batch by batch: a bad line near the end of a big file stops the run there,
    after every earlier batch was printed; `-` reads stdin."""
    from training.predicting import PREDICT_BATCH

    lines = ["Galatasaray derbide kazandı", "Borsa rekor kırdı"] * 2500 + ["x" * 2000]
    big = tmp_path / "big.txt"
    big.write_text("\n".join(lines) + "\n")
    assert main(["predict", "--root", str(trained), "--input", str(big)]) == 1
    out, err = capsys.readouterr()
    printed = len(out.splitlines())
    assert printed == 5000 // PREDICT_BATCH * PREDICT_BATCH  # whole batches only
    assert f"{big}: headline 5001: 2000 characters, at most 1000" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("Milli takım kadrosu açıklandı\n\nDolar\n"))
    assert main(["predict", "--root", str(trained), "--input", "-"]) == 0
    assert [json.loads(x)["text"] for x in capsys.readouterr().out.splitlines()] == [
        "Milli takım kadrosu açıklandı", "Dolar"]


@pytest.mark.parametrize(("content", "message"), [
    (b"Ma\xe7 bitti\n", "bad.txt:1: not UTF-8 text (byte 0xe7)"),
    (b"title\nGol\nMa\xe7\n", "bad.csv:3: not UTF-8 text (byte 0xe7)"),
])
def test_predict_names_the_file_and_line_of_non_utf8_input(trained, capsys, tmp_path, content,
                                                           message):
    path = tmp_path / message.split(":")[0]
    path.write_bytes(content)
    assert main(["predict", "--root", str(trained), "--input", str(path)]) == 1
    assert message in capsys.readouterr().err


def test_predict_input_folder_is_named(trained, capsys, tmp_path):
    assert main(["predict", "--root", str(trained), "--input", str(tmp_path)]) == 1
    assert f"{tmp_path}: a folder, not a file" in capsys.readouterr().err


@pytest.mark.parametrize("entry", ["../outside.csv", "/etc/passwd", "sub/../../outside.csv"])
def test_sources_csv_cannot_point_outside_data_labelled(project, capsys, entry):
    (project / "data" / "outside.csv").write_text("title,label\nGizli satır,Spor\n")
    sources = project / "data" / "labelled" / "sources.csv"
    sources.write_text(f"file,source,text_column,label_column\n{entry},x,title,label\n")
    assert main(["import", "--root", str(project)]) == 1
    err = capsys.readouterr().err
    assert f"sources.csv:2: file '{entry}' is outside" in err
    assert "root:" not in err and "Gizli" not in err  # nothing of the file is echoed


def test_whitespace_headline_argument_is_refused(trained, capsys):
    assert main(["predict", "--root", str(trained), "   "]) == 1
    assert "arguments: headline 1: empty headline" in capsys.readouterr().err


def _snapshot(project: Path) -> dict[str, str]:
    return verify(project / "models" / "category" / "tfidf")["files"]


@pytest.mark.sqlite_store
def test_locked_store_fails_cleanly_and_keeps_the_export(trained, capsys):
    before = _snapshot(trained)
    lock = sqlite3.connect(trained / "mlruns" / "mlflow.db", timeout=0)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        start = time.monotonic()
        assert main(["train", "tfidf", "--root", str(trained)]) == 1
        assert time.monotonic() - start < 120
    finally:
        lock.rollback()
        lock.close()
    err = capsys.readouterr().err
    assert "MLflow store" in err and "Traceback" not in err
    assert _snapshot(trained) == before


def test_unreachable_server_fails_fast_and_keeps_the_export(trained, capsys, monkeypatch):
    before = _snapshot(trained)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard port: refused
    start = time.monotonic()
    assert main(["train", "tfidf", "--root", str(trained)]) == 1
    assert time.monotonic() - start < 60
    assert "MLflow store http://127.0.0.1:9" in capsys.readouterr().err
    assert _snapshot(trained) == before


@pytest.mark.sqlite_store
def test_a_losing_run_does_not_replace_the_served_bundle(trained, capsys):
    first = verify(trained / "models" / "category" / "champion")["mlflow_run_id"]
    text = "Merkez Bankası faiz kararını açıkladı"
    assert main(["predict", "--root", str(trained), text]) == 0
    served = json.loads(capsys.readouterr().out)
    assert main(["train", "tfidf", "--root", str(trained)]) == 0  # a tie: the champion stays
    assert main(["train", "tfidf", "--root", str(trained), "--C", "0.0001"]) == 0  # loses
    client = _store(trained)
    assert str(client.get_model_version_by_alias("manset-category", "champion").version) == "1"
    assert len(client.search_model_versions("name='manset-category'")) == 3
    assert verify(trained / "models" / "category" / "champion")["mlflow_run_id"] == first
    last = verify(trained / "models" / "category" / "tfidf")["mlflow_run_id"]
    assert last != first  # the last run's bundle is kept beside it, for inspection
    capsys.readouterr()
    assert main(["predict", "--root", str(trained), text]) == 0
    assert json.loads(capsys.readouterr().out) == served
    assert main(["predict", "--root", str(trained), "--model", "tfidf", text]) == 0
    assert json.loads(capsys.readouterr().out) != served  # C=0.0001 is nearly uniform
    record = json.loads((trained / "models" / "category" / "champion.json").read_text())
    assert record["version"] == "1" and record["mlflow_run_id"] == first


def test_bundle_files_are_readable_by_other_users(trained):
    for folder in ("champion", "tfidf"):
        for path in (trained / "models" / "category" / folder).iterdir():
            assert path.stat().st_mode & 0o777 == 0o644, path
    assert (trained / "models" / "category" / "champion.json").stat().st_mode & 0o777 == 0o644


def test_one_class_task_and_missing_table_fail_cleanly(project, capsys):
    assert main(["build", "--root", str(project)]) == 1
    assert "no headline table yet" in capsys.readouterr().err
    (project / "data" / "labelled" / "sources.csv").write_text(
        "file,source,text_column,label_column\nturkish_headlines.csv,t,title,label\n")
    assert main(["import", "--root", str(project)]) == 0
    assert main(["build", "--root", str(project), "--min-count", "61"]) == 1
    assert "has 0 class(es)" in capsys.readouterr().err


def test_int8_is_refused_for_a_tfidf_bundle(trained, capsys):
    assert main(["predict", "--root", str(trained), "--int8", "Borsa güne yükselişle başladı"]) == 1
    assert "int8 applies to BERT bundles" in capsys.readouterr().err


def test_pull_copies_the_registered_champion_into_models(trained, capsys):
    """A clone without models/ (or a team server's champion) gets its bundle with `pull`."""
    champion = trained / "models" / "category" / "champion"
    before = verify(champion)
    shutil.rmtree(trained / "models")
    assert main(["predict", "--root", str(trained), "Borsa güne yükselişle başladı"]) == 1
    assert "no such bundle folder" in capsys.readouterr().err
    assert main(["pull", "--task", "category", "--root", str(trained)]) == 0
    assert verify(champion) == before
    assert json.loads((champion.parent / "champion.json").read_text())["version"] == "1"
    assert not list((trained / "models").glob(".pull-*"))  # the download is cleaned up
    assert main(["predict", "--root", str(trained), "Borsa güne yükselişle başladı"]) == 0


def test_pull_of_a_corrupt_artifact_names_the_version_and_keeps_the_champion(trained, capsys):
    champion = trained / "models" / "category" / "champion"
    before = verify(champion)
    [logged] = (trained / "mlruns" / "artifacts").rglob("model.safetensors")
    data = bytearray(logged.read_bytes())
    data[-1] ^= 1
    logged.write_bytes(bytes(data))
    assert main(["pull", "--task", "category", "--root", str(trained)]) == 1
    err = capsys.readouterr().err
    assert "manset-category v1 (run " in err and "checksum" in err and ".pull-" not in err, err
    assert verify(champion) == before
    assert not list((trained / "models").glob(".pull-*"))


def test_a_run_that_keeps_the_champion_restores_a_missing_champion_folder(trained):
    champion = trained / "models" / "category" / "champion"
    before = verify(champion)
    shutil.rmtree(champion)
    assert main(["train", "tfidf", "--root", str(trained)]) == 0  # ties: the champion stays
    assert verify(champion) == before


def test_manset_run_outside_a_terminal_prints_stages_and_nothing_to_ignore(
        tmp_path: Path, mlflow_template: Path) -> None:
    root = make_project(tmp_path / "project", mlflow_template)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MANSET_"))}
    out = subprocess.run([sys.executable, "-c", "import sys; from training.cli import main; "
                          "sys.exit(main(sys.argv[1:]))", "run", "--root", str(root)],
                         cwd=ROOT, env={**env, "COLUMNS": "60"}, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    for word in ("warning", "Warning", "INFO", "\x1b[", "Traceback", "Successfully registered",
                 "Created version"):
        assert not [x for x in lines if word in x], (word, out.stderr)
    # the stages by name, each on a plain line with the time since the start
    for stage in ("category: fitting tfidf", "category: evaluating tfidf", "cross-source:",
                  "category: logging tfidf to MLflow"):
        assert any(x.startswith("[") and stage in x for x in lines), (stage, out.stderr)
    # the bundle's path on one line, even at 60 columns
    bundle = root / "models" / "category" / "tfidf"
    assert any(f"bundle {bundle};" in x for x in lines), out.stderr


def test_catch_all_metrics_are_logged_for_topic_runs_only(trained: Path) -> None:
    client = MlflowClient(f"sqlite:///{trained / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("manset-category")
    [run] = client.search_runs([exp.experiment_id])
    assert not [k for k in run.data.metrics if k.startswith("test_catchall")]


def test_the_library_runs_without_typer():
    """typer is the CLI's: the pipeline, the families and the sweep read their configs (and the
    settings that differ from the defaults) without importing it."""
    code = ("import sys, training.pipeline, training.sweep, training.families.use, "
            "training.families.bert.train, training.families.ensemble, "
            "training.spark_build; print('typer' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_build_settings_come_from_one_dataclass(project: Path, tmp_path: Path, capsys) -> None:
    """`manset build`'s options and --config keys are BuildConfig's fields; a setting left out
    is the task's own default (training/tasks.py), and the help says each task's."""
    from training import tasks
    from training.configs import BuildConfig

    assert main(["import", "--root", str(project)]) == 0
    settings = tmp_path / "build.toml"
    settings.write_text("test_fraction = 0.3\nmin_count = 5\n")
    assert main(["build", "--root", str(project), "--config", str(settings)]) == 0
    dd, _ = dataset.load(project / "data" / "build" / "category")
    assert 0.25 < len(dd["test"]) / sum(len(dd[s]) for s in dd) < 0.35
    assert BuildConfig("topic").min_count == tasks.get("topic").min_count != \
        BuildConfig("category").min_count
    assert BuildConfig("topic", min_count=3).min_count == 3
    capsys.readouterr()
    assert main(["build", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert all(f"{t.min_count} for {t.name}" in shown for t in tasks.TASKS.values())
    assert main(["build", "--root", str(project), "--task", "nope"]) == 2
