"""`manset annotate`: label headlines one key at a time in the terminal.

Each answer is saved at once (the whole gold file through a temporary file and a rename), so a
killed session loses nothing; a new session resumes with what is not labelled or skipped yet, in
the order training/annotation/sampling.py states. No suggestion is shown: only the headline and
the task's labels.
"""

import csv
import os
import sys
import termios
import tty
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from training.annotation.gold import GoldRow, read_gold, write_gold
from training.annotation.sampling import Item, Sampler
from training.configs import DEFAULT_SEED
from training.files import write_text
from training.tasks import Label, Task

SKIP, UNDO, SCOPE, QUIT = "s", "u", "?", "q"  # a task's label keys (Task.keys) are none of these


@dataclass
class Session:
    task: Task
    gold_path: Path
    skipped_path: Path  # ids passed over, so a resumed session does not show them again
    labels: list[Label]  # the task's taxonomy, in its order: one key each
    items: list[Item]
    annotator: str
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        self.keys = self.task.keys[:len(self.labels)]
        if len(self.labels) > len(self.keys) or set(self.keys) & {SKIP, UNDO, SCOPE, QUIT}:
            raise ValueError(f"task {self.task.name!r}: {len(self.labels)} labels need as many "
                             f"keys other than {SKIP}, {UNDO}, {SCOPE} and {QUIT}; it has "
                             f"{self.task.keys!r}")
        self.gold = read_gold(self.gold_path, {lb.code for lb in self.labels})
        self.skipped = _read_skipped(self.skipped_path)
        self.sampler = Sampler(self.items, self.seed, Counter(r.label for r in self.gold),
                               {r.id for r in self.gold} | set(self.skipped),
                               self.task.candidate_words)
        self.history: list[tuple[str, Item]] = []  # ("label" | "skip", item), for undo
        self.pending: list[Item] = []  # items put back by undo, shown before new ones

    def next_item(self) -> Item | None:
        return self.pending.pop() if self.pending else self.sampler.next()

    def label(self, item: Item, key: str) -> None:
        label = self.labels[self.keys.index(key)].code
        self.gold.append(GoldRow(item.id, item.text, item.source, item.category, label,
                                 self.annotator, datetime.now(UTC).isoformat(timespec="seconds")))
        write_gold(self.gold_path, self.gold)
        self.sampler.label_counts[label] += 1
        self.history.append(("label", item))

    def skip(self, item: Item) -> None:
        self.skipped.append(item.id)
        _write_skipped(self.skipped_path, self.skipped)
        self.history.append(("skip", item))

    def undo(self) -> Item:
        """Take back this session's last answer; returns its headline, to show again."""
        kind, item = self.history.pop()
        if kind == "label":
            row = self.gold.pop()
            write_gold(self.gold_path, self.gold)
            self.sampler.label_counts[row.label] -= 1
        else:
            self.skipped.pop()
            _write_skipped(self.skipped_path, self.skipped)
        return item


def _read_skipped(path: Path) -> list[str]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as f:
        return [r["id"] for r in csv.DictReader(f)]


def _write_skipped(path: Path, ids: list[str]) -> None:
    write_text(path, "id\n" + "".join(f"{i}\n" for i in ids))


def screen(s: Session, item: Item, scopes: bool = False) -> str:
    """What the terminal shows for one headline."""
    done = len(s.gold)
    lines = [f"\n── {done} labelled by everyone · {len(s.history)} answers this session "
             "────────", "", f"  {item.text}", ""]
    for key, t in zip(s.keys, s.labels, strict=True):
        lines.append(f"  [{key}] {t.name_en} / {t.name_tr}")
        if scopes:
            lines.append(f"        {t.scope}")
    lines += ["", f"  [{SKIP}] skip  [{UNDO}] undo  [{SCOPE}] scopes  [{QUIT}] quit", "> "]
    return "\n".join(lines)


def run(s: Session, read_key: Callable[[], str], out: TextIO) -> int:
    """The loop: one key per answer. Returns the number of answers this session."""
    item = s.next_item()
    scopes = False
    while item is not None:
        out.write(screen(s, item, scopes))
        out.flush()
        key = read_key()
        scopes = False
        if key in (QUIT, "\x03", "\x04", ""):  # q, Ctrl-C, Ctrl-D, end of input
            break
        if key == SCOPE:
            scopes = True
            continue
        if key == UNDO and s.history:
            s.pending.append(item)  # shown again once the undone one is answered
            item = s.undo()
            continue
        if key == SKIP:
            s.skip(item)
        elif key in s.keys:
            s.label(item, key)
        else:
            out.write(f"\n  '{key}' is not an answer\n")
            continue
        item = s.next_item()
    if item is None:
        out.write("\nNothing left to annotate.\n")
    out.write(f"\nSaved {len(s.gold)} labels to {s.gold_path}\n")
    return len(s.history)


@contextmanager
def single_keys(stream: TextIO) -> Iterator[Callable[[], str]]:
    """Read one key press at a time from a terminal (no Enter), restoring it afterwards; from a
    pipe, one line at a time (its first character)."""
    if not stream.isatty():
        yield lambda: (stream.readline().strip() or "q")[:1]
        return
    fd = stream.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield lambda: os.read(fd, 1).decode(errors="replace")
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def annotate(s: Session) -> int:
    with single_keys(sys.stdin) as read_key:
        return run(s, read_key, sys.stdout)
