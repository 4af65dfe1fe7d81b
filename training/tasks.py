"""The tasks: what a label is and where it comes from. Adding a task touches this file only.

- category: the site section, from the section name through the alias tables.
- topic: an IPTC Media Topic (data/topics.csv). Gold labels are annotated by reading
  (data/annotations/topics_gold.csv); distant labels come from a category where the mapping is
  unambiguous (data/category_topics.csv). Gold always wins.
"""

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from training.headlines import read_csv
from training.text import label_key

# Sections that say little about the subject: topic metrics are also reported on them alone,
# and the annotation sample over-samples them.
# 42bin_haber's `genel` and `planet` are catch-all folders too (not classes of the category task).
CATCH_ALL = ("Gündem", "Dünya", "Son Dakika", "Yaşam", "Magazin", "Genel", "Planet")
_CATCH_ALL_KEYS = {label_key(c) for c in CATCH_ALL}


def is_catch_all(category: str | None) -> bool:
    return category is not None and label_key(category) in _CATCH_ALL_KEYS


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    # Defaults of the split: the topic task splits its gold rows only, and needs a larger share
    # of them in test to score 17 topics (distant rows train only).
    test_fraction: float
    validation_fraction: float
    min_count: int  # rows a class needs (gold rows for topic) to be kept
    # Distant rows kept per label (seeded draw), None for all. Topic: 100, chosen on validation
    # macro-F1 (all 25k: 0.520, 1,000 a label: 0.548, 100: 0.609, none: 0.608); more distant
    # rows drown the topics only gold rows teach (benchmarks/README.md).
    distant_per_label: int | None = None
    # Files under data/, None where the task has none:
    taxonomy: str | None = None  # the label set with names (a CSV read by read_topics)
    gold: str | None = None  # gold labels, annotated by reading (training.gold); required when set
    mapping: str | None = None  # section → label, for distant labels (training rows only)
    # test metrics again on the catch-all sections alone (test_catchall_*): a topic question
    # (what is a Gündem headline about?); the category task has them as classes
    catch_all_metrics: bool = False

    @property
    def needs_gold(self) -> bool:
        return self.gold is not None


TASKS = {
    "category": Task("category", "the site section (Spor, Ekonomi, Dünya, ...)", 0.1, 0.1, 30),
    "topic": Task("topic", "an IPTC Media Topic (medtop:01000000 ... medtop:17000000)",
                  0.4, 0.2, 20, distant_per_label=100, taxonomy="topics.csv",
                  gold="annotations/topics_gold.csv", mapping="category_topics.csv",
                  catch_all_metrics=True),
}


def get(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


@dataclass(frozen=True)
class Topic:
    qcode: str
    name_en: str
    name_tr: str
    scope: str


def read_topics(path: Path) -> list[Topic]:
    """data/topics.csv: lines starting with '#' are provenance notes, then a CSV table."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (the IPTC topic table)")
    lines = path.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    body = "".join(line for line in lines if not line.startswith("#"))
    topics = []
    for n, row in enumerate(csv.DictReader(io.StringIO(body)), 2):
        missing = [c for c in ("qcode", "name_en", "name_tr", "scope") if not row.get(c)]
        if missing:
            raise ValueError(f"{path}: row {n} lacks {', '.join(missing)}")
        topics.append(Topic(row["qcode"], row["name_en"], row["name_tr"], row["scope"]))
    if len({t.qcode for t in topics}) != len(topics):
        raise ValueError(f"{path}: a qcode appears twice")
    return topics


def topic_names(path: Path) -> dict[str, dict[str, str]]:
    """qcode → {"en": ..., "tr": ...}, as shipped in topic bundles."""
    return {t.qcode: {"en": t.name_en, "tr": t.name_tr} for t in read_topics(path)}


def read_mapping(path: Path, categories: list[str], labels: set[str]) -> dict[str, str]:
    """data/category_topics.csv: canonical category → label, for the categories that map
    unambiguously (the others are simply absent)."""
    out: dict[str, str] = {}
    for row in read_csv(path, ["category", "topic"]):
        where = f"{path}:{row['_line']}"
        if row["category"] not in categories:
            raise ValueError(f"{where}: {row['category']!r} is not a category in "
                             "data/categories.csv")
        if row["topic"] not in labels:
            raise ValueError(f"{where}: unknown topic {row['topic']!r}")
        if row["category"] in out:
            raise ValueError(f"{where}: {row['category']!r} is mapped twice")
        out[row["category"]] = row["topic"]
    return out
