"""What to annotate next: the stated sampling rule of `manset annotate`.

The rule, applied afresh before every headline (so it adapts to the labels given so far):
1. Headlines from saved pages (sidebar blocks, the seed page) come first, in table order: there
   are few of them and they are the distribution the product serves.
2. Every fourth headline is a *candidate* for the rarest label: the label with the fewest gold
   labels (plus candidates already queued for it) under `CANDIDATES_PER_LABEL`. Candidates are
   found by the task's candidate words (training/tasks.py). The words only choose what is shown;
   the annotator never sees them and labels the headline by reading it.
3. Otherwise the next headline comes from the (source, category) stratum with the fewest annotated
   headlines per unit of weight. Catch-all categories (Gündem, Dünya, Son Dakika, Yaşam, Magazin)
   weigh 3, the rest 1, so they are over-sampled threefold. Inside a stratum the order is a
   seeded shuffle.
"""

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from training.configs import DEFAULT_SEED
from training.tasks import is_catch_all
from training.text import dedup_key

CATCH_ALL_WEIGHT = 3
CANDIDATE_EVERY = 4
CANDIDATES_PER_LABEL = 40  # 25 gold rows are wanted per label; not every candidate is one


@dataclass(frozen=True)
class Item:
    id: str
    text: str
    source: str
    category: str
    from_page: bool


@dataclass
class Sampler:
    """Deterministic for a seed and a set of labels; `next` never returns an item twice."""

    items: list[Item]
    seed: int = DEFAULT_SEED
    label_counts: Counter = field(default_factory=Counter)  # gold rows per label
    done: set[str] = field(default_factory=set)  # ids annotated or skipped
    # label → word starts that find candidates for it (Task.candidate_words)
    candidate_words: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _queued: Counter = field(default_factory=Counter)
    _picks: int = 0

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self._strata: dict[tuple[str, str], list[Item]] = {}
        for it in self.items:
            self._strata.setdefault((it.source, it.category), []).append(it)
        for members in self._strata.values():
            rng.shuffle(members)
        self._taken: Counter = Counter(
            (it.source, it.category) for it in self.items if it.id in self.done)
        self._pages = [it for it in self.items if it.from_page]
        keyed = [(dedup_key(it.text) + " ", it) for it in self.items if not it.from_page]
        rng.shuffle(keyed)
        self._candidates = {t: [it for text, it in keyed if any(
            text.startswith(w) or f" {w}" in text for w in words)]
            for t, words in self.candidate_words.items()}

    def next(self) -> Item | None:
        item = self._page() or (self._candidate() if self._picks % CANDIDATE_EVERY
                                == CANDIDATE_EVERY - 1 else None) or self._stratum()
        if item is None:
            return None
        self._picks += 1
        self.done.add(item.id)
        self._taken[(item.source, item.category)] += 1
        return item

    def _page(self) -> Item | None:
        return next((it for it in self._pages if it.id not in self.done), None)

    def _candidate(self) -> Item | None:
        wanting = sorted((self.label_counts[t] + self._queued[t], t) for t in self._candidates
                         if self.label_counts[t] + self._queued[t] < CANDIDATES_PER_LABEL)
        for _, label in wanting:
            found = next((it for it in self._candidates[label] if it.id not in self.done), None)
            if found is not None:
                self._queued[label] += 1
                return found
        return None

    def _stratum(self) -> Item | None:
        open_ = [(self._taken[k] / (CATCH_ALL_WEIGHT if is_catch_all(k[1]) else 1), k)
                 for k, members in self._strata.items()
                 if any(it.id not in self.done for it in members)]
        if not open_:
            return None
        key = min(open_)[1]
        return next(it for it in self._strata[key] if it.id not in self.done)

    def take(self, n: int) -> Iterator[Item]:
        for _ in range(n):
            item = self.next()
            if item is None:
                return
            yield item
