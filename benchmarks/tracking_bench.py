"""Tracking overhead per run: the time one `manset train tfidf` spends in its MLflow calls (start
run with tags and params, dataset inputs, metrics and evaluation artifacts, log_model with the
registration, promotion, end of run), against the default SQLite store and against an MLflow
server backed by PostgreSQL on loopback (docs/team.md's set-up, started by
tests/team_servers.py with fsync on). Then the SQLite store's limits: N trainers at once, and a
writer that holds the database locked. Prints tables; writes benchmarks/out/tracking.json.

    .venv/bin/python benchmarks/tracking_bench.py [--runs 5] [--writers 4] [--locks 3 30]

The project is the tests' small one (600 headlines, 6 classes), so the model is small and the
figures are the store's. Each call is timed by wrapping the functions of training.tracking that
training/pipeline.py calls (whatever they are named), around the real calls. One warm-up run per
store, then --runs rounds, each one run on SQLite and one on the server, so that a busy machine
slows both alike. The tables give the median and the spread (min-max) over the rounds.
"""

import argparse
import contextlib
import inspect
import io
import json
import os
import platform
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import team_servers  # noqa: E402
from conftest import make_project  # noqa: E402

MANSET = str(Path(sys.executable).parent / "manset")
STORES = ("sqlite", "server")


def instrument(spent: dict[str, float]) -> list[str]:
    """Wrap every training.tracking function that the pipeline calls so that its time adds up
    in `spent` (a context manager, the run: its start and its end, not the block)."""
    from training import tracking

    called = set(re.findall(r"tracking\.([a-z_]+)\(", (ROOT / "training" / "pipeline.py")
                            .read_text(encoding="utf-8")))
    names = []
    for name in sorted(called):
        fn = getattr(tracking, name, None)
        if not inspect.isfunction(fn):
            continue
        inner = getattr(fn, "__wrapped__", None)
        wrap = _timed_cm if inner and inspect.isgeneratorfunction(inner) else _timed
        setattr(tracking, name, wrap(fn, name, spent))
        names.append(name)
    return names


def _timed(fn: Callable, name: str, spent: dict[str, float]) -> Callable:
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
    return timed


def _timed_cm(fn: Callable, name: str, spent: dict[str, float]) -> Callable:
    @contextlib.contextmanager
    def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
        cm = fn(*args, **kwargs)
        start = time.perf_counter()
        value = cm.__enter__()
        spent[f"{name} start"] = spent.get(f"{name} start", 0.0) + time.perf_counter() - start
        try:
            yield value
        except BaseException:
            if not cm.__exit__(*sys.exc_info()):
                raise
        else:
            start = time.perf_counter()
            cm.__exit__(None, None, None)
            spent[f"{name} end"] = spent.get(f"{name} end", 0.0) + time.perf_counter() - start
    return timed


@contextlib.contextmanager
def tracking_to(uri: str | None) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI",
                                            "MANSET_NAMESPACE")}
    for k in saved:
        os.environ.pop(k, None)
    if uri:
        os.environ.update(MLFLOW_TRACKING_URI=uri, MANSET_NAMESPACE="bench")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def train(root: Path, spent: dict[str, float], c: str = "0.5") -> float:
    """One in-process `manset train tfidf`; its wall time (the calls' times land in spent)."""
    from training.cli import main

    spent.clear()
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()) as err, \
            contextlib.redirect_stdout(io.StringIO()):
        code = main(["train", "tfidf", "--root", str(root), "--C", c])
    if code:
        raise SystemExit(f"manset train failed: {err.getvalue().strip()[-500:]}")
    return time.perf_counter() - start


def overhead(root: Path, server: str, runs: int) -> dict[str, dict[str, list[float]]]:
    spent: dict[str, float] = {}
    names = instrument(spent)
    print(f"timed: {', '.join(names)}", file=sys.stderr)
    uris = {"sqlite": None, "server": server}
    out: dict[str, dict[str, list[float]]] = {s: {} for s in STORES}
    for round_ in range(runs + 1):  # round 0 warms up: imports, experiment, registered model
        for store in STORES:
            with tracking_to(uris[store]):
                wall = train(root, spent, c=f"{0.5 + 0.01 * round_:g}")
            if round_:
                for k, v in {**spent, "tracking total": sum(spent.values()),
                             "train wall": wall}.items():
                    out[store].setdefault(k, []).append(v)
        print(f"round {round_}: " + ", ".join(
            f"{s} {out[s].get('tracking total', [0])[-1]:.2f} s" for s in STORES),
            file=sys.stderr)
    return out


def writers(root: Path, uri: str | None, n: int) -> dict[str, Any]:
    """n `manset train tfidf` processes at once in one project; what each of them says."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MANSET_"))}
    if uri:
        env |= {"MLFLOW_TRACKING_URI": uri, "MANSET_NAMESPACE": "writers"}
    start = time.perf_counter()
    procs = [subprocess.Popen([MANSET, "train", "tfidf", "--root", str(root), "--C",
                               f"{0.25 * (i + 1):g}"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for i in range(n)]
    errors = []
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            errors.append(next((x for x in err.splitlines() if x.startswith("manset: error")),
                               err.strip()[-300:]))
    return {"writers": n, "finished": n - len(errors), "errors": errors,
            "wall_s": time.perf_counter() - start}


def held_lock(root: Path, seconds: float) -> dict[str, Any]:
    """A training run while another connection holds the SQLite store locked for `seconds`."""
    from training.cli import main

    lock = sqlite3.connect(root / "mlruns" / "mlflow.db", timeout=0, check_same_thread=False)
    lock.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(seconds, lock.rollback)
    release.start()
    start = time.perf_counter()
    err = io.StringIO()
    with tracking_to(None), contextlib.redirect_stderr(err), \
            contextlib.redirect_stdout(io.StringIO()):
        code = main(["train", "tfidf", "--root", str(root)])
    wall = time.perf_counter() - start
    release.join()
    lock.close()
    line = next((x for x in err.getvalue().splitlines() if x.startswith("manset: error")), "")
    return {"held_s": seconds, "exit": code, "wall_s": wall, "error": line}


def summary(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--writers", type=int, default=4, help="0: skip")
    ap.add_argument("--locks", type=float, nargs="*", default=[3.0, 30.0],
                    help="seconds to hold the SQLite store locked (MLflow waits up to 20)")
    args = ap.parse_args()
    from mlflow import MlflowClient

    from training.cli import main as manset

    with tempfile.TemporaryDirectory(prefix="manset-bench-") as tmp, \
            team_servers.team_server(durable=True) as team:
        template = Path(tmp) / "template.db"
        MlflowClient(f"sqlite:///{template}").search_experiments()
        root = make_project(Path(tmp) / "project", template)
        with contextlib.redirect_stderr(io.StringIO()):
            assert manset(["import", "--root", str(root)]) == 0
            assert manset(["build", "--root", str(root)]) == 0
        result: dict[str, Any] = {
            "date": datetime.now(UTC).isoformat(timespec="minutes"),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "load_before": os.getloadavg()[0], "runs": args.runs}
        result["overhead"] = overhead(root, team.url, args.runs)
        if args.writers:
            result["writers"] = {"sqlite": writers(root, None, args.writers),
                                 "server": writers(root, team.url, args.writers)}
        result["locks"] = [held_lock(root, s) for s in args.locks]
        result["load_after"] = os.getloadavg()[0]
    report(result)
    out = ROOT / "benchmarks" / "out" / "tracking.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def report(r: dict[str, Any]) -> None:
    o = r["overhead"]
    print(f"{r['date']}, {r['machine']}, load {r['load_before']:.1f} → {r['load_after']:.1f}, "
          f"{r['runs']} rounds\n")
    print("| step | SQLite s | server s | server/SQLite |\n|---|---:|---:|---:|")
    steps = [k for k in o["sqlite"] if k not in ("tracking total", "train wall")]
    for k in [*steps, "tracking total", "train wall"]:
        a, b = o["sqlite"][k], o["server"][k]
        print(f"| {k} | {summary(a)} | {summary(b)} | "
              f"{statistics.median(b) / statistics.median(a):.2f} |")
    for store, w in r.get("writers", {}).items():
        print(f"\n{store}: {w['finished']}/{w['writers']} trainers at once finished in "
              f"{w['wall_s']:.1f} s" + "".join(f"\n  {e}" for e in w["errors"]))
    for lk in r["locks"]:
        print(f"\nSQLite locked for {lk['held_s']:g} s: exit {lk['exit']} after "
              f"{lk['wall_s']:.1f} s {lk['error']}")


if __name__ == "__main__":
    main()
