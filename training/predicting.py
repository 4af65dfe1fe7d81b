"""`manset predict`'s library side: headlines read from a file or stdin as they are needed, and
JSON lines out in batches classified on every core, so an input of any size runs in constant
memory and prints as it goes."""

import collections
import itertools
import os
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import orjson
from manset_serving import InputError, Model, check_texts

from training.headlines import check_file, read_csv, utf8_lines

PREDICT_BATCH = 2048  # headlines classified and printed at a time: constant memory
PREDICT_THREADS = min(4, len(os.sched_getaffinity(0)))


def json_lines(models: dict[str, Model], source: Iterable[str], nested: bool,
               where: str) -> Iterator[str]:
    """JSON lines, one per headline, batch by batch in input order: {"text", the answer} for
    one task, {"text", task: answer, ...} when `nested`. A bad headline raises ValueError naming
    `where` (the file) and its place in the whole input, after every earlier batch."""
    names = list(models)

    def lines(batch: list[str], start: int) -> str:
        try:
            check_texts(batch, max_batch=PREDICT_BATCH)
        except InputError as e:  # name the headline by its place in the whole input
            raise ValueError(f"{where}: headline {start + (e.index or 0) + 1}: "
                             f"{e.reason}") from e
        outputs = {n: m.predict(batch) for n, m in models.items()}
        rows = [{"text": t, **{n: outputs[n][i] for n in names}} if nested
                else {"text": t, **outputs[names[0]][i]} for i, t in enumerate(batch)]
        return b"".join(orjson.dumps(x) + b"\n" for x in rows).decode()

    # Batches are classified on every core (numpy lets go of the GIL: 1.8x on two cores) and
    # yielded in order; at most one more batch per core than is yielded is held.
    source = iter(source)
    done, pending = 0, collections.deque[Future[str]]()
    with ThreadPoolExecutor(PREDICT_THREADS) as pool:
        while batch := list(itertools.islice(source, PREDICT_BATCH)):
            pending.append(pool.submit(lines, batch, done))
            done += len(batch)
            while pending and (len(pending) > PREDICT_THREADS or pending[0].done()):
                yield pending.popleft().result()
        for future in pending:
            yield future.result()
    if not done:
        raise ValueError(f"{where}: no headlines in the file")


def iter_headlines(path: Path) -> Iterator[str]:
    """Headlines from a text file (one per line, blank lines skipped), a CSV with a 'title'
    column, or stdin for `-`, read as they are needed."""
    if str(path) == "-":
        yield from (t.strip() for t in sys.stdin if t.strip())
        return
    check_file(path, pipe_ok=True)
    if path.suffix.lower() == ".csv":
        for r in read_csv(path, ["title"], pipe_ok=True):
            if not r["title"].strip():
                raise ValueError(f"{path}:{r['_line']}: empty headline")
            yield r["title"].strip()
        return
    with path.open("rb") as f:
        yield from (t.strip() for t in utf8_lines(path, f) if t.strip())
