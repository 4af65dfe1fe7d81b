"""The champion bundle of every task under a models folder: loaded, checked and swapped whole
when a newer one appears; a fault is kept as that task's error while the bundle it had serves
on."""

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from manset_serving.bundle import Bundle, BundleError
from manset_serving.champion import CHAMPION, RECORD, champion_dir, record
from manset_serving.models import Model, abstention_threshold, has_int8, load

INLINE_HEADLINES = 8  # at most this many headlines may be predicted on the event loop

log = logging.getLogger("manset_serving.service")


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _tasks_under(models: Path) -> set[str]:
    """Tasks with a champion folder or a champion.json, whether or not the bundle is good (so a
    broken one is reported rather than silently skipped)."""
    found = {p.parent.name for p in Path(models).glob(f"*/{CHAMPION}")} | \
        {p.parent.name for p in Path(models).glob(f"*/{RECORD}")}
    return {t for t in found if not t.startswith(".")}


@dataclass
class Loaded:
    model: Model
    version: str | None  # the registered version, from champion.json once it names this run
    signature: tuple | None
    small_call_seconds: float | None = None  # running mean, calls of <= INLINE_HEADLINES
    unsure_below: float | None = None  # the bundle's abstention threshold, for the metrics

    def timed(self, texts: list[str]) -> list[dict[str, Any]]:
        """The rows for `texts`, timing the call when it is a small one."""
        start = time.perf_counter()
        rows = self.model.rows(self.model.predict_proba(texts))
        if len(texts) <= INLINE_HEADLINES:
            took, mean = time.perf_counter() - start, self.small_call_seconds
            self.small_call_seconds = took if mean is None else 0.8 * mean + 0.2 * took
        return rows


@dataclass
class Registry:
    """The champion of each task, swapped whole when a newer bundle appears."""

    models_dir: Path
    int8: bool = False  # serve a BERT bundle's int8 model when the bundle kept one
    abstain: bool = False  # label null below the bundle's abstention threshold
    loaded: dict[str, Loaded] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # task → why its bundle did not load
    _tried: dict[str, tuple | None] = field(default_factory=dict)  # task → signature tried
    _records: dict[str, tuple | None] = field(default_factory=dict)  # task → champion.json read
    _missing: set[str] = field(default_factory=set)  # loaded tasks whose champion/ is gone
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _signature(self, task: str) -> tuple | None:
        """What identifies the bundle now in champion/: the folder and every file in it, so that
        a bundle replaced file by file (the manifest first, the weights later) is tried again
        once the last file lands. None while there is no folder (absent, or between the two
        renames of a swap)."""
        folder = champion_dir(self.models_dir, task)
        where = _stat(folder)
        if where is None:
            return None
        try:
            files = sorted(p for p in folder.rglob("*") if p.is_file())
        except OSError:  # swapped away while listed: the next check sees the new folder
            files = []
        return where, tuple((p.relative_to(folder).as_posix(), _stat(p)) for p in files)

    def refresh(self) -> None:
        """Load every task whose champion bundle changed since it was last tried. Never raises:
        a fault is kept as that task's error and the bundle it had keeps serving."""
        try:
            tasks = _tasks_under(self.models_dir) | set(self.loaded)
        except OSError as e:
            log.warning("cannot list %s: %s", self.models_dir, e)
            return
        for task in sorted(tasks):
            try:
                self._refresh(task)
            except Exception as e:  # a loader fault we did not foresee must not stop the watcher
                self._fail(task, f"{champion_dir(self.models_dir, task)}: "
                                 f"{type(e).__name__}: {e}")

    def _refresh(self, task: str) -> None:
        sig = self._signature(task)
        if sig is None and task in self.loaded:  # removed, or between the renames of a swap
            if task not in self._missing:
                self._missing.add(task)
                self._fail(task, f"{champion_dir(self.models_dir, task)}: no such bundle "
                                 "folder; still serving the one loaded before")
            return
        if task in self._missing:  # back, or swapped in: a new folder is loaded below
            self._missing.discard(task)
            with self._lock:
                self.errors.pop(task, None)
        if task not in self._tried or self._tried[task] != sig:
            self._tried[task] = sig
            try:
                folder = champion_dir(self.models_dir, task)
                model = load(folder, int8=self.int8 and has_int8(Bundle(folder)),
                             abstain=self.abstain, task=task)
                model.bundle.verify_all()
            except (ValueError, OSError) as e:  # BundleError is a ValueError
                self._fail(task, str(e))
                return
            try:
                below: float | None = abstention_threshold(model.bundle)
            except BundleError:  # exported before thresholds: no unsure count
                below = None
            with self._lock:
                self.loaded[task] = Loaded(model, None, sig, unsure_below=below)
                self.errors.pop(task, None)
            self._records.pop(task, None)  # label it below
        self._label(task)

    def _label(self, task: str) -> None:
        """The registered version, from champion.json when it names the loaded run. The file is
        re-read when it changes: it is written just after the bundle is swapped in, so a reload
        can see the bundle first. A record naming another run (one whose bundle was refused)
        leaves the loaded model's version as it was."""
        current = self.loaded.get(task)
        rec_sig = _stat(self.models_dir / task / RECORD)
        if current is None or (task in self._records and self._records[task] == rec_sig):
            return
        self._records[task] = rec_sig
        rec = record(self.models_dir, task)
        if rec.get("mlflow_run_id") != current.model.bundle.run_id or \
                rec.get("version") is None:
            return  # it names another run (say one whose bundle was refused): keep what we had
        version = str(rec["version"])
        if version != current.version:
            with self._lock:
                self.loaded[task] = replace(current, version=version)

    def _fail(self, task: str, message: str) -> None:
        log.warning("%s: not loaded: %s", task, message)
        with self._lock:
            self.errors[task] = self.public(message)

    def public(self, message: str) -> str:
        """A message for clients: the models folder, a path on this server, as <models> (the
        log keeps the whole path)."""
        for folder in (str(self.models_dir.resolve()), str(self.models_dir)):
            message = message.replace(folder.rstrip("/") + "/", "<models>/")
        return message

    def snapshot(self) -> dict[str, Loaded]:
        with self._lock:
            return dict(self.loaded)

    def errors_now(self) -> dict[str, str]:
        with self._lock:
            return dict(self.errors)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {t: {**x.model.info(), "version": x.version}
                               for t, x in self.snapshot().items()}
        for task, error in self.errors_now().items():
            out.setdefault(task, {})["last_load_error"] = error
        return out

    def not_ready(self) -> str:
        """Why no model is loaded, for /readyz and a 503."""
        errors = self.errors_now()
        if errors:
            return "no bundle could be loaded: " + "; ".join(f"{t}: {e}"
                                                             for t, e in sorted(errors.items()))
        return (f"no champion bundle under <models>/<task>/{CHAMPION}/; export one with "
                "`manset run` or `manset train`")
