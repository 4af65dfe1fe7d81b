"""Build the training set of a task from the headline table: dedupe, group, split, fingerprint."""

import hashlib
import json
import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, load_from_disk
from scipy import sparse
from scipy.sparse import coo_matrix, csgraph, csr_matrix
from sklearn.feature_extraction.text import HashingVectorizer

from training import tasks
from training.configs import DEFAULT_SEED
from training.files import staged_dir
from training.headlines import Aliases
from training.text import dedup_key

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class BuildConfig:
    task: str = "category"
    seed: int = DEFAULT_SEED  # the split must not change between runs on the same data
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


def near_duplicate_groups(texts: list[str], threshold: float) -> np.ndarray:
    """Group ids: headlines whose character 5-gram sets have cosine ≥ threshold share one.

    Linear in the rows: candidate pairs come from MinHash LSH (_band_keys), and each candidate
    is checked with the exact cosine, so no pair under the threshold joins a group. Comparing
    every pair instead grows with the square of the rows (3 hours at 1M). The 5-grams are hashed
    into 2^24 columns, so no vocabulary is held (two 5-grams share a column about once in 16M).
    Against the exact grouping on the bundled data: benchmarks/near_dup_bench.py."""
    x = ngram_matrix([dedup_key(t) for t in texts])
    keys = _band_keys(x)
    groups = np.arange(len(texts))
    edges = [np.empty((0, 2), dtype=np.int64)]
    for band in range(LSH_BANDS):  # band by band, so that only one band's pairs are held
        pairs = _same_key_pairs(keys[:, band])
        pairs = pairs[groups[pairs[:, 0]] != groups[pairs[:, 1]]]  # joined by earlier bands
        edges.append(pairs[_cosine(x, pairs) >= threshold])
        if len(edges[-1]):
            groups = components(np.concatenate(edges), len(texts))
    return groups


def ngram_matrix(keys: list[str]) -> csr_matrix:
    """Rows of 1s at the hashed columns of each normalised text's character 5-grams."""
    vec = HashingVectorizer(analyzer="char_wb", ngram_range=(5, 5), binary=True, norm=None,
                            alternate_sign=False, n_features=NGRAM_COLUMNS, dtype=np.float32)
    return sparse.vstack([vec.transform(keys[lo:lo + CHUNK]) for lo in range(0, len(keys), CHUNK)]
                         or [csr_matrix((0, NGRAM_COLUMNS), dtype=np.float32)]).tocsr()


def _cosine(x: csr_matrix, pairs: np.ndarray) -> np.ndarray:
    """Cosine of each pair's 5-gram sets: shared / sqrt(size * size), in float64 and in this
    order, as the Spark engine computes it (spark_build._edges), so both draw the same line."""
    size = np.diff(x.indptr).astype(np.float64)
    shared = [np.asarray(x[pairs[lo:lo + CHUNK, 0]].multiply(x[pairs[lo:lo + CHUNK, 1]])
                         .sum(axis=1), dtype=np.float64).ravel()
              for lo in range(0, len(pairs), CHUNK)]
    return np.concatenate(shared or [np.empty(0)]) / np.sqrt(
        size[pairs[:, 0]] * size[pairs[:, 1]]).clip(min=1)


def components(edges: np.ndarray, n: int) -> np.ndarray:
    """Connected components: a group id per row, numbered in the order of each group's first row."""
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return csgraph.connected_components(graph, directed=False)[1]


NGRAM_COLUMNS = 2**24
CHUNK = 65536  # rows (or pairs) handled at once, which bounds the memory of each step
SIGNATURE_CHUNK = 2048  # rows hashed at once: ~60 5-grams × 128 hashes × 8 bytes each
# MinHash: 128 hash functions in 32 bands of 4, the banding that datasketch finds optimal for
# Jaccard 0.4, below the 0.64 that a cosine of 0.8 implies at worst: two rows at Jaccard 0.64
# share a band with probability 1 - (1 - 0.64^4)^32 > 0.9999.
LSH_BANDS, LSH_ROWS = 32, 4
_HASH = np.random.default_rng(20251108)
_MULTIPLY = _HASH.integers(1, 2**63, LSH_BANDS * LSH_ROWS, dtype=np.uint64) | np.uint64(1)
_ADD = _HASH.integers(0, 2**63, LSH_BANDS * LSH_ROWS, dtype=np.uint64)
_BAND = _HASH.integers(1, 2**63, LSH_ROWS, dtype=np.uint64) | np.uint64(1)


def _band_keys(x: csr_matrix) -> np.ndarray:
    """Each row's LSH_BANDS band keys: rows whose keys agree in a band are candidate pairs. A
    row's MinHash signature is the minimum over its 5-gram columns of each of 128 multiply-shift
    hashes (fixed seeds, so the pairs are the same on every run); a band's 4 minima fold into
    one 64-bit key. Numpy throughout, SIGNATURE_CHUNK rows at a time."""
    keys = np.empty((x.shape[0], LSH_BANDS), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for lo in range(0, x.shape[0], SIGNATURE_CHUNK):
            part = x[lo:lo + SIGNATURE_CHUNK]
            hashed = (part.indices.astype(np.uint64)[:, None] * _MULTIPLY + _ADD) >> np.uint64(32)
            starts = part.indptr[:-1]
            filled = np.diff(part.indptr) > 0  # a row without 5-grams matches nothing
            sig = np.empty((part.shape[0], len(_MULTIPLY)), dtype=np.uint64)
            sig[filled] = np.minimum.reduceat(hashed, starts[filled], axis=0)
            sig[~filled] = np.arange(
                lo, lo + part.shape[0], dtype=np.uint64)[~filled, None] << np.uint64(32)
            bands = sig.reshape(len(sig), LSH_BANDS, LSH_ROWS) * _BAND
            keys[lo:lo + SIGNATURE_CHUNK] = np.bitwise_xor.reduce(bands, axis=2) ^ np.arange(
                LSH_BANDS, dtype=np.uint64)
    return keys


def band_keys_of(grams: list[np.ndarray]) -> np.ndarray:
    """_band_keys of rows given as arrays of 5-gram columns (a Spark batch)."""
    indptr = np.concatenate([[0], np.cumsum([len(g) for g in grams])])
    x = csr_matrix((np.ones(indptr[-1], dtype=np.float32),
                    np.concatenate(grams or [np.empty(0, dtype=np.int32)]), indptr),
                   shape=(len(grams), NGRAM_COLUMNS))
    return _band_keys(x)


def _same_key_pairs(key: np.ndarray) -> np.ndarray:
    """Every pair (i < j) of rows with the same key."""
    order = np.argsort(key, kind="stable")
    k = key[order]
    edge = np.flatnonzero(np.r_[True, k[1:] != k[:-1], True])
    starts, sizes = edge[:-1], np.diff(edge)
    out = [np.empty((0, 2), dtype=np.int64)]
    for size in np.unique(sizes[sizes > 1]):
        first = starts[sizes == size]
        i, j = np.triu_indices(size, 1)
        a, b = order[first[:, None] + i].ravel(), order[first[:, None] + j].ravel()
        out.append(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1))
    return np.concatenate(out)


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
        for batch in dd[name].with_format("arrow").iter(batch_size=CHUNK):  # not row dicts
            ids, texts, labels = (batch.column(c).to_pylist() for c in ("id", "text", "label"))
            h.update("".join(f"{name}\t{i}\t{t}\t{names[lb]}\n"
                             for i, t, lb in zip(ids, texts, labels, strict=True)).encode())
    return h.hexdigest()[:16]


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
    dropped = {k: v for k, v in counts.items() if v < cfg.min_count}
    kept = [r for r in kept if r["label"] not in dropped and r["label"] in counts]
    names = sorted({r["label"] for r in kept})
    check_classes(cfg, names)
    kept.sort(key=lambda r: (r["source"], r["id"]))
    groups = near_duplicate_groups([r["text"] for r in kept], cfg.near_duplicate_threshold)
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
    return dd, card(dd, cfg, names, seen=seen, unlabelled=unlabelled, not_classes=not_classes,
                    conflicts=conflicts, exact_duplicates=exact_dups, groups=groups,
                    near_test=near_test, not_drawn=not_drawn, dropped=dropped)


def check_classes(cfg: BuildConfig, names: list[str]) -> None:
    if len(names) < 2:
        raise ValueError(
            f"task {cfg.task!r} has {len(names)} class(es) with at least {cfg.min_count} "
            f"headlines ({', '.join(names) or 'none'}); a classifier needs two or more")


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


def card(dd: DatasetDict, cfg: BuildConfig, names: list[str], *, seen: int, unlabelled: Counter,
         not_classes: Counter, conflicts: list[str], exact_duplicates: int, groups: np.ndarray,
         near_test: np.ndarray, not_drawn: np.ndarray, dropped: dict[str, int]) -> DataCard:
    """The data card of a built dataset: counts per split, source and label source are read
    from its rows (Arrow batches, not row dicts)."""
    counts: dict[str, Counter] = {}
    by: dict[str, dict[str, Counter]] = {"source": {}, "label_source": {}}
    for s in SPLITS:
        counts[s] = Counter()
        for batch in dd[s].with_format("arrow").iter(batch_size=CHUNK):
            label = [names[i] for i in batch.column("label").to_pylist()]
            counts[s].update(label)
            for key, table in by.items():
                for v, lb in zip(batch.column(key).to_pylist(), label, strict=True):
                    table.setdefault(v, Counter())[lb] += 1
    sizes = np.bincount(groups) if len(groups) else np.zeros(0, dtype=np.int64)
    return DataCard(
        task=cfg.task, fingerprint=fingerprint(dd), rows_in_table=seen,
        unlabelled=dict(unlabelled), conflicts=len(conflicts),
        conflict_examples=conflicts[:CONFLICT_EXAMPLES], exact_duplicates=exact_duplicates,
        near_duplicate_groups=int((sizes > 1).sum()), dropped_classes=dropped,
        counts={s: {lb: counts[s][lb] for lb in names if counts[s][lb]} for s in SPLITS},
        sources={v: dict(c) for v, c in sorted(by["source"].items())},
        label_sources={v: dict(c) for v, c in sorted(by["label_source"].items())},
        near_test_left_out=int(near_test.sum()), distant_not_drawn=int(not_drawn.sum()),
        not_classes=dict(not_classes),
    )


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
