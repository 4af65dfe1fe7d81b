"""What a built dataset says about itself: its data card (counts per split, source and label
source, what was left out and why) and its fingerprint (a hash of its rows, splits and labels,
logged with every run)."""

import hashlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from datasets import DatasetDict

from training import near_dup

SPLITS = ("train", "validation", "test")


@dataclass
class DataCard:
    task: str
    fingerprint: str
    rows_in_table: int
    unlabelled: dict[str, int]  # raw labels with no canonical category, with their counts
    conflicts: int  # headlines seen with two different labels: left out until resolved
    exact_duplicates: int
    near_duplicate_groups: int  # groups of more than one headline
    dropped_classes: dict[str, int]
    counts: dict[str, dict[str, int]]  # split -> label -> rows
    sources: dict[str, dict[str, int]]  # source -> label -> rows
    # how each label is known -> label -> rows: 'section' (the site's), 'gold' (annotated by
    # reading), 'category' (distant: mapped from the section)
    label_sources: dict[str, dict[str, int]] = field(default_factory=dict)
    near_test_left_out: int = 0  # distant rows in a gold validation/test row's group
    distant_not_drawn: int = 0  # distant rows beyond distant_per_label
    # sections the alias table says are not a class (catch-all folders), with their counts
    not_classes: dict[str, int] = field(default_factory=dict)
    # the first conflicting headlines (by text): "text | label (source), label (source)"
    conflict_examples: list[str] = field(default_factory=list)

    def warnings(self) -> list[str]:
        out = []
        if self.dropped_classes:
            names = ", ".join(f"{k} ({v})" for k, v in sorted(self.dropped_classes.items()))
            out.append(f"dropped classes below the minimum count: {names}")
        if self.unlabelled:
            names = ", ".join(f"{k!r} ({v})" for k, v in sorted(self.unlabelled.items()))
            out.append(f"labels not in the alias table, left out: {names}")
        if self.conflicts:
            out.append(f"{self.conflicts} headlines carry two different labels, left out (the "
                       f"data card, data/build/{self.task}/CARD.md, lists "
                       f"{len(self.conflict_examples)}: fix their sections or aliases)")
        return out

    def markdown(self) -> str:
        labels = sorted(self.counts["train"])
        lines = [f"# Data card: {self.task}", "", f"Fingerprint `{self.fingerprint}`", "",
                 "| label | " + " | ".join(SPLITS) + " |", "|---|" + "---:|" * len(SPLITS)]
        lines += [f"| {lb} | " + " | ".join(str(self.counts[s].get(lb, 0)) for s in SPLITS) + " |"
                  for lb in labels]
        lines += ["", *_label_table(labels, self.sources)]
        if len(self.label_sources) > 1:  # gold and distant rows: say which label came how
            lines += ["", *_label_table(labels, self.label_sources)]
        if "gold" in self.label_sources:
            lines += ["", "`gold` labels were given by annotators who read each headline against "
                          "the guidelines: AI annotators, not people (who labelled what, and "
                          "when: data/annotations/AGREEMENT.md)."]
        lines += ["", f"- rows in the headline table: {self.rows_in_table}",
                  f"- exact duplicates removed: {self.exact_duplicates}",
                  f"- near-duplicate groups (kept on one side of the split): "
                  f"{self.near_duplicate_groups}",
                  f"- conflicting labels left out: {self.conflicts}"]
        if self.near_test_left_out:
            lines.append(f"- distant rows left out as near-duplicates of gold validation/test "
                         f"rows: {self.near_test_left_out}")
        if self.not_classes:
            names = ", ".join(f"{k} ({v})" for k, v in sorted(self.not_classes.items()))
            lines.append(f"- sections that are not a class (data/category_aliases.csv): {names}")
        if self.distant_not_drawn:
            lines.append(f"- distant rows not drawn (over the per-label cap): "
                         f"{self.distant_not_drawn}")
        lines += [f"- warning: {w}" for w in self.warnings()]
        if self.conflict_examples:
            lines += ["", f"Conflicting labels, the first {len(self.conflict_examples)} of "
                          f"{self.conflicts} by text:", "",
                      *(f"- {x}" for x in self.conflict_examples)]
        return "\n".join(lines) + "\n"


def _label_table(labels: list[str], by: dict[str, dict[str, int]]) -> list[str]:
    """Rows per label (lines) and per source or label source (columns), with totals."""
    keys = sorted(by)
    return ["| label | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys),
            *(f"| {lb} | " + " | ".join(str(by[k].get(lb, 0)) for k in keys) + " |"
              for lb in labels),
            "| all | " + " | ".join(str(sum(by[k].values())) for k in keys) + " |"]

CONFLICT_EXAMPLES = 20  # conflicting headlines the data card lists


def fingerprint(dd: DatasetDict) -> str:
    h = hashlib.sha256()
    for name in SPLITS:
        names = dd[name].features["label"].names
        for batch in dd[name].with_format("arrow").iter(batch_size=near_dup.CHUNK):  # not row dicts
            ids, texts, labels = (batch.column(c).to_pylist() for c in ("id", "text", "label"))
            h.update("".join(f"{name}\t{i}\t{t}\t{names[lb]}\n"
                             for i, t, lb in zip(ids, texts, labels, strict=True)).encode())
    return h.hexdigest()[:16]


def make(dd: DatasetDict, task: str, names: list[str], *, seen: int, unlabelled: Counter,
         not_classes: Counter, conflicts: list[str], exact_duplicates: int, groups: np.ndarray,
         near_test: np.ndarray, not_drawn: np.ndarray, dropped: dict[str, int]) -> DataCard:
    """The data card of a built dataset: counts per split, source and label source are read
    from its rows (Arrow batches, not row dicts)."""
    counts: dict[str, Counter] = {}
    by: dict[str, dict[str, Counter]] = {"source": {}, "label_source": {}}
    for s in SPLITS:
        counts[s] = Counter()
        for batch in dd[s].with_format("arrow").iter(batch_size=near_dup.CHUNK):
            label = [names[i] for i in batch.column("label").to_pylist()]
            counts[s].update(label)
            for key, table in by.items():
                for v, lb in zip(batch.column(key).to_pylist(), label, strict=True):
                    table.setdefault(v, Counter())[lb] += 1
    sizes = np.bincount(groups) if len(groups) else np.zeros(0, dtype=np.int64)
    return DataCard(
        task=task, fingerprint=fingerprint(dd), rows_in_table=seen,
        unlabelled=dict(unlabelled), conflicts=len(conflicts),
        conflict_examples=conflicts[:CONFLICT_EXAMPLES], exact_duplicates=exact_duplicates,
        near_duplicate_groups=int((sizes > 1).sum()), dropped_classes=dropped,
        counts={s: {lb: counts[s][lb] for lb in names if counts[s][lb]} for s in SPLITS},
        sources={v: dict(c) for v, c in sorted(by["source"].items())},
        label_sources={v: dict(c) for v, c in sorted(by["label_source"].items())},
        near_test_left_out=int(near_test.sum()), distant_not_drawn=int(not_drawn.sum()),
        not_classes=dict(not_classes),
    )
