"""A run: opened named and tagged (task, family, code version, machine), ended FINISHED or FAILED,
and the runs of dead processes closed."""

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from training.files import alive
from training.tracking.connect import experiment, guarded


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def close_dead_runs(experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs of this experiment whose process (same host, tagged pid)
    is gone: a killed trainer leaves its run RUNNING forever otherwise."""
    client = MlflowClient()
    closed = []
    for r in client.search_runs([experiment_id], "attributes.status = 'RUNNING'"):
        tags = r.data.tags
        pid = tags.get("manset.pid", "")
        if tags.get("manset.host") == socket.gethostname() and pid.isdigit() and \
                not alive(int(pid)):
            client.set_tag(r.info.run_id, "manset.closed_by", f"pid {os.getpid()}")
            client.set_terminated(r.info.run_id, "KILLED")
            closed.append(r.info.run_id)
    return closed


@dataclass(frozen=True)
class RunMeta:
    """What the user says about a run: --run-name, --tag k=v, --description."""

    name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    description: str = ""


def run_name(family: str, settings: dict[str, object], run_id: str) -> str:
    """family, the settings that differ from the defaults, a short id: tfidf-C=2-a1b2c3."""
    def shown(v: object) -> str:
        if v is None:
            return "none"
        text = f"{v:g}" if isinstance(v, float) else str(v)
        return Path(text).name if "/" in text else text  # a model folder: its name
    return "-".join([family, *(f"{k}={shown(v)}" for k, v in settings.items()), run_id[:6]])


def machine() -> dict[str, str]:
    """Tags that say where a run ran, so that speed figures are compared on one machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    gpu = "none"
    torch = sys.modules.get("torch")  # only a run that loaded torch can have used a GPU
    if torch is not None and torch.cuda.is_available():
        gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return {"manset.cpu": cpu, "manset.cores": str(os.cpu_count()), "manset.gpu": gpu,
            "manset.host": socket.gethostname()}


def git_dirty(root: Path) -> str:
    """"true" when tracked files differ from the commit: the run's code is not that commit."""
    try:
        out = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                              "--untracked-files=no"], capture_output=True, text=True, timeout=10)
    except OSError:
        return "unknown"
    return "unknown" if out.returncode else str(bool(out.stdout.strip())).lower()


@contextmanager
def run(task: str, family: str, root: Path, params: dict[str, object],
        meta: RunMeta | None = None, settings: dict[str, object] | None = None,
        nested: bool = False) -> Iterator[str]:
    """An MLflow run in the task's experiment; yields its id. It is named after the family and
    `settings` (those that differ from the defaults) unless meta names it, and tagged with the
    task, family, code version and machine. It ends FINISHED, or FAILED when the block raises;
    store failures anywhere become one TrackingError line. Runs left RUNNING by dead processes
    are closed first. A nested run is a child of the run that is open (a sweep's trials)."""
    meta = meta or RunMeta()
    with guarded("starting the run"):
        exp = experiment(task, root)
        close_dead_runs(exp)
        tags = {"task": task, "family": family, "mlflow.source.git.commit": git_commit(root),
                "manset.git_dirty": git_dirty(root), "manset.version": _version(),
                "manset.pid": str(os.getpid()), **machine(), **meta.tags}
        if meta.description:
            tags["mlflow.note.content"] = meta.description  # the UI's run description
        # the pid and host go in with the run itself: a process killed right after creating
        # the run must still leave a run that close_dead_runs can recognise as dead
        active = mlflow.start_run(experiment_id=exp, run_name=meta.name, nested=nested,
                                  tags=tags)
        run_id = active.info.run_id
    with _ending():  # from here on the run ends FAILED when anything raises
        with guarded("logging the run's settings"):
            if not meta.name:
                mlflow.set_tag("mlflow.runName", run_name(family, settings or {}, run_id))
            mlflow.log_params(params)
        yield run_id


@contextmanager
def _ending() -> Iterator[None]:
    """End the active run when the block ends: FINISHED, or FAILED when it raises."""
    try:
        yield
    except BaseException:
        try:  # a store that is down cannot record it; the next run closes this one
            mlflow.end_run("FAILED")
        except Exception:
            pass
        raise
    with guarded("finishing the run"):
        mlflow.end_run()


def _version() -> str:
    try:
        return importlib.metadata.version("manset")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def close_interrupted(run_id: str, resumed_by: str) -> None:
    """Point the run whose checkpoints were resumed at the run that resumed them, and mark it
    KILLED if it is still RUNNING (close_dead_runs has usually done that already)."""
    client = MlflowClient()
    try:
        status = client.get_run(run_id).info.status
    except mlflow.exceptions.MlflowException:
        return  # another store, or the run was deleted: nothing to close
    client.set_tag(run_id, "manset.resumed_by", resumed_by)
    if status == "RUNNING":
        client.set_terminated(run_id, "KILLED")
