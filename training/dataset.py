"""Build the training set of a task from the headline table: dedupe, group near-duplicates
(training.near_dup), split by group, and describe it (training.datacard)."""

import hashlib
import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, load_from_disk

from training import datacard, near_dup, tasks
from training.configs import BuildConfig
from training.datacard import SPLITS, DataCard
from training.files import staged_dir
from training.headlines import Aliases
from training.text import dedup_key


class _Labelled(NamedTuple):
    kept: list[dict]
    unlabelled: Counter  # raw sections with no canonical category
    not_classes: Counter  # raw sections known not to be a class
    conflicts: list[str]
    duplicates: int  # exact duplicates dropped
    seen: int  # rows read from the table


def _labelled_rows(rows: Iterable[sqlite3.Row], gold: dict[str, str],
                   mapping: dict[str, str] | None, aliases: Aliases | None) -> _Labelled:
    """Rows with a known label, one per normalised text; conflicting texts are left out.
    A gold label wins; else the section (mapping None) or the label its section maps to.
    The section's category comes from `aliases` as they are now (else the one stored at import),
    so an edited alias table needs no re-import. `rows` are read once, as they come."""
    unlabelled: Counter = Counter()
    not_classes: Counter = Counter()
    by_key: dict[str, list[dict]] = {}
    seen = 0
    for r in rows:
        seen += 1
        raw, source = r["category_raw"], r["source"]
        category = r["category"] if aliases is None else aliases.canonical(raw, source)
        if category is None:
            known = aliases is not None and aliases.not_a_class(raw, source)
            (not_classes if known else unlabelled)[raw] += 1
        label: str | None
        if r["id"] in gold:
            label, how = gold[r["id"]], "gold"
        elif mapping is None:
            label, how = category, "section"
        else:
            label, how = mapping.get(category or ""), "category"
        if label is None:
            continue
        by_key.setdefault(dedup_key(r["text"]), []).append(
            {"id": r["id"], "text": r["text"], "label": label, "source": source,
             "category": category or raw, "label_source": how})
    kept, conflicts, duplicates = [], [], 0
    for group in by_key.values():
        best = [g for g in group if g["label_source"] == "gold"] or group
        if len({g["label"] for g in best}) > 1:
            conflicts.append(f"{best[0]['text']} | " + ", ".join(sorted(
                {f"{g['label']} ({g['source']})" for g in best})))
        else:
            kept.append(best[0])
            duplicates += len(group) - 1
    return _Labelled(kept, unlabelled, not_classes, sorted(conflicts), duplicates, seen)


def key_hashes(keys: list[str]) -> np.ndarray:
    """A 64-bit hash of each normalised text (dedup_key), the same in every process."""
    return np.array([int.from_bytes(hashlib.sha1(k.encode()).digest()[:8], "big") for k in keys],
                    dtype=np.uint64)


def group_keys(hashes: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """A key of each row's near-duplicate group that does not depend on the rest of the data:
    the smallest hash of its members' normalised texts (key_hashes). A new headline changes a
    group's key only when it joins that group and hashes lower than every member (1 in n+1 for a
    group of n)."""
    smallest = np.full(groups.max(initial=-1) + 1, np.iinfo(np.uint64).max, dtype=np.uint64)
    np.minimum.at(smallest, groups, hashes)
    return smallest[groups]


def split_of(keys: np.ndarray, cfg: BuildConfig) -> np.ndarray:
    """train/validation/test of each row, from its group key and the seed alone: adding rows
    deals only the new groups, so old rows keep their split and a champion is never scored on
    rows it trained on. Each label's shares are binomial around the fractions (a 1,000-row
    label: test 100 ± 10), not exact; the data card shows them.
    (The earlier rule shuffled each label's groups: one new page reshuffled every row.)"""
    test, validation = cfg.test_fraction, cfg.validation_fraction
    assert test is not None and validation is not None  # BuildConfig fills in the task's
    u = _uniform(keys, cfg.seed)
    split = np.full(len(keys), "train", dtype=object)
    split[u < test + validation] = "validation"
    split[u < test] = "test"
    return split


def _uniform(keys: np.ndarray, seed: int) -> np.ndarray:
    """A number in [0, 1) for each key, from a hash of the key and the seed."""
    salt = seed.to_bytes(8, "big", signed=True)
    return np.array([int.from_bytes(hashlib.sha256(salt + int(k).to_bytes(8, "big")).digest()[:8],
                                    "big") / 2.0 ** 64 for k in keys.tolist()])


def build(rows: Iterable[sqlite3.Row], cfg: BuildConfig, gold: dict[str, str] | None = None,
          mapping: dict[str, str] | None = None, aliases: Aliases | None = None
          ) -> tuple[DatasetDict, DataCard]:
    """The task's dataset. `gold`: headline id → gold label (annotated by reading). `mapping`:
    section → label for the rest (None: the section is the label). `aliases`: the alias table to map
    sections with (None: the categories stored at import). When there are gold labels, only gold
    rows are split and scored; the others train only, and those in the near-duplicate group of a
    gold validation or test row are left out. The Spark engine follows the same rules
    (training.spark_build)."""
    gold = gold or {}
    if tasks.get(cfg.task).needs_gold and not gold:
        raise ValueError(f"task {cfg.task!r} has no gold labels")
    kept, unlabelled, not_classes, conflicts, exact_dups, seen = _labelled_rows(
        rows, gold, mapping, aliases)
    scored = "gold" if gold else None
    counts = Counter(r["label"] for r in kept if scored in (None, r["label_source"]))
    names, dropped = classes(counts, cfg)
    keep = set(names)
    kept = [r for r in kept if r["label"] in keep]
    kept.sort(key=lambda r: (r["source"], r["id"]))
    groups = near_dup.near_duplicate_groups([r["text"] for r in kept], cfg.near_duplicate_threshold)
    labels = np.searchsorted(names, [r["label"] for r in kept])
    mask = np.array([scored in (None, r["label_source"]) for r in kept], dtype=bool)
    hashes = key_hashes([dedup_key(r["text"]) for r in kept])
    split, near_test, not_drawn = assign(labels, mask, hashes, groups, cfg)
    columns = ("id", "text", "source", "category", "label_source")
    dd = DatasetDict({
        s: Dataset.from_dict({
            **{c: [r[c] for r, sp in zip(kept, split, strict=True) if sp == s] for c in columns},
            "label": labels[split == s].tolist(), "group": groups[split == s].tolist(),
        }, features=features(names)) for s in SPLITS})
    return dd, datacard.make(dd, cfg.task, names, seen=seen, unlabelled=unlabelled,
                             not_classes=not_classes, conflicts=conflicts,
                             exact_duplicates=exact_dups, groups=groups, near_test=near_test,
                             not_drawn=not_drawn, dropped=dropped)


def classes(counts: Mapping[str, int], cfg: BuildConfig) -> tuple[list[str], dict[str, int]]:
    """The classes a build keeps (sorted) and those it drops, under the minimum count of scored
    rows (gold rows where the task has them); both engines decide by it. ValueError when fewer
    than two are left."""
    minimum = cfg.min_count
    assert minimum is not None  # BuildConfig fills in the task's
    dropped = {k: v for k, v in counts.items() if v < minimum}
    names = sorted(k for k in counts if k not in dropped)
    if len(names) < 2:
        raise ValueError(
            f"task {cfg.task!r} has {len(names)} class(es) with at least {cfg.min_count} "
            f"headlines ({', '.join(names) or 'none'}); a classifier needs two or more")
    return names, dropped


def assign(labels: np.ndarray, scored: np.ndarray, hashes: np.ndarray, groups: np.ndarray,
           cfg: BuildConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's split ("train", "validation", "test" or "left out"), from its label index,
    whether it is scored (a gold row, or every row of a task without gold), its text hash
    (key_hashes) and its near-duplicate group; and the masks of the rows left out as
    near-duplicates of a scored held-out row, and over the distant cap."""
    split = np.full(len(labels), "train", dtype=object)
    keys = group_keys(hashes, groups)
    split[scored] = split_of(keys[scored], cfg)
    held_out = np.zeros(groups.max(initial=-1) + 1, dtype=bool)
    held_out[groups[scored & (split != "train")]] = True
    near_test = ~scored & held_out[groups]
    split[near_test] = "left out"
    not_drawn = _over_cap(labels, split, ~scored, keys, cfg)
    split[not_drawn] = "left out"
    return split, near_test, not_drawn


def features(names: list[str]) -> Features:
    return Features({"id": Value("string"), "text": Value("string"),
                     "label": ClassLabel(names=names), "source": Value("string"),
                     "category": Value("string"), "label_source": Value("string"),
                     "group": Value("int64")})


def _over_cap(labels: np.ndarray, split: np.ndarray, distant: np.ndarray, keys: np.ndarray,
              cfg: BuildConfig) -> np.ndarray:
    """Distant training rows beyond cfg.distant_per_label of their label: those whose group
    key hashes highest, so that new rows do not redraw the old ones."""
    out = np.zeros(len(labels), dtype=bool)
    if cfg.distant_per_label is None:
        return out
    rank = _uniform(keys, cfg.seed + 1)
    for label in np.unique(labels):
        rows = np.flatnonzero(distant & (split == "train") & (labels == label))
        out[rows[np.argsort(rank[rows], kind="stable")][cfg.distant_per_label:]] = True
    return out


def save(dd: DatasetDict, card: DataCard, out: Path) -> None:
    """Write dataset + card to a temporary folder beside `out`, then swap it in."""
    with staged_dir(out) as tmp:
        dd.save_to_disk(str(tmp / "dataset"))
        (tmp / "card.json").write_text(json.dumps(asdict(card), ensure_ascii=False, indent=1))
        (tmp / "CARD.md").write_text(card.markdown())


def load(folder: Path) -> tuple[DatasetDict, DataCard]:
    if not (folder / "card.json").is_file():
        raise FileNotFoundError(f"{folder}: no built dataset here; run `manset build` first")
    card = DataCard(**json.loads((folder / "card.json").read_text()))
    dd = load_from_disk(str(folder / "dataset"))
    if "label_source" not in dd["train"].column_names:
        raise ValueError(f"{folder}: built by an older manset; run `manset build` again")
    return dd, card
