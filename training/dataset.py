"""Build the training set of a task from the headline table: dedupe, group, split, fingerprint."""

import hashlib
import json
import sqlite3
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, load_from_disk
from scipy.sparse import coo_matrix, csgraph, csr_matrix
from sklearn.feature_extraction.text import CountVectorizer

from training import tasks
from training.files import staged_dir
from training.headlines import Aliases
from training.text import dedup_key

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class BuildConfig:
    task: str = "category"
    seed: int = 13  # any fixed value: the split must not change between runs on the same data
    # Category: 0.1 of all rows (~3k test headlines on the bundled data: ±0.5 point macro-F1
    # noise). A task with gold labels splits those alone (for_task gives its own defaults).
    test_fraction: float = 0.1
    validation_fraction: float = 0.1  # for early stopping and calibration checks
    min_count: int = 30  # rows a class needs (gold rows when the task has gold labels)
    distant_per_label: int | None = None  # distant rows kept per label (seeded), None: all
    # Cosine of character 5-gram sets above which two headlines are one story reworded
    # ("Borsa güne yükselişle başladı" / "Borsa güne yükselişle başladı (10 Mart)").
    near_duplicate_threshold: float = 0.8

    def __post_init__(self) -> None:
        tasks.get(self.task)
        if not 0 < self.test_fraction < 0.5 or not 0 < self.validation_fraction < 0.5:
            raise ValueError("test_fraction and validation_fraction must lie between 0 and 0.5")

    @classmethod
    def for_task(cls, name: str, **given: object) -> "BuildConfig":
        """The task's defaults (training.tasks), overridden by the options given."""
        task = tasks.get(name)
        defaults = {"test_fraction": task.test_fraction, "min_count": task.min_count,
                    "validation_fraction": task.validation_fraction,
                    "distant_per_label": task.distant_per_label}
        return cls(task=name, **{**defaults, **given})  # type: ignore[arg-type]


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


def _labelled_rows(rows: list[sqlite3.Row], gold: dict[str, str],
                   mapping: dict[str, str] | None, aliases: Aliases | None
                   ) -> tuple[list[dict], Counter, Counter, list[str], int]:
    """Rows with a known label, one per normalised text; conflicting texts are left out.
    A gold label wins; else the section (mapping None) or the label its section maps to.
    The section's category comes from `aliases` as they are now (else the one stored at import),
    so an edited alias table needs no re-import.
    Also: raw sections with no canonical category (unknown, and known not to be a class),
    the conflicting texts (sorted, each with its labels and sources), exact duplicates dropped."""
    unlabelled: Counter = Counter()
    not_classes: Counter = Counter()
    by_key: dict[str, list[dict]] = {}
    for r in rows:
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
    return kept, unlabelled, not_classes, sorted(conflicts), duplicates


def near_duplicate_groups(texts: list[str], threshold: float) -> np.ndarray:
    """Group ids: headlines whose character 5-gram sets have cosine ≥ threshold share one.

    Linear in the rows: candidate pairs come from MinHash LSH (datasketch; 128 permutations,
    banded for Jaccard LSH_JACCARD, below the 0.64 that a cosine of 0.8 implies at worst), and
    each candidate is checked with the exact cosine, so no pair under the threshold joins a
    group. Comparing every pair instead grows with the square of the rows (3 hours at 1M).
    Against that exact grouping on the bundled data: benchmarks/near_dup_bench.py."""
    vec = CountVectorizer(analyzer="char_wb", ngram_range=(5, 5), binary=True, dtype=np.float32)
    x = vec.fit_transform([dedup_key(t) for t in texts]).tocsr()
    norms = np.sqrt(np.asarray(x.sum(axis=1)).ravel()).clip(min=1)
    x = x.multiply(1 / norms[:, None]).tocsr()
    pairs = _candidates(x)
    if len(pairs):
        cos = np.concatenate([np.asarray(x[pairs[lo:lo + 65536, 0]].multiply(
            x[pairs[lo:lo + 65536, 1]]).sum(axis=1)).ravel()
            for lo in range(0, len(pairs), 65536)])
        pairs = pairs[cos >= threshold]
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                       shape=(len(texts), len(texts)))
    return csgraph.connected_components(graph, directed=False)[1]


LSH_JACCARD = 0.4  # the LSH threshold; a pair at cosine 0.8 has a Jaccard of 0.64 or more
LSH_PERMUTATIONS = 128


def _candidates(x: csr_matrix) -> np.ndarray:
    """Pairs (i < j) of rows that share a MinHash LSH band: the rows' 5-grams (column ids of x)
    hashed with datasketch's seeded permutations, so the pairs are the same on every run."""
    from datasketch import MinHash, MinHashLSH

    shingles = [[str(c).encode() for c in x.indices[x.indptr[i]:x.indptr[i + 1]]] or [b""]
                for i in range(x.shape[0])]
    hashes = MinHash.bulk(shingles, num_perm=LSH_PERMUTATIONS, seed=1)
    lsh = MinHashLSH(threshold=LSH_JACCARD, num_perm=LSH_PERMUTATIONS)
    with lsh.insertion_session() as session:
        for i, h in enumerate(hashes):
            session.insert(i, h, check_duplication=False)
    found = {(i, j) for i, h in enumerate(hashes) for j in lsh.query(h) if j > i}
    return np.array(sorted(found), dtype=np.int64).reshape(-1, 2)


def group_keys(texts: list[str], groups: np.ndarray) -> np.ndarray:
    """A key of each row's near-duplicate group that does not depend on the rest of the data:
    the smallest hash of its members' normalised texts. A new headline changes a group's key only
    when it joins that group and hashes lower than every member (1 in n+1 for a group of n)."""
    hashes = np.array([int.from_bytes(hashlib.sha1(dedup_key(t).encode()).digest()[:8], "big")
                       for t in texts], dtype=np.uint64)
    smallest: dict[int, int] = {}
    for g, h in zip(groups.tolist(), hashes.tolist(), strict=True):
        smallest[g] = min(h, smallest.get(g, h))
    return np.array([smallest[g] for g in groups.tolist()], dtype=np.uint64)


def split_of(keys: np.ndarray, cfg: BuildConfig) -> np.ndarray:
    """train/validation/test of each row, from its group key and the seed alone: adding rows
    deals only the new groups, so old rows keep their split and a champion is never scored on
    rows it trained on. Each label's shares are binomial around the fractions (a 1,000-row
    label: test 100 ± 10), not exact; the data card shows them.
    (The earlier rule shuffled each label's groups: one new page reshuffled every row.)"""
    u = _uniform(keys, cfg.seed)
    split = np.full(len(keys), "train", dtype=object)
    split[u < cfg.test_fraction + cfg.validation_fraction] = "validation"
    split[u < cfg.test_fraction] = "test"
    return split


def _uniform(keys: np.ndarray, seed: int) -> np.ndarray:
    """A number in [0, 1) for each key, from a hash of the key and the seed."""
    salt = seed.to_bytes(8, "big", signed=True)
    return np.array([int.from_bytes(hashlib.sha256(salt + int(k).to_bytes(8, "big")).digest()[:8],
                                    "big") / 2.0 ** 64 for k in keys.tolist()])


def fingerprint(dd: DatasetDict) -> str:
    h = hashlib.sha256()
    for name in SPLITS:
        names = dd[name].features["label"].names
        for row in dd[name]:
            h.update(f"{name}\t{row['id']}\t{row['text']}\t{names[row['label']]}\n".encode())
    return h.hexdigest()[:16]


def build(rows: list[sqlite3.Row], cfg: BuildConfig, gold: dict[str, str] | None = None,
          mapping: dict[str, str] | None = None, aliases: Aliases | None = None
          ) -> tuple[DatasetDict, DataCard]:
    """The task's dataset. `gold`: headline id → gold label (annotated by reading). `mapping`:
    section → label for the rest (None: the section is the label). `aliases`: the alias table to map
    sections with (None: the categories stored at import). When there are gold labels, only gold
    rows are split and scored; the others train only, and those in the near-duplicate group of a
    gold validation or test row are left out."""
    gold = gold or {}
    if tasks.get(cfg.task).needs_gold and not gold:
        raise ValueError(f"task {cfg.task!r} has no gold labels")
    kept, unlabelled, not_classes, conflicts, exact_dups = _labelled_rows(
        rows, gold, mapping, aliases)
    scored = "gold" if gold else None
    counts = Counter(r["label"] for r in kept if scored in (None, r["label_source"]))
    dropped = {k: v for k, v in counts.items() if v < cfg.min_count}
    kept = [r for r in kept if r["label"] not in dropped and r["label"] in counts]
    names = sorted({r["label"] for r in kept})
    if len(names) < 2:
        raise ValueError(
            f"task {cfg.task!r} has {len(names)} class(es) with at least {cfg.min_count} "
            f"headlines ({', '.join(names) or 'none'}); a classifier needs two or more")
    kept.sort(key=lambda r: (r["source"], r["id"]))
    groups = near_duplicate_groups([r["text"] for r in kept], cfg.near_duplicate_threshold)
    labels = np.array([names.index(r["label"]) for r in kept])
    split = np.full(len(kept), "train", dtype=object)
    mask = np.array([scored in (None, r["label_source"]) for r in kept])
    keys = group_keys([r["text"] for r in kept], groups)
    split[mask] = split_of(keys[mask], cfg)
    held_out = set(groups[mask & (split != "train")].tolist())
    near_test = ~mask & np.isin(groups, list(held_out))
    split[near_test] = "left out"
    not_drawn = _over_cap(labels, split, ~mask, keys, cfg)
    split[not_drawn] = "left out"
    features = Features({"id": Value("string"), "text": Value("string"),
                         "label": ClassLabel(names=names), "source": Value("string"),
                         "category": Value("string"), "label_source": Value("string"),
                         "group": Value("int64")})
    columns = ("id", "text", "source", "category", "label_source")
    dd = DatasetDict({
        s: Dataset.from_dict({
            **{c: [r[c] for r, sp in zip(kept, split, strict=True) if sp == s] for c in columns},
            "label": labels[split == s].tolist(), "group": groups[split == s].tolist(),
        }, features=features) for s in SPLITS})
    used = [r for r, sp in zip(kept, split, strict=True) if sp != "left out"]
    sizes = Counter(groups.tolist())
    card = DataCard(
        task=cfg.task, fingerprint=fingerprint(dd), rows_in_table=len(rows),
        unlabelled=dict(unlabelled), conflicts=len(conflicts),
        conflict_examples=conflicts[:CONFLICT_EXAMPLES], exact_duplicates=exact_dups,
        near_duplicate_groups=sum(1 for n in sizes.values() if n > 1), dropped_classes=dropped,
        counts={s: dict(Counter(names[i] for i in dd[s]["label"])) for s in SPLITS},
        sources=_by(used, "source"), label_sources=_by(used, "label_source"),
        near_test_left_out=int(near_test.sum()), distant_not_drawn=int(not_drawn.sum()),
        not_classes=dict(not_classes),
    )
    return dd, card


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


def _by(rows: list[dict], key: str) -> dict[str, dict[str, int]]:
    """key value → label → rows."""
    return {v: dict(Counter(r["label"] for r in rows if r[key] == v))
            for v in sorted({r[key] for r in rows})}


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
