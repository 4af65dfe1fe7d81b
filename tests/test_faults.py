"""Faults in the middle of a run: a process killed with SIGKILL, a store locked by another
process. One clear line, nothing half-done left behind, and the next command tidies up."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import ROOT, STEPS, verify
from mlflow import MlflowClient

from training.cli import main
from training.files import ensure_free


def _client(project: Path) -> MlflowClient:
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    return MlflowClient(uri, registry_uri=uri)  # not the registry an earlier test set globally


def _runs(project: Path) -> list:
    client = _client(project)
    exp = client.get_experiment_by_name("manset-category")
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def _python(code: str, cwd: Path, env: dict | None = None, timeout: int = 300
            ) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_the_next_run_tidies_what_a_killed_one_left(trained: Path) -> None:
    """SIGKILL while a run is open and a bundle is being staged: the run stays RUNNING and the
    staging folder stays until the next training command marks the run KILLED and removes the
    folder. The served champion is untouched throughout."""
    champion = verify(trained / "models" / "category" / "champion")
    out = _python(f"""
        import os, signal
        from pathlib import Path
        from training import tracking
        from training.files import staged_dir
        root = Path({str(trained)!r})
        tracking.configure(root)
        with tracking.run("category", "tfidf", root, {{}}):
            with staged_dir(root / "models" / "category" / "tfidf") as folder:
                (folder / "model.safetensors").write_bytes(b"half")
                os.kill(os.getpid(), signal.SIGKILL)
        """, trained)
    assert out.returncode == -signal.SIGKILL
    assert [r.info.status for r in _runs(trained)] == ["FINISHED", "RUNNING"]
    staged = list((trained / "models" / "category").glob(".tfidf-*"))
    assert len(staged) == 1 and (staged[0] / "tfidf" / "model.safetensors").is_file()
    assert main(["train", "tfidf", "--root", str(trained)]) == 0
    runs = _runs(trained)
    assert [r.info.status for r in runs] == ["FINISHED", "KILLED", "FINISHED"]
    assert runs[1].data.tags["manset.closed_by"].startswith("pid ")
    assert not list((trained / "models" / "category").glob(".tfidf-*"))
    assert verify(trained / "models" / "category" / "champion") == champion


def test_a_run_killed_the_moment_it_is_created_is_closed_by_the_next(trained: Path) -> None:
    """SIGKILL straight after MLflow creates the run, before any later tag is set: the run already
    carries its pid and host, so the next training command still recognises it as dead."""
    out = _python(f"""
        import os, signal
        from pathlib import Path
        import mlflow
        from training import tracking
        created = mlflow.start_run
        def start_and_die(*args, **kwargs):
            created(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
        mlflow.start_run = start_and_die
        root = Path({str(trained)!r})
        tracking.configure(root)
        with tracking.run("category", "tfidf", root, {{}}):
            pass
        """, trained)
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert [r.info.status for r in _runs(trained)] == ["FINISHED", "RUNNING"]
    assert main(["train", "tfidf", "--root", str(trained)]) == 0
    assert [r.info.status for r in _runs(trained)] == ["FINISHED", "KILLED", "FINISHED"]


@pytest.mark.slow  # MLflow waits out SQLite's busy timeout before it gives up: ~50 s
def test_a_store_locked_mid_run_is_one_line_and_the_run_is_closed_later(trained: Path) -> None:
    """Another process locks the store after training started: logging the evaluation fails
    with one line naming the cause; the served bundle is unchanged; the dead run is closed by
    the next run once the lock is gone."""
    champion = verify(trained / "models" / "category" / "champion")
    shim = trained / "shim"
    shim.mkdir()
    db = trained / "mlruns" / "mlflow.db"
    # Once the first fit is done, a second process takes an exclusive lock on the store for 40 s.
    (shim / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import subprocess, sys, time
        import training.families.tfidf as b
        fit = b.fit
        def locked_fit(*a, **k):
            out = fit(*a, **k)
            if b.__dict__.get("locked"):  # the cross-source folds fit again: lock once
                return out
            b.locked = True
            code = ("import sqlite3, time; c = sqlite3.connect({str(db)!r}, timeout=0); "
                    "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(40)")
            p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
            p.stdout.readline()
            open({str(trained / "locker.pid")!r}, "w").write(str(p.pid))
            return out
        b.fit = locked_fit
        """))
    out = _python("from training.cli import main; import sys; "
                  f"sys.exit(main(['train', 'tfidf', '--root', {str(trained)!r}]))", trained,
                  env={"PYTHONPATH": f"{shim}{os.pathsep}{ROOT}"})
    assert out.returncode == 1, out.stderr[-3000:]
    # stage lines ("[  3 s] category: fitting tfidf ...") aside, one line says what failed
    lines = [x for x in out.stderr.strip().splitlines() if not x.startswith("[")]
    assert "Traceback" not in out.stderr and len(lines) <= 3, out.stderr[-3000:]
    assert "MLflow store" in lines[-1] and "database is locked" in lines[-1]
    os.kill(int((trained / "locker.pid").read_text()), signal.SIGKILL)
    assert verify(trained / "models" / "category" / "champion") == champion
    assert main(["train", "tfidf", "--root", str(trained)]) == 0
    # FAILED when MLflow could record it once the lock went, else KILLED by the next run
    assert [r.info.status for r in _runs(trained)] in (
        ["FINISHED", "FAILED", "FINISHED"], ["FINISHED", "KILLED", "FINISHED"])


@pytest.mark.parametrize("argv", [["predict", "--bogus"], ["ingest"], ["build", "--seed", "abc"],
                                  ["serve", "--foo"], ["bogus"], []])
def test_usage_errors_are_clicks_short_message_and_exit_2(argv, capsys) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    shown = out + err
    assert "Traceback" not in out + err and "Usage: manset" in shown
    # a mistake gets the short usage message; bare `manset`, the list of commands
    assert len(err.splitlines()) <= (25 if argv == [] else 12)


@pytest.mark.slow
def test_kill_9_of_a_real_manset_run_at_several_points_loses_nothing(project: Path) -> None:
    """A real `manset run`, killed with SIGKILL at several moments: afterwards the headline
    table is intact, every bundle present verifies, the champion alias points at a FINISHED run
    whose bundle is the one served, and the next run tidies up and completes."""
    import sqlite3
    import time

    entry = ("import sys; from training.cli import main; "
             f"sys.exit(main(['run', '--root', {str(project)!r}]))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    for delay in (4.0, 9.0, 14.0, 20.0):
        proc = subprocess.Popen([sys.executable, "-c", entry], cwd=project, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.kill()
        proc.wait(timeout=30)
        if (project / "data" / "headlines.sqlite").is_file():
            con = sqlite3.connect(project / "data" / "headlines.sqlite")
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            con.close()
        for manifest in (project / "models").glob("*/*/manifest.json"):
            verify(manifest.parent)  # a bundle is whole or absent, never half-written
        client = _client(project)
        for task in ("category", "topic"):
            try:
                champion = client.get_model_version_by_alias(f"manset-{task}", "champion")
            except Exception:
                continue  # not registered yet
            assert client.get_run(champion.run_id).info.status == "FINISHED"
    assert main(["run", "--root", str(project)]) == 0
    runs = _runs(project)
    assert "RUNNING" not in {r.info.status for r in runs}
    assert not list((project / "models").glob("*/.*-*-*"))  # no staging leftovers
    champion = _client(project).get_model_version_by_alias("manset-category", "champion")
    assert verify(project / "models" / "category" / "champion")["mlflow_run_id"] == \
        champion.run_id


def test_a_read_only_store_names_the_real_cause(trained: Path, capsys, monkeypatch) -> None:
    """A store that cannot be written (here SQLite opened read-only; a read-only mlruns/ for a
    user who is not root) reports SQLite's own reason, not SQLAlchemy's wrapper around it."""
    champion = verify(trained / "models" / "category" / "champion")
    db = trained / "mlruns" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///file:{db}?mode=ro&uri=true")
    monkeypatch.chdir(trained)  # MLflow makes the folder "file:/…/mlruns" where it runs
    assert main(["train", "tfidf", "--root", str(trained)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "autoflush" not in err
    assert "attempt to write a readonly database" in err.strip().splitlines()[-1]
    assert verify(trained / "models" / "category" / "champion") == champion


@contextmanager
def small_fs(folder: Path) -> Iterator[Path]:
    """`folder` as a real 1 MB file system (tmpfs) while the block runs; the test is skipped
    where mounting is not allowed (CI runs as root)."""
    folder.mkdir(exist_ok=True)
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
            capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def test_free_space_is_summed_per_file_system(tmp_path: Path) -> None:
    """Two folders on a 1 MB file system need 600 KB each: either alone fits, both do not,
    and the error names the first folder; a folder elsewhere does not count against it."""
    with small_fs(tmp_path / "small") as small:
        a, b = small / "a", small / "b" / "deeper"  # neither exists yet
        ensure_free({a: 600_000, tmp_path: 600_000})
        ensure_free({b: 600_000})
        with pytest.raises(OSError, match=f"{a}: not enough free space: this needs about 1 MB"):
            ensure_free({a: 600_000, b: 600_000})


def test_a_bert_run_without_disk_room_stops_before_training(
        trained: Path, tiny_model: Path, capsys) -> None:
    """Checkpoints on a 1 MB file system: the tiny BERT's two checkpoints and export need
    about 5 MB there. The run stops before its first step with one line naming the folder, opens
    no MLflow run and leaves the served model as it was (rather than failing at export with
    protobuf's "Wire format was corrupt", as a full disk once did)."""
    champion = verify(trained / "models" / "category" / "champion")
    runs = len(_runs(trained))
    with small_fs(trained / "checkpoints") as small:
        assert main(["train", "bert", "--root", str(trained), "--base-model", str(tiny_model),
                     *STEPS]) == 1
    err = capsys.readouterr().err  # transformers' load report, then manset's one line
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(
        f"manset: error: [Errno 28] {small / 'category' / 'bert'}: not enough free space")
    assert len(_runs(trained)) == runs
    assert verify(trained / "models" / "category" / "champion") == champion


def test_a_bert_run_without_room_for_its_logged_bundle_stops_before_training(
        trained: Path, tiny_model: Path, capsys) -> None:
    """The run's artifact folder on a 1 MB file system: the tiny BERT's logged bundle needs
    about 1.5 MB there. The run stops before its first step, naming that folder, rather than
    failing in MLflow's log_model after the whole training."""
    champion = verify(trained / "models" / "category" / "champion")
    runs = len(_runs(trained))
    with small_fs(trained / "mlruns" / "artifacts") as small:
        assert main(["train", "bert", "--root", str(trained), "--base-model", str(tiny_model),
                     *STEPS]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith(
        f"manset: error: [Errno 28] {small}: not enough free space")
    assert len(_runs(trained)) == runs
    assert verify(trained / "models" / "category" / "champion") == champion


def test_commands_started_at_once_on_a_fresh_project_create_the_store_once(tmp_path: Path
                                                                           ) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    code = "import sys; from training.cli import main; sys.exit(main(sys.argv[1:]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, "runs", "--root", str(root)],
                              env=env, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    # each finds an empty store: not MLflow's own schema creation failing under another
    assert all("no runs of task 'category' yet" in e for e in errs), errs
    assert (root / "mlruns" / "mlflow.db").is_file()


def test_a_full_disk_under_models_is_one_line_and_the_champion_is_intact(trained: Path) -> None:
    """A file size limit (ulimit -f) stands in for a full disk: the bundle's weights are the
    largest file a run writes, so that is where the write fails."""
    champion = verify(trained / "models" / "category" / "champion")
    weights = (trained / "models" / "category" / "tfidf" / "model.safetensors").stat().st_size
    limit = max(weights - 100_000, (trained / "mlruns" / "mlflow.db").stat().st_size + 200_000)
    assert limit < weights
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
            "from training.cli import main\n"
            f"sys.exit(main(['train', 'tfidf', '--root', {str(trained)!r}]))\n")
    out = _python(code, trained)
    assert out.returncode == 1, out.stderr[-3000:]
    errors = [x for x in out.stderr.splitlines() if not x.startswith("[")]
    assert "Traceback" not in out.stderr and len(errors) == 1, out.stderr[-3000:]
    assert "model.safetensors cannot be written" in errors[0] and "File too large" in errors[0]
    assert verify(trained / "models" / "category" / "champion") == champion
