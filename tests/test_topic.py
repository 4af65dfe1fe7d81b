"""The topic task end to end on the real gold set: gold + distant dataset, training, tracking,
the bundle's names, predict --task topic|all; bad gold files; the table migration."""

import csv
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import DATA, make_project
from mlflow import MlflowClient

from training import dataset, headlines
from training.annotation import gold
from training.cli import main
from training.tasks import read_taxonomy

GOLD = DATA / "annotations" / "topics_gold.csv"


def topic_project(root: Path, mlflow_template: Path) -> Path:
    """The test project plus every gold headline (under its own section) and the topic files."""
    make_project(root, mlflow_template)
    for name in ("topics.csv", "category_topics.csv"):
        shutil.copy(DATA / name, root / "data" / name)
    rows = [r for r in csv.DictReader(GOLD.open(encoding="utf-8"))
            if r["source"] in ("trthaber.com", "turkish-headlines")]
    (root / "data" / "annotations").mkdir()
    with (root / "data" / "annotations" / "topics_gold.csv").open("w", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    labelled = root / "data" / "labelled"
    with (labelled / "gold_headlines.csv").open("w", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["title", "section"])
        w.writerows((r["text"], r["category"]) for r in rows if r["source"] == "trthaber.com")
    with (labelled / "gold_turkish.csv").open("w", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["title", "label"])
        w.writerows((r["text"], r["category"]) for r in rows if r["source"] != "trthaber.com")
    with (labelled / "sources.csv").open("a", encoding="utf-8") as f:
        f.write("gold_headlines.csv,trthaber.com,title,section\n"
                "gold_turkish.csv,turkish-headlines,title,label\n")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Path:
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = topic_project(tmp_path_factory.mktemp("topic") / "project", mlflow_template)
    assert main(["run", "--root", str(root)]) == 0
    yield root
    mp.undo()


def test_topic_dataset_scores_gold_rows_only_and_keeps_test_groups_out_of_training(trained):
    dd, card = dataset.load(trained / "data" / "build" / "topic")
    for split in ("validation", "test"):
        assert set(dd[split]["label_source"]) == {"gold"}
    assert set(dd["train"]["label_source"]) == {"gold", "category"}
    held_out = set(dd["test"]["group"]) | set(dd["validation"]["group"])
    assert not held_out & set(dd["train"]["group"])
    names = dd["train"].features["label"].names
    assert len(names) == 17 and all(n.startswith("medtop:") for n in names)
    # gold wins: a Spor headline annotated as crime is crime, not the section's sport
    golds = {r["id"]: r["label"] for r in csv.DictReader(GOLD.open(encoding="utf-8"))}
    for split in dataset.SPLITS:
        for hid, label, how in zip(dd[split]["id"], dd[split]["label"],
                                   dd[split]["label_source"], strict=True):
            if how == "gold":
                assert names[label] == golds[hid]
    assert card.label_sources["gold"]["medtop:02000000"] >= 25
    # distant rows: at most the task's cap per label, the rest counted as not drawn
    assert max(card.label_sources["category"].values()) <= 100
    assert card.distant_not_drawn > 0
    assert "| label | category | gold |" in card.markdown()


def test_topic_run_is_tracked_registered_and_exported_with_names(trained):
    uri = f"sqlite:///{trained / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("manset-topic").experiment_id])
    m = run.data.metrics
    assert {"test_macro_f1", "test_f1_medtop_02000000", "test_catchall_macro_f1",
            "test_catchall_f1_medtop_08000000"} <= set(m)
    assert m["test_catchall_rows"] > 50
    assert client.get_model_version_by_alias("manset-topic", "champion").run_id == \
        run.info.run_id
    bundle = trained / "models" / "topic" / "tfidf"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert "label_names.json" in manifest["files"]
    assert "human interest" in (bundle / "MODEL_CARD.md").read_text()


def test_predict_topic_and_all(trained, capsys):
    root = ["--root", str(trained)]
    assert main(["predict", "--task", "topic", *root, "Galatasaray derbide rakibini 3-1 yendi"]
                ) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["label"] == "medtop:15000000"
    assert out["name"] == {"en": "sport", "tr": "spor"}
    assert len(out["probabilities"]) == 17
    assert main(["predict", "--task", "all", *root, "Merkez Bankası faizi sabit tuttu",
                 "Borsa güne yükselişle başladı"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [set(x) for x in lines] == [{"text", "category", "topic"}] * 2
    assert lines[0]["category"]["label"] == "Ekonomi"
    assert lines[0]["topic"]["label"] == "medtop:04000000"


def test_unknown_task_is_a_usage_error(trained, capsys):
    assert main(["build", "--task", "sentiment", "--root", str(trained)]) == 2
    assert "unknown task 'sentiment'" in capsys.readouterr().err


def _gold_file(tmp_path: Path, rows: list[list[str]]) -> Path:
    path = tmp_path / "gold.csv"
    with path.open("w", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(gold.COLUMNS)
        w.writerows(rows)
    return path


@pytest.mark.parametrize(("rows", "message"), [
    ([["a1", "Metin", "s", "Spor", "medtop:99000000", "ann", "2026-01-01", ""]],
     r"gold.csv:2: unknown label 'medtop:99000000'"),
    ([["a1", "Metin", "s", "Spor", "medtop:15000000", "ann", "2026-01-01", ""],
      ["a1", "Metin", "s", "Spor", "medtop:02000000", "ann", "2026-01-01", ""]],
     r"gold.csv:3: headline a1 is already labelled on line 2"),
    ([["a1", "Metin", "s", "Spor", "", "ann", "2026-01-01", ""]], r"gold.csv:2: empty 'label'"),
])
def test_bad_gold_rows_name_file_and_line(tmp_path, rows, message):
    qcodes = {t.code for t in read_taxonomy(DATA / "topics.csv")}
    with pytest.raises(ValueError, match=message):
        gold.read_gold(_gold_file(tmp_path, rows), qcodes)


def test_gold_import_is_all_or_nothing(tmp_path):
    qcodes = {t.code for t in read_taxonomy(DATA / "topics.csv")}
    aliases = headlines.Aliases(DATA / "categories.csv", DATA / "category_aliases.csv")
    con = headlines.connect(tmp_path / "h.sqlite")
    headlines.add(con, [headlines.Headline("Galatasaray kazandı", "spor", "s")], aliases)
    hid = headlines.all_rows(con)[0]["id"]
    good = _gold_file(tmp_path, [[hid, "Galatasaray kazandı", "s", "Spor", "medtop:15000000",
                                  "ann", "2026-01-01", ""]])
    assert gold.load_into_table(con, "topic", good, qcodes) == 1
    missing = _gold_file(tmp_path, [[hid, "Galatasaray kazandı", "s", "Spor", "medtop:02000000",
                                     "ann", "2026-01-01", ""],
                                    ["ffff", "Başka", "s", "Spor", "medtop:15000000", "ann",
                                     "2026-01-01", ""]])
    with pytest.raises(ValueError, match=r"gold.csv:3: headline ffff .* not in the headline table"):
        gold.load_into_table(con, "topic", missing, qcodes)
    half = tmp_path / "gold.csv"
    half.write_text(",".join(gold.COLUMNS) + f'\n{hid},"Galatasaray kaz')  # cut mid-write
    with pytest.raises(ValueError, match=r"gold.csv:\d+: malformed CSV"):
        gold.load_into_table(con, "topic", half, qcodes)
    assert gold.gold_labels(con, "topic") == {hid: "medtop:15000000"}  # nothing lost


def test_a_table_from_the_first_release_is_migrated_in_place(tmp_path):
    db = tmp_path / "h.sqlite"
    old = sqlite3.connect(db)
    old.executescript("""
        CREATE TABLE headlines (id TEXT NOT NULL, text TEXT NOT NULL, category_raw TEXT NOT NULL,
            category_key TEXT NOT NULL, category TEXT, topic TEXT, topic_source TEXT,
            source TEXT NOT NULL, block TEXT, published_at TEXT, time_basis TEXT,
            truncated INTEGER NOT NULL DEFAULT 0, page TEXT, ingested_at TEXT NOT NULL,
            PRIMARY KEY (id, category_key));
        INSERT INTO headlines VALUES ('h1', 'Deprem', 'gundem', 'gundem', 'Gündem',
            'medtop:03000000', 'annotation', 's', NULL, NULL, NULL, 0, NULL, '2025-01-01');
        INSERT INTO headlines VALUES ('h2', 'Maç', 'spor', 'Spor', 'Spor', NULL, NULL, 's',
            NULL, NULL, NULL, 0, NULL, '2025-01-01');""")
    old.commit()
    old.close()
    con = headlines.connect(db)
    assert [r["text"] for r in headlines.all_rows(con)] == ["Deprem", "Maç"]
    assert "topic" not in {r["name"] for r in con.execute("PRAGMA table_info(headlines)")}
    (label,) = con.execute("SELECT * FROM labels").fetchall()
    assert (label["headline_id"], label["label"], label["label_source"]) == \
        ("h1", "medtop:03000000", "annotation")
    aliases = headlines.Aliases(DATA / "categories.csv", DATA / "category_aliases.csv")
    assert headlines.add(con, [headlines.Headline("Yeni", "spor", "s")], aliases).new == 1
    con.close()
    assert len(headlines.all_rows(headlines.connect(db))) == 3  # reopening migrates nothing
