"""Throwaway team services for tests and benchmarks: a PostgreSQL cluster and an MLflow server
backed by it (`--artifacts-destination` a temporary folder), on 127.0.0.1 with free ports, always
stopped and removed at the end.

PostgreSQL refuses to run as root, and CI runs as root: the cluster then runs as `nobody`
(through setpriv), in a folder that user owns under the system's temporary folder.

Run it to get a server for the whole suite (`MLFLOW_TRACKING_URI=… pytest`):
    .venv/bin/python tests/team_servers.py
"""

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "manset"
DB = "mlflow"


def pg_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: $PG_BIN, else PATH, else Debian's newest
    /usr/lib/postgresql/<version>/bin."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    on_path = shutil.which("initdb")
    if on_path:  # often a link into the version's folder, which also holds createdb
        return Path(on_path).resolve().parent
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return found[-1].parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Postgres:
    folder: Path
    port: int
    password: str

    def uri(self, password: str | None = None, db: str = DB) -> str:
        return (f"postgresql+psycopg://{USER}:{password or self.password}@127.0.0.1:"
                f"{self.port}/{db}")


def _as_owner(folder: Path) -> list[str]:
    """The command prefix that runs PostgreSQL as a user other than root, after giving that
    user the folder; nothing when we are not root."""
    if os.geteuid() != 0:
        return []
    nobody = pwd.getpwnam("nobody")
    os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    return ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if out.returncode:
        program = next(Path(c).name for c in cmd if "/" in c)
        raise RuntimeError(f"{program} failed ({out.returncode}): "
                           f"{(out.stderr or out.stdout).strip()}")


@contextmanager
def postgres(durable: bool = False) -> Iterator[Postgres]:
    """A fresh cluster with a password-protected user and an empty database. `durable` keeps
    fsync on (benchmarks); tests turn it off: a throwaway cluster need not survive a crash."""
    bindir = pg_bin()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL not found (initdb): apt-get install postgresql, or "
                                "set PG_BIN to the folder holding initdb and pg_ctl")
    folder = Path(tempfile.mkdtemp(prefix="manset-pg-"))
    try:
        owner = _as_owner(folder)
        password = secrets.token_hex(12)
        pwfile = folder / "password"
        pwfile.write_text(password + "\n")
        if owner:
            shutil.chown(pwfile, "nobody")
        data = folder / "data"
        _run([*owner, str(bindir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}",
              "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C",
              *([] if durable else ["--no-sync"])], folder)
        port = free_port()
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        pg_ctl = [*owner, str(bindir / "pg_ctl"), "-D", str(data)]
        _run([*pg_ctl, "-l", str(folder / "postgres.log"), "-w", "-t", "60", "-o", options,
              "start"], folder)
        try:
            _run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DB],
                 folder, env={**os.environ, "PGPASSWORD": password})
            yield Postgres(folder, port, password)
        finally:
            subprocess.run([*pg_ctl, "-m", "immediate", "-w", "stop"], cwd=folder,
                           capture_output=True, timeout=60)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path
    ready: bool = False

    def wait_ready(self, timeout: float = 180) -> "Server":
        """Until /health answers; a server that exits first raises with its own error line."""
        deadline = time.monotonic() + timeout
        while not self.ready and time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({self.process.returncode}): "
                                   f"{self.error_line()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    self.ready = r.status == 200
            except OSError:
                time.sleep(0.2)
        if self.ready:
            return self
        self.kill()
        raise TimeoutError(f"mlflow server at {self.url}: no answer in {timeout:.0f} s: "
                           f"{self.error_line()}")

    def error_line(self) -> str:
        lines = [x.strip() for x in self.log.read_text(errors="replace").splitlines() if x.strip()]
        errors = [x for x in lines if "Error" in x or "error" in x]
        return (errors or lines or ["(no output)"])[-1][:500]

    def kill(self) -> None:
        """SIGKILL the server and its workers at once: a server that dies, or one whose store
        is thrown away (a graceful stop takes seconds)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session: the group is its own
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        self.ready = False


def start_mlflow(backend_uri: str, artifacts: Path, log: Path) -> Server:
    """`mlflow server` of this Python on a free loopback port, not yet ready (wait_ready)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # 7 idle job workers otherwise
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
             "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port",
             str(port), "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent,
            start_new_session=True)
    return Server(f"http://127.0.0.1:{port}", process, log)


@dataclass(frozen=True)
class Team:
    pg: Postgres
    server: Server
    artifacts: Path  # the server's --artifacts-destination

    @property
    def url(self) -> str:
        """The server's address, once it answers (it starts while the caller does other work)."""
        return self.server.wait_ready().url


@contextmanager
def team_server(durable: bool = False, wait: bool = True) -> Iterator[Team]:
    """PostgreSQL, and an MLflow server on it with a shared artifact folder; killed and removed
    at the end, always. wait=False returns while the server starts (Team.url waits)."""
    with postgres(durable) as pg, tempfile.TemporaryDirectory(prefix="manset-team-") as tmp:
        (Path(tmp) / "artifacts").mkdir()
        server = start_mlflow(pg.uri(), Path(tmp) / "artifacts", Path(tmp) / "server.log")
        try:
            yield Team(pg, server.wait_ready() if wait else server, Path(tmp) / "artifacts")
        finally:
            server.kill()


@pytest.fixture(scope="module")
def team() -> Iterator[Team]:
    """One PostgreSQL-backed server per test module, starting while the module's first fixtures
    build; skipped where PostgreSQL is not installed, but a failure under CI=true (.ci/run
    installs it)."""
    if pg_bin() is None:
        missing = "PostgreSQL is not installed (initdb not found): apt-get install postgresql"
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    with team_server(wait=False) as t:
        yield t


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` also stops both servers
    with team_server() as t:
        print(f"MLFLOW_TRACKING_URI={t.url}  (PostgreSQL {t.pg.uri(password='***')}); "
              "Ctrl-C stops it", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
