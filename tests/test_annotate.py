"""`manset annotate`: the sampling rule, the terminal tool in a real pty, Label Studio exchange."""

import json
import os
import shutil
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pexpect
import pytest
from conftest import DATA

from training import tasks
from training.annotation.gold import read_gold
from training.annotation.sampling import CATCH_ALL_WEIGHT, Item, Sampler
from training.cli import main
from training.tasks import TOPIC_CANDIDATE_WORDS, read_taxonomy

QCODES = {t.code for t in read_taxonomy(DATA / "topics.csv")}


@pytest.fixture()
def annotating(project: Path) -> Path:
    shutil.copy(DATA / "topics.csv", project / "data" / "topics.csv")
    assert main(["import", "--root", str(project)]) == 0
    return project


def _items(n: int, source: str, category: str, page: bool = False) -> list[Item]:
    return [Item(f"{source}-{category}-{i}", f"{category} haberi {i}", source, category, page)
            for i in range(n)]


def test_sampling_rule_pages_first_then_catch_all_weighted_strata_and_candidates():
    items = [*_items(50, "trt", "Spor"), *_items(50, "trt", "Ekonomi"),
             *_items(50, "th", "Yaşam"), *_items(2, "site", "Gündem", page=True),
             Item("rel", "Diyanet bayram namazı saatlerini açıkladı", "trt", "Kültür-Sanat", False)]
    def sampler() -> Sampler:
        return Sampler(items, seed=1, candidate_words=TOPIC_CANDIDATE_WORDS)

    order = list(sampler().take(42))
    assert [it.id for it in order[:2]] == ["site-Gündem-0", "site-Gündem-1"]
    assert order[3].id == "rel"  # every 4th pick is a keyword candidate
    counts = Counter(it.category for it in order[2:])
    assert counts["Yaşam"] >= CATCH_ALL_WEIGHT * counts["Spor"] - 3
    assert [it.id for it in sampler().take(42)] == [it.id for it in order]
    assert len({it.id for it in sampler().take(500)}) == len(items)


def _spawn(project: Path) -> pexpect.spawn:
    env = {**os.environ, "COLUMNS": "120", "LINES": "60"}
    return pexpect.spawn(sys.executable, ["-c", "import sys; from training.cli import main; "
                                          "sys.exit(main(sys.argv[1:]))", "annotate", "--task",
                                          "topic", "--annotator", "tester", "--root",
                                          str(project)], env=env, encoding="utf-8", timeout=60)


def _headline(child: pexpect.spawn) -> str:
    child.expect(r"answers this session[^\n]*\n\s*\n\s+([^\n]+)\r?\n")
    return child.match.group(1).strip()


def test_terminal_tool_keys_save_undo_skip_scope_and_resume(annotating):
    gold = annotating / "data" / "annotations" / "topics_gold.csv"
    child = _spawn(annotating)
    first = _headline(child)
    child.expect(r"\[q\] quit")
    child.send("e")  # the 15th topic: sport
    second = _headline(child)
    assert second != first
    assert [(r.text, r.label, r.annotator) for r in read_gold(gold, QCODES)] == \
        [(first, "medtop:15000000", "tester")]  # saved at once, before quitting
    child.send("?")
    child.expect("Competitive physical or mental activity")  # the scopes
    child.send("s")  # skip the second headline
    third = _headline(child)
    child.send("u")  # undo the skip: the second headline again
    assert _headline(child) == second
    child.send("x")
    child.expect("'x' is not an answer")
    assert _headline(child) == second  # shown again, nothing saved
    child.send("2")
    assert _headline(child) == third
    child.send("q")
    child.expect(pexpect.EOF)
    assert [r.text for r in read_gold(gold, QCODES)] == [first, second]

    child = _spawn(annotating)  # resumes: neither labelled headline is shown again
    assert _headline(child) == third
    child.send("u")  # nothing to undo in a new session: still the same headline
    assert _headline(child) == third
    child.send("q")
    child.expect(pexpect.EOF)
    assert len(read_gold(gold, QCODES)) == 2


def test_label_studio_round_trip(annotating, tmp_path, capsys):
    root = ["--root", str(annotating)]
    out = tmp_path / "ls"
    assert main(["annotate", *root, "--export-label-studio", str(out), "--limit", "5"]) == 0
    config = ET.fromstring((out / "config.xml").read_text())
    assert {c.get("alias") for c in config.iter("Choice")} == QCODES
    tasks = json.loads((out / "tasks.json").read_text())
    assert len(tasks) == 5 and all("annotations" not in t for t in tasks)
    # what Label Studio's JSON export gives back after two answers and one cancelled one
    tasks[0]["annotations"] = [{"result": [{"from_name": "label", "to_name": "text",
                                            "type": "choices",
                                            "value": {"choices": ["medtop:07000000"]}}],
                                "completed_by": 3, "created_at": "2026-11-28T10:00:00Z"}]
    tasks[1]["annotations"] = [{"result": [{"from_name": "label", "to_name": "text",
                                            "type": "choices",
                                            "value": {"choices": ["medtop:04000000"]}}],
                                "completed_by": {"id": 4, "email": "ayse@example.org"},
                                "created_at": "2026-11-28T10:01:00Z"}]
    tasks[2]["annotations"] = [{"was_cancelled": True, "result": []}]
    exported = tmp_path / "export.json"
    exported.write_text(json.dumps(tasks))
    assert main(["annotate", *root, "--import-label-studio", str(exported)]) == 0
    gold = read_gold(annotating / "data" / "annotations" / "topics_gold.csv", QCODES)
    assert [(r.text, r.label, r.annotator) for r in gold] == [
        (tasks[0]["data"]["text"], "medtop:07000000", "label-studio-user-3"),
        (tasks[1]["data"]["text"], "medtop:04000000", "ayse@example.org")]
    # importing again adds nothing; a re-export carries the gold rows as annotations
    assert main(["annotate", *root, "--import-label-studio", str(exported)]) == 0
    assert "0 labels added" in capsys.readouterr().err
    assert main(["annotate", *root, "--export-label-studio", str(out), "--limit", "0"]) == 0
    again = json.loads((out / "tasks.json").read_text())
    assert [t["annotations"][0]["result"][0]["value"]["choices"] for t in again] == \
        [["medtop:07000000"], ["medtop:04000000"]]


@pytest.mark.parametrize(("content", "message"), [
    ('{"tasks": []}', "expected a JSON list of tasks"),
    ('[{"data": {"text": "x"}, "annotations": []}]', r"task 1 has no data.headline_id"),
    ('not json', "not a Label Studio JSON export"),
])
def test_label_studio_files_from_elsewhere_are_refused(annotating, tmp_path, capsys, content,
                                                       message):
    bad = tmp_path / "other.json"
    bad.write_text(content)
    assert main(["annotate", "--root", str(annotating), "--import-label-studio", str(bad)]) == 1
    assert message in capsys.readouterr().err.replace("\n", " ")


def test_label_studio_unknown_choice_names_the_task(annotating, tmp_path, capsys):
    out = tmp_path / "ls"
    assert main(["annotate", "--root", str(annotating), "--export-label-studio", str(out),
                 "--limit", "2"]) == 0
    tasks = json.loads((out / "tasks.json").read_text())
    tasks[1]["annotations"] = [{"result": [{"from_name": "sentiment", "to_name": "text",
                                            "type": "choices", "value": {"choices": ["POS"]}}]}]
    (out / "tasks.json").write_text(json.dumps(tasks))
    assert main(["annotate", "--root", str(annotating), "--import-label-studio",
                 str(out / "tasks.json")]) == 1
    assert "task 2: expected one 'label' choice" in capsys.readouterr().err
    assert not (annotating / "data" / "annotations" / "topics_gold.csv").exists()


def test_category_has_nothing_to_annotate(annotating, capsys):
    assert main(["annotate", "--task", "category", "--root", str(annotating)]) == 1
    assert "nothing to annotate" in capsys.readouterr().err



def _answer(topic: object, **extra) -> list[dict]:
    return [{"result": [{"from_name": "label", "to_name": "text", "type": "choices",
                         "value": {"choices": [topic]}}], **extra}]


def _import(project: Path, tmp_path: Path, tasks: list) -> int:
    exported = tmp_path / "export.json"
    exported.write_text(json.dumps(tasks))
    return main(["annotate", "--root", str(project), "--import-label-studio", str(exported)])


def _exported(project: Path, tmp_path: Path, n: int) -> list[dict]:
    out = tmp_path / "ls"
    assert main(["annotate", "--root", str(project), "--export-label-studio", str(out),
                 "--limit", str(n)]) == 0
    return json.loads((out / "tasks.json").read_text())


def test_label_studio_headline_twice_is_one_label_or_refused(annotating, tmp_path, capsys):
    gold = annotating / "data" / "annotations" / "topics_gold.csv"
    task = _exported(annotating, tmp_path, 1)[0]
    # the same headline imported twice into Label Studio, labelled differently
    twice = [{**task, "annotations": _answer("medtop:07000000")},
             {**task, "annotations": _answer("medtop:04000000")}]
    assert _import(annotating, tmp_path, twice) == 1
    err = capsys.readouterr().err
    assert "task 2: headline" in err and "also task 1" in err
    assert not gold.exists()  # nothing applied
    # labelled the same way twice: one label, and every command still works afterwards
    twice[1]["annotations"] = _answer("medtop:07000000")
    assert _import(annotating, tmp_path, twice) == 0
    assert "1 labels added" in capsys.readouterr().err
    assert len(read_gold(gold, QCODES)) == 1
    assert main(["import", "--root", str(annotating)]) == 0
    assert _import(annotating, tmp_path, twice) == 0


def test_label_studio_edited_text_is_refused(annotating, tmp_path, capsys):
    task = _exported(annotating, tmp_path, 1)[0]
    task["data"]["text"] += " (düzeltildi)"
    task["annotations"] = _answer("medtop:07000000")
    assert _import(annotating, tmp_path, [task]) == 1
    assert "task 1: the text of headline" in capsys.readouterr().err
    assert not (annotating / "data" / "annotations" / "topics_gold.csv").exists()
    assert main(["import", "--root", str(annotating)]) == 0


@pytest.mark.parametrize(("annotations", "message"), [
    ("oops", "annotations is str, not a list"),
    ([5], "an annotation is int, not an object"),
    ([{"result": ["abc"]}], "a result is str, not an object"),
    ([{"result": "abc"}], "result is str, not a list"),
    ([{"result": [{"from_name": "label", "value": ["medtop:07000000"]}]}],
     "value is list, not an object"),
    ([{"result": [{"from_name": "label", "value": {"choices": "medtop:07000000"}}]}],
     "value.choices is str, not a list"),
    (_answer(["medtop:07000000"]), "is not one known label of the task"),
    (_answer({"a": 1}), "is not one known label of the task"),
    ([{**_answer("medtop:07000000")[0], "meta": [1]}], "meta is list, not an object"),
])
def test_label_studio_malformed_shapes_get_one_line(annotating, tmp_path, capsys, annotations,
                                                    message):
    task = _exported(annotating, tmp_path, 1)[0]
    capsys.readouterr()
    assert _import(annotating, tmp_path, [{**task, "annotations": annotations}]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "task 1" in err and message in err, err
    assert "Traceback" not in err


def test_gold_csv_neutralises_formulas_and_keeps_the_text(annotating, tmp_path, capsys):
    task = _exported(annotating, tmp_path, 1)[0]
    task["annotations"] = _answer("medtop:07000000", completed_by="=HYPERLINK(\"http://x\")",
                                  meta={"note": "+cmd|' /C calc'!A0"})
    assert _import(annotating, tmp_path, [task]) == 0
    gold = annotating / "data" / "annotations" / "topics_gold.csv"
    cells = [c for line in gold.read_text().splitlines()[1:] for c in line.split(",")]
    assert not [c for c in cells if c.lstrip('"').startswith(("=", "+", "-", "@"))], cells
    [row] = read_gold(gold, QCODES)
    assert (row.annotator, row.note) == ('=HYPERLINK("http://x")', "+cmd|' /C calc'!A0")
    # every text survives the round trip, a leading quote and a formula-looking headline too
    from dataclasses import replace

    from training.annotation.gold import write_gold
    texts = ["=1+1", "-5 derece", "@trt", "'Bayram' geldi", "'=1", "\tsekme", "Normal"]
    write_gold(gold, [replace(row, id=str(i), text=t) for i, t in enumerate(texts)])
    assert [r.text for r in read_gold(gold, QCODES)] == texts


SENTIMENT = "code,name_en,name_tr,scope\n" + "".join(
    f"{c},{en},{tr},{scope}\n" for c, en, tr, scope in (
        ("olumlu", "positive", "olumlu", "good news for someone"),
        ("olumsuz", "negative", "olumsuz", "bad news: loss, harm, conflict"),
        ("notr", "neutral", "nötr", "neither")))


def test_a_third_hand_labelled_task_is_a_tasks_entry_plus_data(
        annotating: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A sentiment task: an entry in TASKS, a taxonomy and a gold file, and nothing else. Its
    labels go through Label Studio into its gold file (the generic label column), then import,
    build, training and predict take it as they take topics."""
    (annotating / "data" / "sentiment.csv").write_text(SENTIMENT, encoding="utf-8")
    monkeypatch.setitem(tasks.TASKS, "sentiment", tasks.Task(
        "sentiment", "the tone of the headline", 0.2, 0.2, 2, taxonomy="sentiment.csv",
        gold="annotations/sentiment_gold.csv", question="The tone of the headline", keys="123"))
    root = ["--root", str(annotating)]
    out = tmp_path / "ls"
    assert main(["annotate", "--task", "sentiment", *root, "--export-label-studio", str(out),
                 "--limit", "45"]) == 0
    config = ET.fromstring((out / "config.xml").read_text())
    assert [(c.get("alias"), c.get("hotkey")) for c in config.iter("Choice")] == \
        [("olumlu", "1"), ("olumsuz", "2"), ("notr", "3")]
    assert config.find("Header").get("value") == "The tone of the headline"
    exported = json.loads((out / "tasks.json").read_text())
    codes = ["olumlu", "olumsuz", "notr"]
    for i, task in enumerate(exported):  # the answers a Label Studio project gives back
        task["annotations"] = [{"result": [{"from_name": "label", "to_name": "text",
                                            "type": "choices",
                                            "value": {"choices": [codes[i % 3]]}}],
                                "completed_by": "tester", "created_at": "2026-12-05T10:00:00Z"}]
    (tmp_path / "export.json").write_text(json.dumps(exported))
    assert main(["annotate", "--task", "sentiment", *root, "--import-label-studio",
                 str(tmp_path / "export.json")]) == 0
    gold = annotating / "data" / "annotations" / "sentiment_gold.csv"
    assert gold.read_text(encoding="utf-8").splitlines()[0] == \
        "id,text,source,category,label,annotator,annotated_at,note"
    assert Counter(r.label for r in read_gold(gold, set(codes))) == {c: 15 for c in codes}
    assert not (annotating / "data" / "annotations" / "topics_gold.csv").exists()

    assert main(["import", *root]) == 0
    assert "sentiment: 45 gold labels" in capsys.readouterr().err
    assert main(["build", "--task", "sentiment", *root]) == 0
    assert main(["train", "tfidf", "--task", "sentiment", *root]) == 0
    capsys.readouterr()
    assert main(["predict", "--task", "sentiment", "Borsa rekor kırdı", *root]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert set(answer["probabilities"]) == set(codes)
    assert answer["name"] == {"olumlu": {"en": "positive", "tr": "olumlu"},
                              "olumsuz": {"en": "negative", "tr": "olumsuz"},
                              "notr": {"en": "neutral", "tr": "nötr"}}[answer["label"]]
