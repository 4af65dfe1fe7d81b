"""Dataset build: dedupe, conflicts, near-duplicate groups, splits, fingerprint."""

from pathlib import Path

import pytest

from training import datacard, dataset, headlines, near_dup
from training.configs import BuildConfig
from training.headlines import Aliases, Headline
from training.text import dedup_key, tr_upper

ROOT = Path(__file__).resolve().parent.parent


def _rows(tmp_path: Path, extra: list[Headline] = ()) -> list:
    """60 real TRT Haber headlines from each of three sections, plus `extra`."""
    aliases = Aliases(ROOT / "data" / "categories.csv", ROOT / "data" / "category_aliases.csv")
    rows = headlines.read_labelled(ROOT / "data" / "labelled" / "trthaber_headlines.csv", "trt",
                                   "title", "section")
    taken: dict[str, list[Headline]] = {"spor": [], "ekonomi": [], "kultur-sanat": []}
    for r in rows:
        if r.category_raw in taken and len(taken[r.category_raw]) < 60:
            taken[r.category_raw].append(r)
    con = headlines.connect(tmp_path / "h.sqlite")
    headlines.add(con, [*(r for v in taken.values() for r in v), *extra], aliases)
    return headlines.all_rows(con)


def test_splits_are_disjoint_stratified_and_deterministic(tmp_path):
    rows = _rows(tmp_path)
    dd, card = dataset.build(rows, BuildConfig())
    _dd2, card2 = dataset.build(list(reversed(rows)), BuildConfig())
    assert card.fingerprint == card2.fingerprint  # row order does not matter
    ids = [set(dd[s]["id"]) for s in dataset.SPLITS]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, ids)) == 180 - card.exact_duplicates
    for split in ("validation", "test"):  # ~10% of each class's 60: 6 ± 2.3 (binomial)
        assert all(1 <= n <= 13 for n in card.counts[split].values())
        assert 9 <= sum(card.counts[split].values()) <= 27  # 18 ± 4
    assert dd["train"].features["label"].names == ["Ekonomi", "Kültür-Sanat", "Spor"]
    assert card.fingerprint != dataset.build(rows, BuildConfig(seed=1))[1].fingerprint


def test_near_duplicates_never_straddle_splits(tmp_path):
    extra = [Headline(f"Borsa güne yükselişle başladı ({d} Mart)", "ekonomi", "c")
             for d in range(1, 25)]
    dd, card = dataset.build(_rows(tmp_path, extra), BuildConfig())
    groups = {s: set(dd[s]["group"]) for s in dataset.SPLITS}
    assert not (groups["train"] & groups["test"] or groups["train"] & groups["validation"]
                or groups["validation"] & groups["test"])
    borsa = [(s, g) for s in dataset.SPLITS
             for t, g in zip(dd[s]["text"], dd[s]["group"], strict=True)
             if "Borsa güne yükselişle başladı (" in t]
    assert len(borsa) == 24 and len({g for _, g in borsa}) == 1 and len({s for s, _ in borsa}) == 1
    assert card.near_duplicate_groups >= 1


def test_lsh_groups_equal_every_pair_compared(tmp_path):
    """The MinHash LSH grouping finds exactly the pairs that comparing every pair finds (each
    candidate is checked with the exact cosine), here on 180 headlines and reworded variants of
    a third of them; benchmarks/near_dup_bench.py does it on the whole bundled data."""
    import numpy as np
    from scipy.sparse import csgraph
    from sklearn.feature_extraction.text import CountVectorizer

    base = [r["text"] for r in _rows(tmp_path)]
    texts = base + [f"{t} iddiası" for t in base[::3]] + [f"Son dakika: {t}" for t in base[::5]]
    x = CountVectorizer(analyzer="char_wb", ngram_range=(5, 5), binary=True).fit_transform(
        [dedup_key(t) for t in texts]).astype(float)
    x = x.multiply(1 / np.sqrt(np.asarray(x.sum(axis=1)))).tocsr()
    sim = (x @ x.T).toarray()
    _, every_pair = csgraph.connected_components(sim >= 0.8, directed=False)
    def together(groups: np.ndarray) -> np.ndarray:  # which rows share a group: the partition
        return groups[:, None] == groups[None, :]

    groups = near_dup.near_duplicate_groups(texts, 0.8)
    assert (together(groups) == together(every_pair)).all()
    assert len(set(groups.tolist())) < len(texts) - len(base) // 3  # variants joined
    reversed_order = near_dup.near_duplicate_groups(texts[::-1], 0.8)[::-1]
    assert (together(reversed_order) == together(groups)).all()


def test_exact_duplicates_and_conflicts_are_left_out(tmp_path):
    first = next(r for r in _rows(tmp_path) if r["category"] == "Spor")["text"]
    extra = [Headline(tr_upper(first) + "!", "spor", "z"),  # a duplicate from another site
             Headline("Okullarda grip salgını", "egitim", "a"),
             Headline("Okullarda grip salgını", "saglik", "b")]  # conflict across sources
    dd, card = dataset.build(_rows(tmp_path, extra), BuildConfig(min_count=1))
    texts = [t for s in dataset.SPLITS for t in dd[s]["text"]]
    before = dataset.build(_rows(tmp_path / "b"), BuildConfig(min_count=1))[1].exact_duplicates
    assert card.exact_duplicates == before + 1 and card.conflicts == 1
    assert not any("grip" in t for t in texts)
    # a user can act on it: the card names the headline, its labels and their sources
    assert card.conflict_examples == ["Okullarda grip salgını | Eğitim (a), Sağlık (b)"]
    assert "- Okullarda grip salgını | Eğitim (a), Sağlık (b)" in card.markdown()
    assert "CARD.md, lists 1" in card.warnings()[0]
    assert sum(dedup_key(t) == dedup_key(first) for t in texts) == 1


def test_small_classes_are_dropped_with_their_names(tmp_path):
    extra = [Headline(f"Yeni akıllı telefon {i}", "teknoloji", "a") for i in range(5)]
    dd, card = dataset.build(_rows(tmp_path, extra), BuildConfig(min_count=10))
    assert card.dropped_classes == {"Teknoloji": 5}
    assert "Teknoloji (5)" in " ".join(card.warnings())
    assert "Teknoloji" not in dd["train"].features["label"].names


def test_fewer_than_two_classes_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"1 class.*Spor.*two or more"):
        dataset.build([r for r in _rows(tmp_path) if r["category"] == "Spor"], BuildConfig())


def test_save_is_atomic_and_load_round_trips(tmp_path, monkeypatch):
    dd, card = dataset.build(_rows(tmp_path), BuildConfig())
    out = tmp_path / "built"
    dataset.save(dd, card, out)
    dd2, card2 = dataset.load(out)
    assert card2.fingerprint == card.fingerprint == datacard.fingerprint(dd2)


    def broken(self):
        raise RuntimeError("disk full")

    monkeypatch.setattr(datacard.DataCard, "markdown", broken)  # fails after the data is written
    with pytest.raises(RuntimeError, match="disk full"):
        dataset.save(dd, card, out)
    assert dataset.load(out)[1].fingerprint == card.fingerprint  # the old dataset is intact
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_group_with_two_labels_stays_on_one_side(tmp_path):
    spor = next(r for r in _rows(tmp_path) if r["category"] == "Spor")["text"]
    extra = [Headline(spor + " (video)", "ekonomi", "c")]  # near-duplicate, other label
    dd, _ = dataset.build(_rows(tmp_path / "b", extra), BuildConfig())
    where = {s for s in dataset.SPLITS for t in dd[s]["text"] if t.startswith(spor)}
    assert len(where) == 1


def test_old_rows_keep_their_split_when_rows_are_added(tmp_path):
    before, _ = dataset.build(_rows(tmp_path / "a"), BuildConfig())
    extra = [Headline(f"Yeni sezonda {n}. transfer resmen açıklandı: kulüp {n * 7} milyon ödedi",
                      "spor", "new-site") for n in range(1, 5)] + \
        [Headline(f"Merkez Bankası {n}. toplantıda faizi yüzde {40 + n} yaptı", "ekonomi",
                  "new-site") for n in range(1, 30, 3)]
    after, _ = dataset.build(_rows(tmp_path / "b", extra), BuildConfig())
    split_of = {i: s for s in dataset.SPLITS for i in after[s]["id"]}
    for s in dataset.SPLITS:
        assert all(split_of[i] == s for i in before[s]["id"])  # no old row moved
    # the split is a function of the group and the seed: another seed deals other rows
    other, _ = dataset.build(_rows(tmp_path / "c"), BuildConfig(seed=14))
    assert set(other["test"]["id"]) != set(before["test"]["id"])


