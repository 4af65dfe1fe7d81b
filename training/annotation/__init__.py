"""The annotation wing: gold labels given by annotators who read each headline. One job per
module: `gold` (a task's gold file, checked and written atomically), `sampling` (what to show
next), `terminal` (`manset annotate`, one key per answer), `label_studio` (its JSON and labelling
config). This module opens a session (where its headlines come from, where its labels go) and
exchanges it with Label Studio through the same gold file."""

import json
from contextlib import closing
from pathlib import Path

from training import headlines, tasks
from training.annotation import label_studio
from training.annotation.gold import write_gold
from training.annotation.sampling import Item
from training.annotation.terminal import Session
from training.files import write_text
from training.project import Paths
from training.text import dedup_key, nfc


def open_session(paths: Paths, task: str, annotator: str, seed: int) -> Session:
    spec = tasks.get(task)
    if spec.gold is None or spec.taxonomy is None:
        raise ValueError(f"task {task!r} takes its labels from the site sections; "
                         "there is nothing to annotate")
    if not paths.db.is_file():
        raise FileNotFoundError(f"{paths.db}: no headline table yet; run `manset import` first")
    with closing(headlines.connect(paths.db)) as con:
        items, seen = [], set()
        for r in headlines.all_rows(con):
            if r["id"] not in seen:  # a headline under two sections is one item
                seen.add(r["id"])
                items.append(Item(r["id"], r["text"], r["source"], r["category"] or
                                  r["category_raw"], r["block"] is not None))
    gold = paths.data / spec.gold
    return Session(spec, gold, gold.with_name(gold.stem + "_skipped.csv"),
                   tasks.read_taxonomy(paths.data / spec.taxonomy), items, annotator, seed)


def export_label_studio(s: Session, folder: Path, limit: int) -> tuple[int, int]:
    """tasks.json and config.xml in `folder`; returns the headlines to label (at most `limit`)
    and the labelled ones exported with them as annotations."""
    todo = [(it.id, it.text, it.source, it.category) for it in s.sampler.take(limit)]
    exported = label_studio.export_tasks(s.gold, todo)
    write_text(folder / "tasks.json", json.dumps(exported, ensure_ascii=False, indent=1))
    write_text(folder / "config.xml", label_studio.config_xml(s.labels, s.keys, s.task.question))
    return len(todo), len(s.gold)


def import_label_studio(s: Session, path: Path) -> tuple[int, int]:
    """Merge a Label Studio export into the gold file: new headlines are added, headlines the
    file already labels are kept as they are. Returns (added, kept). Every row is checked
    (label, headline in the table) before the file is rewritten, in one atomic write."""
    rows = label_studio.import_tasks(path, {lb.code for lb in s.labels})
    stored = {it.id: it.text for it in s.items}
    for n, row in rows:
        if row.id not in stored:
            raise ValueError(f"{path}: task {n}: headline {row.id} ({row.text[:40]!r}) is not "
                             "in the headline table")
        if dedup_key(nfc(row.text)) != dedup_key(stored[row.id]):  # edited in Label Studio
            raise ValueError(f"{path}: task {n}: the text of headline {row.id} was edited "
                             f"({row.text[:40]!r}, stored {stored[row.id][:40]!r}); a label "
                             "belongs to the stored headline, so re-export and label it there")
    known = {r.id for r in s.gold}
    new = [r for _, r in rows if r.id not in known]
    if new:
        write_gold(s.gold_path, s.gold + new)
    return len(new), len(rows) - len(new)
