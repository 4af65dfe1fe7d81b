"""The tasks: what a label is and where it comes from. Adding a task is an entry in TASKS plus its
data files: a taxonomy, a gold file its annotators fill (`manset annotate --task <name>`), and
optionally a mapping of sections to labels.

- category: the site section, from the section name through the alias tables.
- topic: an IPTC Media Topic (data/topics.csv). Gold labels are annotated by reading
  (data/annotations/topics_gold.csv); distant labels come from a category where the mapping is
  unambiguous (data/category_topics.csv). Gold always wins.
"""

import csv
import io
from dataclasses import dataclass, field
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


# Word starts (Turkish lower case) that find annotation candidates for topics the section labels
# rarely cover (training/annotation/sampling.py). Candidate finding only: they never label
# anything.
TOPIC_CANDIDATE_WORDS: dict[str, tuple[str, ...]] = {
    "medtop:02000000": ("tutukla", "gözaltı", "mahkeme", "dava", "cinayet", "hapis", "dolandır",
                        "kaçakçı", "hırsız", "savcı"),
    "medtop:03000000": ("deprem", "sel ", "yangın", "kaza", "patlama", "enkaz", "afad",
                        "boğul", "çöktü"),
    "medtop:08000000": ("rekor", "yaşındaki", "köpek", "kedi", "aşk", "evlen", "boşan",
                        "sevgili", "ilginç"),
    "medtop:09000000": ("grev", "sendika", "asgari ücret", "işçi", "istihdam", "işsiz",
                        "emekli", "maaş", "çalışan", "memur", "toplu sözleşme", "kıdem",
                        "işten çıkar", "eyt", "ikramiye"),
    "medtop:10000000": ("tatil", "moda", "tarif", "yemek", "turist", "gezi", "otomobil",
                        "lezzet", "dekorasyon"),
    "medtop:11000000": ("seçim", "meclis", "tbmm", "parti", "milletvekili", "cumhurbaşkanı",
                        "başbakan", "büyükelçi", "dışişleri"),
    "medtop:12000000": ("diyanet", "cami", "ramazan", "kurban", "hac ", "hacı", "papa",
                        "kilise", "dini", "din ", "namaz", "oruç", "imam", "müftü", "kandil",
                        "kuran", "kur an", "peygamber", "ibadet", "hristiyan", "yahudi",
                        "müslüman", "islam", "umre", "zekat", "fitre", "iftar", "teravih",
                        "patrik", "ezan"),
    "medtop:14000000": ("göçmen", "mülteci", "sığınmacı", "engelli", "kadına", "kadın",
                        "çocuk", "yaşlı", "huzurevi", "yoksul", "evsiz", "aile", "gönüllü",
                        "bağış", "nüfus", "doğum oranı", "sosyal yardım", "insan hakları",
                        "ayrımcılık", "ırkçılık"),
    "medtop:16000000": ("saldırı", "terör", "asker", "savaş", "ateşkes", "füze", "pkk",
                        "deaş", "işgal", "ordu"),
    "medtop:17000000": ("hava durumu", "hava sıcaklı", "meteoroloji", "sağanak", "kar ",
                        "karla", "kar yağış", "fırtına", "sıcaklık", "dolu ", "soğuk hava",
                        "yağmur", "yağış", "rüzgar", "lodos", "poyraz", "sıcak hava",
                        "kavurucu", "ayaz", "sis ", "don olay"),
}


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
    taxonomy: str | None = None  # the label set with names and scopes (read_taxonomy)
    gold: str | None = None  # gold labels, annotated by reading (training.annotation.gold);
    #                          required when set
    mapping: str | None = None  # section → label, for distant labels (training rows only)
    # test metrics again on the catch-all sections alone (test_catchall_*): a topic question
    # (what is a Gündem headline about?); the category task has them as classes
    catch_all_metrics: bool = False
    # Annotation (training/annotation): the question the annotator answers, one key per label
    # in the taxonomy's order, and words that find candidates for rare labels (label → word
    # starts, Turkish lower case; they choose what is shown, never a label).
    question: str = ""
    keys: str = "1234567890abcdefghijklmnoprtvwxyz"
    candidate_words: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def needs_gold(self) -> bool:
        return self.gold is not None


TASKS = {
    "category": Task("category", "the site section (Spor, Ekonomi, Dünya, ...)", 0.1, 0.1, 30),
    "topic": Task("topic", "an IPTC Media Topic (medtop:01000000 ... medtop:17000000)",
                  0.4, 0.2, 20, distant_per_label=100, taxonomy="topics.csv",
                  gold="annotations/topics_gold.csv", mapping="category_topics.csv",
                  catch_all_metrics=True,
                  question="Main subject of the headline (data/annotations/GUIDELINES.md)",
                  candidate_words=TOPIC_CANDIDATE_WORDS),
}


def get(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


@dataclass(frozen=True)
class Label:
    """A label of a task's taxonomy: its code (an IPTC qcode for topics), names and scope."""

    code: str
    name_en: str
    name_tr: str
    scope: str


def read_taxonomy(path: Path) -> list[Label]:
    """A taxonomy CSV (data/topics.csv): lines starting with '#' are provenance notes, then a
    table whose first column is the label's code (`qcode` for IPTC topics) with name_en, name_tr
    and scope."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (a task's taxonomy)")
    lines = path.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    reader = csv.DictReader(io.StringIO("".join(ln for ln in lines if not ln.startswith("#"))))
    code = (reader.fieldnames or ["code"])[0]
    labels = []
    for n, row in enumerate(reader, 2):
        missing = [c for c in (code, "name_en", "name_tr", "scope") if not row.get(c)]
        if missing:
            raise ValueError(f"{path}: row {n} lacks {', '.join(missing)}")
        labels.append(Label(row[code], row["name_en"], row["name_tr"], row["scope"]))
    if len({lb.code for lb in labels}) != len(labels):
        raise ValueError(f"{path}: a {code} appears twice")
    return labels


def taxonomy_names(path: Path) -> dict[str, dict[str, str]]:
    """code → {"en": ..., "tr": ...}, as shipped in the bundles of a task with a taxonomy."""
    return {lb.code: {"en": lb.name_en, "tr": lb.name_tr} for lb in read_taxonomy(path)}


def read_mapping(path: Path, categories: list[str], labels: set[str]) -> dict[str, str]:
    """A section mapping (data/category_topics.csv): canonical category → label, for the
    categories that map unambiguously (the others are simply absent)."""
    out: dict[str, str] = {}
    for row in read_csv(path, ["category", "label"]):
        where = f"{path}:{row['_line']}"
        if row["category"] not in categories:
            raise ValueError(f"{where}: {row['category']!r} is not a category in "
                             "data/categories.csv")
        if row["label"] not in labels:
            raise ValueError(f"{where}: unknown label {row['label']!r}")
        if row["category"] in out:
            raise ValueError(f"{where}: {row['category']!r} is mapped twice")
        out[row["category"]] = row["label"]
    return out


def label_names(data: Path, task: str) -> dict[str, dict[str, str]]:
    """A task's labels with their names (en, tr), from its taxonomy under `data`; {} when it
    has none."""
    taxonomy = get(task).taxonomy
    return taxonomy_names(data / taxonomy) if taxonomy else {}
