"""Comparable runs: options from the config dataclasses, run names and tags, the paired
promotion rule, `manset promote`, `manset runs`, and a store that survives a moved project."""

import dataclasses
import json
import shutil
from pathlib import Path
from urllib.parse import unquote

import mlflow
import numpy as np
import pytest
from conftest import spoil_logged_predictions, verify
from mlflow import MlflowClient
from sklearn.metrics import f1_score

from training import compare, options
from training.cli import main
from training.configs import BertTrainConfig, TfidfConfig

MODEL = "manset-category"
pytestmark = pytest.mark.sqlite_store  # the tests read the project's store themselves


def _store(root: Path) -> MlflowClient:
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri, registry_uri=uri)


def _runs(client: MlflowClient) -> list:
    exp = client.get_experiment_by_name(MODEL)
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


# --- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [TfidfConfig, BertTrainConfig])
def test_every_setting_is_an_option_with_the_dataclass_default_and_help(cls, capsys) -> None:
    family = "tfidf" if cls is TfidfConfig else "bert"
    assert main(["train", family, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # rich wraps the help
    for o in options.options(cls):
        assert o.help, f"{cls.__name__}.{o.name} has no help"
        assert o.flag in text and o.help.split()[0] in text
    # one source of defaults: building with nothing given is the dataclass's own default
    assert options.build(cls, {}) == cls()


def test_a_config_file_sets_what_the_command_line_does_not(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('C = 2\nclass_weight = "none"\n[features]\nchar_max = 4\n')
    values = options.read_file(TfidfConfig, path)
    cfg = options.build(TfidfConfig, values | {"C": 3.0})  # the command line wins
    assert (cfg.C, cfg.class_weight, cfg.features.char_max) == (3.0, None, 4)
    assert options.differing(cfg) == {"char_max": 4, "C": 3.0, "class_weight": None}


@pytest.mark.parametrize("content, message", [
    ("Cee = 2\n", "unknown setting 'Cee'"),
    ("C = 'big'\n", "C: expected float, got 'big'"),
    ("[features]\nchar_max = 4.5\n", "char_max: expected int, got 4.5"),
    ("C = \n", "not a valid TOML file"),
    ("[features]\nchar_bits = 40\n", "char_bits: 40 is outside 8-24"),  # 8 TiB of table
    ("batch = 1000000000000\n", "batch: 1000000000000 is outside 1-1000000"),
    ("batch = 0\n", "batch: 0 is outside 1-1000000"),
    ("C = nan\n", "C: nan is outside"),
    ("a = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
])
def test_a_bad_config_file_names_the_file_and_the_setting(project: Path, capsys, content: str,
                                                          message: str) -> None:
    path = project / "bad.toml"
    path.write_text(content)
    assert main(["train", "tfidf", "--root", str(project), "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"manset: error: {path}: ") and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _store(project).get_experiment_by_name(MODEL) is None  # no run, not even a FAILED one


@pytest.mark.parametrize("argv, message", [
    (["--C", "abc"], "Invalid value for '--C'"),
    (["--tag", "novalue"], "expected key=value"),
    (["--class-weight", "none", "--no-such-option"], "No such option"),
    (["--char-bits", "40"], "40 is outside 8-24"),
    (["--calibration-folds", "1"], "1 is outside 2-20"),
])
def test_bad_options_are_usage_errors(project: Path, capsys, argv: list[str],
                                      message: str) -> None:
    assert main(["train", "tfidf", "--root", str(project), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# --- names, tags, artifacts --------------------------------------------------------------------


def test_runs_are_named_tagged_and_logged_alike(trained: Path, capsys) -> None:
    config = trained / "c.toml"
    config.write_text("[features]\nchar_max = 4\n")
    assert main(["train", "tfidf", "--root", str(trained), "--config", str(config), "--C", "2",
                 "--tag", "owner=ayse", "--tag", "ticket=NEWS-12",
                 "--description", "shorter char n-grams"]) == 0
    assert main(["train", "tfidf", "--root", str(trained), "--run-name", "my-run"]) == 0
    client = _store(trained)
    first, ours, named = _runs(client)
    assert ours.info.run_name == f"tfidf-char_max=4-C=2-{ours.info.run_id[:6]}"
    assert first.info.run_name == f"tfidf-{first.info.run_id[:6]}"  # all defaults
    assert named.info.run_name == "my-run"
    tags = ours.data.tags
    assert (tags["owner"], tags["ticket"], tags["mlflow.note.content"]) == (
        "ayse", "NEWS-12", "shorter char n-grams")
    assert (tags["task"], tags["family"]) == ("category", "tfidf")
    assert tags["manset.git_dirty"] in {"true", "false", "unknown"}
    assert int(tags["manset.cores"]) >= 1 and tags["manset.cpu"] and tags["manset.gpu"] == "none"
    assert tags["manset.version"] and "mlflow.source.git.commit" in tags
    assert (ours.data.params["C"], ours.data.params["features.char_max"]) == ("2.0", "4")
    m = ours.data.metrics
    assert m["test_macro_f1_ci_low"] <= m["test_macro_f1"] <= m["test_macro_f1_ci_high"]
    assert "predict_throughput_spread_pct" in m  # its figure: tests/test_evaluation.py
    layout = set()
    for run in (first, ours, named):  # every run: the same artifact layout
        found = {f.path for d in ("evaluation", "cards")
                 for f in client.list_artifacts(run.info.run_id, d)}
        assert not layout or found == layout
        layout = found
    assert layout == {"evaluation/classification_report.txt", "evaluation/confusion_matrix.png",
                      "evaluation/per_class_f1.png", "evaluation/worst_errors.json",
                      "evaluation/test_predictions.json", "cards/MODEL_CARD.md",
                      "cards/DATA_CARD.md", "cards/CROSS_SOURCE.md",
                      "evaluation/coverage_precision.png"}


# --- the paired test ---------------------------------------------------------------------------


def _predictions(rows: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 8, rows)
    return y, np.where(rng.random(rows) < 0.9, y, rng.integers(0, 8, rows))


def test_paired_bootstrap_delta_is_the_macro_f1_difference() -> None:
    y, a = _predictions()
    b = np.where(np.random.default_rng(2).random(len(y)) < 0.5, y, a)  # better: half fixed
    paired = compare.paired_bootstrap(y, b, a)
    want = f1_score(y, b, average="macro") - f1_score(y, a, average="macro")
    assert paired.delta == pytest.approx(want, abs=1e-5)
    assert paired.low < paired.delta < paired.high and paired.significant


def test_a_tie_or_a_tiny_gain_is_not_significant() -> None:
    y, a = _predictions()
    assert not compare.paired_bootstrap(y, a, a).significant  # a retrain of the same model
    wrong = np.flatnonzero(a != y)[:2]  # two of 3,000 rows fixed: a gain of ~0.0007
    b = a.copy()
    b[wrong] = y[wrong]
    paired = compare.paired_bootstrap(y, b, a)
    assert 0 < paired.delta < 0.002 and not paired.significant
    assert not compare.paired_bootstrap(y, a, b).significant  # nor a tiny loss


def test_the_paired_test_over_seeds_tests_the_mean_gain() -> None:
    """Each seed's gain is small and not significant alone; their mean, on the same rows, is the
    statistic, and three such gains together are. One seed is the plain paired test."""
    y, a = _predictions()
    fixed = []
    for seed in range(3):  # each seed fixes 15 errors and makes 9 of its own: ~0.002 net
        rng, b = np.random.default_rng(seed), a.copy()
        rows = rng.choice(np.flatnonzero(a != y), 15, replace=False)
        b[rows] = y[rows]
        rows = rng.choice(np.flatnonzero(a == y), 9, replace=False)
        b[rows] = (y[rows] + 1) % 8
        fixed.append(b)
    alone = [compare.paired_bootstrap(y, b, a) for b in fixed]
    pooled = compare.paired_over_seeds(y, fixed, [a, a, a])
    assert pooled.delta == pytest.approx(np.mean([p.delta for p in alone]), abs=1e-6)
    assert not any(p.significant for p in alone) and pooled.significant
    assert compare.paired_over_seeds(y, fixed[:1], [a]) == alone[0]
    with pytest.raises(ValueError, match="in pairs"):
        compare.paired_over_seeds(y, fixed, [a, a])


def test_the_paired_test_needs_the_same_rows() -> None:
    y, a = _predictions(100)
    with pytest.raises(ValueError, match="same rows"):
        compare.paired_bootstrap(y, a, a[:-1])


def test_each_promotion_decision_and_its_figures_are_on_the_run(trained: Path) -> None:
    """Whatever the data says, the alias moved exactly when the logged test was significant."""
    for c in ("0.5", "0.05", "5"):
        assert main(["train", "tfidf", "--root", str(trained), "--C", c]) == 0
    client = _store(trained)
    first, *later = _runs(client)
    assert first.data.tags["manset.promotion"] == "champion"  # the first version
    for run in later:
        m, tags = run.data.metrics, run.data.tags
        moved = m["promotion_delta_macro_f1"] > 0 and m["promotion_p_value"] < compare.ALPHA
        assert tags["manset.promotion"] == ("champion" if moved else "kept the champion")
        assert "paired bootstrap" in tags["manset.promotion_reason"]
        assert m["promotion_delta_ci_low"] <= m["promotion_delta_macro_f1"] <= \
            m["promotion_delta_ci_high"]
    tie = later[0]  # the same settings as the first run: identical predictions
    assert tie.data.metrics["promotion_delta_macro_f1"] == 0
    assert tie.data.tags["manset.promotion"] == "kept the champion"
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert verify(trained / "models" / "category" / "champion")["mlflow_run_id"] == \
        champion.run_id


def test_a_run_never_replaces_a_champion_that_moved_while_it_compared(
        trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs finish together. While run A compares with the old champion, run B takes the
    alias; A beats the old champion but not B, so B must stay (A used to overwrite it)."""
    from training.tracking import PREDICTIONS, registry

    for _ in range(2):  # v2 (A) and v3 (B): the same settings tie with v1, which stays
        assert main(["train", "tfidf", "--root", str(trained)]) == 0
    client = _store(trained)
    spoil_logged_predictions(client, "1")  # so that A beats the old champion
    a = client.get_model_version(MODEL, "2")
    logged = mlflow.artifacts.load_dict(f"runs:/{a.run_id}/{PREDICTIONS}")
    labels = sorted(set(logged["true"]))
    real, compared = compare.paired_bootstrap, []

    def b_lands_meanwhile(*args, **kwargs):
        champion = client.get_model_version_by_alias(MODEL, "champion").version
        compared.append(str(champion))
        if str(champion) == "1":
            client.set_registered_model_alias(MODEL, "champion", "3")
        return real(*args, **kwargs)

    monkeypatch.setattr(compare, "paired_bootstrap", b_lands_meanwhile)
    ids = [np.array([labels.index(x) for x in logged[k]]) for k in ("true", "predicted")]
    got = registry.promote(registry.Challenger(
        "category", a.run_id, logged["dataset_fingerprint"], 0.0, *ids, labels))
    assert compared == ["1", "3"]
    assert not got.champion_moved and "champion v3" in got.reason
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "3"


# --- manset promote ----------------------------------------------------------------------------


def test_promote_by_hand_records_who_and_why_and_serves_it(trained: Path, capsys) -> None:
    assert main(["train", "tfidf", "--root", str(trained), "--C", "0.01"]) == 0  # loses
    client = _store(trained)
    loser = client.get_model_version(MODEL, "2")
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    before = verify(trained / "models" / "category" / "champion")
    capsys.readouterr()
    assert main(["promote", "2", "--reason", "try it", "--root", str(trained)]) == 1
    err = capsys.readouterr().err
    assert "not better than champion v1 by more than chance" in err and "--force" in err
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    assert verify(trained / "models" / "category" / "champion") == before
    assert main(["promote", loser.run_id, "--force", "--reason", "A/B test in prod",
                 "--by", "ayse", "--root", str(trained)]) == 0
    version = client.get_model_version_by_alias(MODEL, "champion")
    assert str(version.version) == "2"
    assert (version.tags["manset.promoted_by"], version.tags["manset.promoted_reason"],
            version.tags["manset.promoted_over"]) == ("ayse", "A/B test in prod", "1")
    served = verify(trained / "models" / "category" / "champion")
    assert served["mlflow_run_id"] == loser.run_id
    assert json.loads((trained / "models" / "category" / "champion.json").read_text()
                      )["version"] == "2"


@pytest.mark.parametrize("ref, message", [
    ("7", "manset-category has no version 7"),
    ("0123456789abcdef", "no version of manset-category comes from run 0123456789abcdef"),
    ("1", "v1 is already the champion"),
])
def test_promote_of_what_cannot_be_promoted_is_one_line(trained: Path, capsys, ref: str,
                                                        message: str) -> None:
    assert main(["promote", ref, "--reason", "x", "--root", str(trained)]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert str(_store(trained).get_model_version_by_alias(MODEL, "champion").version) == "1"


def test_promote_of_a_model_tested_on_another_dataset_is_refused(trained: Path, capsys) -> None:
    assert main(["build", "--root", str(trained), "--seed", "7"]) == 0  # other test rows
    assert main(["train", "tfidf", "--root", str(trained)]) == 0
    client = _store(trained)
    champion = str(client.get_model_version_by_alias(MODEL, "champion").version)
    other = "1" if champion == "2" else "2"
    capsys.readouterr()
    assert main(["promote", other, "--reason", "x", "--root", str(trained)]) == 1
    err = capsys.readouterr().err
    assert "tested on dataset" in err and "do not compare" in err
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == champion


# --- manset runs -------------------------------------------------------------------------------


def test_runs_lists_names_scores_and_the_champion(trained: Path, capsys) -> None:
    assert main(["train", "tfidf", "--root", str(trained), "--C", "0.01"]) == 0
    capsys.readouterr()
    assert main(["runs", "--json", "--root", str(trained)]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and [r["champion"] for r in rows].count(True) == 1
    assert rows[0]["macro_f1"] >= rows[1]["macro_f1"]  # sorted by macro-F1
    assert all(r["ci"][0] <= r["macro_f1"] <= r["ci"][1] and r["family"] == "tfidf"
               and r["dataset"] and r["throughput"] > 0 and r["train_s"] > 0 for r in rows)
    assert main(["runs", "--json", "--sort", "started", "--limit", "1", "--root",
                 str(trained)]) == 0
    (newest,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert newest["name"].startswith("tfidf-C=0.01-")
    assert main(["runs", "--root", str(trained)]) == 0
    table = capsys.readouterr().out
    assert newest["name"] in table and "★" in table and "95% CI" in table
    assert "cross-source F1" in table and all(r["cross_source_f1"] is not None for r in rows)


@pytest.mark.parametrize("argv, message", [
    (["--sort", "colour"], "--sort 'colour'"),
    (["--task", "topic"], "no runs of task 'topic' yet"),
])
def test_runs_bad_input_is_one_line(trained: Path, capsys, argv: list[str],
                                    message: str) -> None:
    assert main(["runs", "--root", str(trained), *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


# --- a portable store --------------------------------------------------------------------------


def test_a_moved_project_keeps_every_run_artifact(trained: Path, tmp_path: Path,
                                                  capsys) -> None:
    moved = tmp_path / "elsewhere" / "projé"  # a new path, not ASCII
    shutil.move(trained, moved)
    champion = moved / "models" / "category" / "champion"
    shutil.rmtree(champion)
    assert main(["pull", "--task", "category", "--root", str(moved)]) == 0  # reads artifacts
    verify(champion)
    client = _store(moved)
    for run in _runs(client):
        assert unquote(run.info.artifact_uri).startswith(f"file://{moved}/mlruns/")
        predictions = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/"
                                                 "evaluation/test_predictions.json")
        assert len(predictions["predicted"]) == len(predictions["true"]) > 0
    assert main(["train", "tfidf", "--root", str(moved)]) == 0  # and it trains on
    assert "error" not in capsys.readouterr().err


def test_config_dataclasses_have_help_for_every_field() -> None:
    for cls in (TfidfConfig, BertTrainConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help") or dataclasses.is_dataclass(f.type), f.name


# --- splits that stay put ------------------------------------------------------------------------


def _splits(root: Path) -> dict[str, str]:
    from training import dataset

    dd, _ = dataset.load(root / "data" / "build" / "category")
    return {i: s for s in dataset.SPLITS for i in dd[s]["id"]}


def test_a_new_page_keeps_every_old_row_in_its_split_and_an_equal_run_is_not_worse(
        trained: Path) -> None:
    before = _splits(trained)
    page = shutil.copy(Path(__file__).parent.parent / "data" / "pages" /
                       "eshaber_lavrov_2025-11-09.txt", trained / "data" / "page.txt")
    assert main(["ingest", str(page), "--root", str(trained)]) == 0
    assert main(["run", "--root", str(trained)]) == 0
    after = _splits(trained)
    assert len(after) > len(before)
    assert all(after[i] == s for i, s in before.items())  # no old row moved
    client = _store(trained)
    _first, second = _runs(client)
    reason = second.data.tags["manset.promotion_reason"]
    # another dataset: the champion is re-scored only on test rows it never trained on, and
    # since no row moved, that is every test row; the same settings are not judged worse
    tested = sum(1 for s in after.values() if s == "test")
    assert f"re-scored on the {tested} of {tested} test rows it never trained on" in reason
    assert second.data.tags["manset.promotion"] == "kept the champion"
    m = second.data.metrics  # neither better nor worse beyond chance
    assert m["promotion_delta_ci_low"] < 0 < m["promotion_delta_ci_high"]


def test_a_new_label_set_is_judged_on_the_rows_the_champion_never_trained_on(
        project: Path) -> None:
    sources = project / "data" / "labelled" / "sources.csv"
    full = sources.read_text()
    sources.write_text("".join(x for x in full.splitlines(keepends=True) if "42bin" not in x))
    assert main(["run", "--root", str(project)]) == 0  # six classes: no Dünya, no Gündem
    sources.write_text(full)
    assert main(["run", "--root", str(project)]) == 0
    client = _store(project)
    _old, new = _runs(client)
    reason = new.data.tags["manset.promotion_reason"]
    assert "test rows it never trained on" in reason
    # the old champion cannot say Dünya or Gündem: those rows count against it
    assert new.data.tags["manset.promotion"] == "champion" and "beats champion v1" in reason
    assert json.loads((project / "models" / "category" / "champion" / "labels.json")
                      .read_text())[:3] == ["Dünya", "Ekonomi", "Gündem"]


def test_the_champion_shares_no_file_with_the_folder_a_user_rewrites(trained: Path) -> None:
    from training import export

    models = trained / "models" / "category"
    champion = export.install_champion(trained / "models", "category", models / "tfidf", "1",
                                       "run")
    before = verify(champion)
    labels = models / "tfidf" / "labels.json"
    with labels.open("r+", encoding="utf-8") as f:  # an editor that writes in place
        text = f.read()
        f.seek(0)
        f.write(text.replace('"', "'", 2))
    for name in before["files"]:
        assert (champion / name).stat().st_ino != (models / "tfidf" / name).stat().st_ino
    assert verify(champion) == before
    assert main(["predict", "Fenerbahçe derbiyi kazandı", "--root", str(trained)]) == 0


def test_gc_keeps_the_champion_and_the_newest_runs_and_frees_their_artifacts(
        trained: Path, capsys) -> None:
    root = ["--root", str(trained)]
    for c in ("0.01", "0.02", "0.03"):  # three runs that lose to v1
        assert main(["train", "tfidf", "--C", c, *root]) == 0
    client = _store(trained)
    runs = _runs(client)  # oldest first: the champion (v1), then the three
    champion, newest = runs[0].info.run_id, runs[-1].info.run_id
    assert client.get_model_version_by_alias(MODEL, "champion").run_id == champion
    artifacts = trained / "mlruns" / "artifacts"
    doomed = [r.info.run_id for r in runs[1:-1]]
    assert all((artifacts / r).is_dir() for r in doomed)

    capsys.readouterr()
    assert main(["gc", "--task", "category", "--keep", "1", "--dry-run", *root]) == 0
    assert "would prune 2 runs and versions v2, v3" in capsys.readouterr().err
    assert len(_runs(client)) == 4
    assert main(["gc", "--task", "category", "--keep", "1", *root]) == 0
    assert "pruned 2 runs and versions v2, v3" in capsys.readouterr().err
    assert [r.info.run_id for r in _runs(client)] == [champion, newest]
    assert not [f for r in doomed for f in (artifacts / r).rglob("*") if f.is_file()]
    assert {str(v.version) for v in client.search_model_versions(f"name='{MODEL}'")} == \
        {"1", "4"}
    models = client.search_logged_models(experiment_ids=[runs[0].info.experiment_id])
    assert {m.source_run_id for m in models} == {champion, newest}
    stored = {p.parent.parent.name for p in artifacts.rglob("MLmodel")}  # the logged models
    assert stored == {m.model_id for m in models}, stored
    # what is left still works: the champion pulls and predicts, the newest can be promoted
    shutil.rmtree(trained / "models" / "category" / "champion")
    assert main(["pull", "--task", "category", *root]) == 0
    assert main(["predict", "Galatasaray derbiyi kazandı", *root]) == 0
    assert main(["promote", "4", "--force", "--reason", "after gc", *root]) == 0
