"""manset-serve under hostile clients, on real sockets: a flood of huge
headers, and connections that send headers and part of a body, then nothing. Memory stays
bounded, the slow connections are answered 408 and closed, and other clients are answered."""

import resource
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from test_service import Server, install, start_server
from test_serving import small_bundle

BODY = b'{"headlines": ["Galatasaray derbiyi kazand\xc4\xb1"]}'


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    install(root / "models", "category", small_bundle(root / "built"), 1, "run-1")
    return root / "models"


def _serve(models: Path, log: Path, *args: str, files: int | None = None) -> Server:
    def limit() -> None:  # the issue's `ulimit -n 150`
        if files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))

    server = start_server(models, log, *args, preexec_fn=limit)
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    return server


def _kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(key)


def _classify(server: Server) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/classify", content=BODY, timeout=30,
                      headers={"content-type": "application/json"})


def _flood(url: str, answers: list[bytes]) -> None:
    host, port = url.removeprefix("http://").split(":")
    line = b"X-Pad: " + b"a" * (1 << 20) + b"\r\n"
    with socket.create_connection((host, int(port)), timeout=30) as s:
        try:
            s.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\n")
            for _ in range(64):
                s.sendall(line)
        except OSError:  # closed by the server before the 64 MiB were sent
            pass
        try:
            answers.append(s.recv(200))
        except OSError:
            answers.append(b"")


def test_a_header_flood_is_refused_with_bounded_memory(models: Path, tmp_path: Path) -> None:
    server = _serve(models, tmp_path / "server.log")
    try:
        assert _classify(server).status_code == 200
        before = _kib(server.proc.pid, "VmRSS")
        answers: list[bytes] = []
        threads = [threading.Thread(target=_flood, args=(server.url, answers))
                   for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        grown = _kib(server.proc.pid, "VmHWM") - before  # the peak, not the end
        assert grown < 100 * 1024, f"{grown} KiB more at the peak"
        assert len(answers) == 20
        assert all(a == b"" or a.startswith(b"HTTP/1.1 431") for a in answers), answers[:3]
        assert any(a.startswith(b"HTTP/1.1 431") for a in answers)
        assert _classify(server).status_code == 200
        # many small headers: a count bound, not only a size one
        many = {f"x-h{i}": "1" for i in range(200)}
        assert httpx.get(f"{server.url}/healthz", headers=many, timeout=10).status_code == 400
    finally:
        server.stop()


def test_slow_bodies_time_out_and_other_clients_are_answered(models: Path,
                                                             tmp_path: Path) -> None:
    server = _serve(models, tmp_path / "server.log", "--request-seconds", "2",
                    "--max-connections", "64", files=150)
    host, port = server.url.removeprefix("http://").split(":")
    slow = []
    try:
        for _ in range(200):  # headers and part of a body, then nothing
            s = socket.create_connection((host, int(port)), timeout=30)
            s.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\ncontent-type: "
                      b"application/json\r\ncontent-length: 1000\r\n\r\n" + BODY[:10])
            slow.append(s)
        # another client: a quick 503 while the slow ones hold every allowed connection (a
        # client retries it), its answer once they are dropped
        start, seen = time.monotonic(), []
        while not seen or seen[-1] != 200:
            assert time.monotonic() - start < 25, seen
            seen.append(_classify(server).status_code)
            time.sleep(0.2)
        assert set(seen) <= {200, 503}, seen
        statuses = []
        for s in slow:  # every slow one was answered and closed, none left hanging
            s.settimeout(30)
            data = s.recv(200)
            statuses.append(data[:12])
            s.close()
        assert set(statuses) <= {b"HTTP/1.1 408", b"HTTP/1.1 503", b""}, set(statuses)
        assert statuses.count(b"HTTP/1.1 408") >= 40
        assert server.proc.poll() is None
    finally:
        for s in slow:
            s.close()
        server.stop()
