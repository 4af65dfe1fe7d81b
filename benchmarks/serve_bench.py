"""manset-serve on loopback: requests/s and p50/p99 latency of POST /v1/classify for one
headline and for batches of 64, at 1 and 16 concurrent clients, against the bare in-process
predictor. The server is a `manset-serve` subprocess; the load comes from this process, one
thread per client, each on its own keep-alive connection. Prints a table; writes
benchmarks/out/serve.json.

    .venv/bin/python benchmarks/serve_bench.py [--bundle models/category/champion]
                                               [--bert-bundle PATH] [--seconds 5]

The client is a minimal HTTP/1.1 writer and reader over a socket, with every request body
encoded in advance, so that the latency is the server's and not the client library's (httpx
spends 0.2-0.4 ms of its own per request; `--client httpx` measures with it instead). Each cell
runs for --seconds or --requests, whichever comes first, --repeats times; the table gives the
median and the spread (min-max) over the repeats.
"""

import argparse
import csv
import functools
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CSV = ROOT / "data" / "labelled" / "trthaber_headlines.csv"
SERVE = Path(sys.executable).parent / "manset-serve"
BATCH = 64


def headlines(n: int) -> list[str]:
    with CSV.open(encoding="utf-8") as f:
        titles = [r["title"] for r in csv.DictReader(f) if r["title"].strip()]
    step = max(1, len(titles) // n)
    return titles[::step][:n]


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


# ---- the client ----------------------------------------------------------------------------

class Raw:
    """One keep-alive HTTP/1.1 connection: send prepared bytes, read one response."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buf += data

    def send(self, request: bytes) -> tuple[int, bytes]:
        self.sock.sendall(request)
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        head, self.buf = self.buf[:end], self.buf[end + 4:]
        status, length = int(head[9:12]), 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, body

    def close(self) -> None:
        self.sock.close()


class Httpx:
    def __init__(self, port: int):
        import httpx

        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)

    def send(self, request: bytes) -> tuple[int, bytes]:
        head, _, body = request.partition(b"\r\n\r\n")
        method, path, _ = head.split(b"\r\n")[0].split(b" ")
        r = self.client.request(method.decode(), path.decode(), content=body or None,
                                headers={"content-type": "application/json"} if body else None)
        return r.status_code, r.content

    def close(self) -> None:
        self.client.close()


CLIENTS: dict[str, Callable[[int], Any]] = {"raw": Raw, "httpx": Httpx}


def post(port: int, payload: object) -> bytes:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return (f"POST /v1/classify HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
            ).encode() + body


def get(port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n".encode()


def load_run(make: Callable[[int], Any], port: int, requests: list[bytes], clients: int,
             seconds: float, max_requests: int) -> dict[str, float]:
    """`clients` threads sending `requests` round-robin until the time or the count is up."""
    conns = [make(port) for _ in range(clients)]
    for c in conns:  # warm each connection, with one request: more would leave the first
        c.send(requests[0])  # connections idle past the server's 5 s keep-alive on BERT
    counter, stop = itertools.count(), threading.Event()
    times: list[list[float]] = [[] for _ in range(clients)]
    failures: list[str] = []
    start = threading.Barrier(clients + 1)

    def work(k: int) -> None:
        conn, mine = conns[k], times[k]
        start.wait()
        for i in itertools.count(k * 7):
            if stop.is_set() or next(counter) >= max_requests:
                return
            t0 = time.perf_counter()
            status, body = conn.send(requests[i % len(requests)])
            mine.append(time.perf_counter() - t0)
            if status != 200:
                failures.append(f"{status} {body[:200]!r}")
                stop.set()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    timer.cancel()
    for c in conns:
        c.close()
    if failures:
        raise RuntimeError(f"{len(failures)} failed requests, first: {failures[0]}")
    flat = [x for xs in times for x in xs]
    return {"requests": len(flat), "seconds": elapsed, "rps": len(flat) / elapsed,
            "p50_ms": percentile(flat, 0.5) * 1000, "p99_ms": percentile(flat, 0.99) * 1000}


def summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": runs}
    for key in ("rps", "p50_ms", "p99_ms"):
        xs = [r[key] for r in runs]
        out[key] = {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}
    out["requests"] = sum(int(r["requests"]) for r in runs)
    return out


# ---- the server ----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """manset-serve over a private models folder holding `bundle` as its task's champion."""

    def __init__(self, bundle: Path, workdir: Path, extra: list[str]):
        task = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))["task"]
        self.models = workdir / "models"
        self.task = task
        target = self.models / task / "champion"
        shutil.copytree(bundle, target, copy_function=_link_or_copy)
        self.port = free_port()
        self.log = workdir / "server.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([str(SERVE), "--models", str(self.models), "--port",
                                          str(self.port), *extra], stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"manset-serve did not come up:\n{self.log.read_text()}")
            try:
                conn = Raw(self.port)
                status, _ = conn.send(get(self.port, "/readyz"))
                conn.close()
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# ---- the bare predictor ------------------------------------------------------------------------

def bare(bundle: Path, texts: list[str], batch: int, seconds: float, max_calls: int,
         int8: bool = False) -> dict[str, float]:
    """The in-process predictor, `manset_serving.load(bundle).predict`, called in a loop."""
    from manset_serving import load

    model = load(bundle, int8=int8)
    model.predict(texts[:batch])
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    for i in range(max_calls):
        chunk = [texts[(i * batch + j) % len(texts)] for j in range(batch)]
        t0 = time.perf_counter()
        model.predict(chunk)
        times.append(time.perf_counter() - t0)
        if t0 > deadline:
            break
    return {"requests": len(times), "seconds": sum(times), "rps": len(times) / sum(times),
            "p50_ms": percentile(times, 0.5) * 1000, "p99_ms": percentile(times, 0.99) * 1000}


# ---- the benchmark -----------------------------------------------------------------------------

def bench_bundle(name: str, bundle: Path, args: argparse.Namespace, texts: list[str]
                 ) -> dict[str, Any]:
    """Every cell once per round, `args.repeats` rounds, so that a change of load on the machine
    hits the bare predictor and the service alike."""
    make = CLIENTS[args.client]
    singles = [[t] for t in texts]
    batches = [[texts[(i * BATCH + j) % len(texts)] for j in range(BATCH)]
               for i in range(len(texts) // BATCH or 1)]
    runs: dict[str, list[dict[str, float]]] = {}
    meta: dict[str, dict[str, Any]] = {}
    int8 = args.int8 and name == "bert"  # the same model in process and in the service
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        server = Server(bundle, Path(tmp), [*args.serve_args, *(["--int8"] if int8 else [])])
        try:
            # (what, headlines per request, clients, the run)
            jobs: list[tuple[str, int, int, Callable[[], dict[str, float]]]] = []
            for batch in (1, BATCH):
                jobs.append(("bare predictor (in process)", batch, 0, functools.partial(
                    bare, bundle, texts, batch, args.seconds, args.requests, int8)))
            floor = [get(server.port, "/healthz")]
            jobs.append(("GET /healthz", 0, 1, functools.partial(
                load_run, make, server.port, floor, 1, args.seconds, args.requests)))
            for clients in (1, 16):
                for batch, pool in ((1, singles), (BATCH, batches)):
                    requests = [post(server.port, {"headlines": b}) for b in pool]
                    jobs.append(("POST /v1/classify", batch, clients, functools.partial(
                        load_run, make, server.port, requests, clients, args.seconds,
                        args.requests)))
            for round_ in range(args.repeats):
                for what, batch, clients, job in jobs:
                    label = f"{what}, {_n(batch)}, {clients or 'no'} client" + \
                        "s" * (clients != 1)
                    meta[label] = {"what": what, "headlines": batch, "clients": clients or "-"}
                    runs.setdefault(label, []).append(job())
                    print(f"{name}: round {round_ + 1}: {label}: "
                          f"{_fmt(summary(runs[label][-1:]))}", flush=True)
        finally:
            code = server.stop()
            log = server.log.read_text(errors="replace")
        if code != 0 or "Traceback" in log:
            raise RuntimeError(f"manset-serve exited {code}:\n{log[-3000:]}")
    cells = {label: {**meta[label], **summary(r)} for label, r in runs.items()}
    service = next(c for c in cells.values()
                   if c["what"].startswith("POST") and c["headlines"] == 1 and c["clients"] == 1)
    bare1 = next(c for c in cells.values() if c["what"].startswith("bare") and c["headlines"] == 1)
    added = service["p50_ms"]["median"] - bare1["p50_ms"]["median"]
    rounds = [s["p50_ms"] - b["p50_ms"] for s, b in zip(service["runs"], bare1["runs"],
                                                        strict=True)]
    return {"bundle": str(bundle), "cells": cells, "added_p50_ms": added,
            "added_p50_ms_per_round": rounds}


def _n(batch: int) -> str:
    return f"{batch} headline{'s' * (batch != 1)}" if batch else "no body"


def _fmt(cell: dict[str, Any]) -> str:
    r, p50, p99 = cell["rps"], cell["p50_ms"], cell["p99_ms"]
    return (f"{r['median']:,.0f}/s ({r['min']:,.0f}-{r['max']:,.0f}), p50 {p50['median']:.3f} ms "
            f"({p50['min']:.3f}-{p50['max']:.3f}), p99 {p99['median']:.3f} ms "
            f"({p99['min']:.3f}-{p99['max']:.3f})")


def table(results: dict[str, Any]) -> str:
    """Median of the repeats, (min-max) after it."""
    lines = ["| model | request | headlines per request | clients | requests/s | headlines/s "
             "| p50 ms | p99 ms |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, res in results.items():
        for cell in res["cells"].values():
            r, p50, p99 = cell["rps"], cell["p50_ms"], cell["p99_ms"]
            per = f"{r['median'] * cell['headlines']:,.0f}" if cell["headlines"] else "-"
            lines.append(
                f"| {name} | {cell['what']} | {cell['headlines'] or '-'} | {cell['clients']} | "
                f"{r['median']:,.0f} ({r['min']:,.0f}-{r['max']:,.0f}) | {per} | "
                f"{p50['median']:.3f} ({p50['min']:.3f}-{p50['max']:.3f}) | "
                f"{p99['median']:.3f} ({p99['min']:.3f}-{p99['max']:.3f}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, default=ROOT / "models" / "category" / "champion",
                    help="A TF-IDF bundle folder [models/category/champion]")
    ap.add_argument("--bert-bundle", type=Path, default=None,
                    help="A BERT (ONNX) bundle folder; skipped when not given or absent")
    ap.add_argument("--int8", action="store_true",
                    help="BERT: the bundle's int8 ONNX model, in process and in the service")
    ap.add_argument("--seconds", type=float, default=5.0, help="Per cell and repeat [5]")
    ap.add_argument("--requests", type=int, default=2000, help="Per cell and repeat [2000]")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--client", choices=sorted(CLIENTS), default="raw")
    ap.add_argument("--serve-args", nargs=argparse.REMAINDER, default=[],
                    help="Passed on to manset-serve (last on the line)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "serve.json")
    args = ap.parse_args(argv)
    if not (args.bundle / "manifest.json").is_file():
        print(f"no bundle at {args.bundle}: export one with `manset run`", file=sys.stderr)
        return 2
    texts = headlines(2048)
    load_before = os.getloadavg()
    results = {"tfidf": bench_bundle("tfidf", args.bundle, args, texts)}
    notes = []
    if args.bert_bundle is None:
        notes.append("BERT: skipped (no --bert-bundle given)")
    elif not (args.bert_bundle / "manifest.json").is_file():
        notes.append(f"BERT: skipped ({args.bert_bundle} is not a bundle on this machine)")
    else:
        results["bert"] = bench_bundle("bert", args.bert_bundle, args, texts)
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
            "python": platform.python_version(), "client": args.client,
            "seconds": args.seconds, "requests": args.requests, "repeats": args.repeats,
            "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]}}
    print(f"\n{meta['date']}; {meta['machine']}; Python {meta['python']}; client {args.client}; "
          f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    print()
    print(table(results))
    for name, res in results.items():
        print(f"\n{name}: the service adds {res['added_p50_ms']:.3f} ms p50 over the bare "
              "predictor for one headline (1 client); round by round: " +
              ", ".join(f"{x:.3f}" for x in res["added_p50_ms_per_round"]) + " ms")
    for note in notes:
        print(note)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results, "notes": notes},
                                   indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
