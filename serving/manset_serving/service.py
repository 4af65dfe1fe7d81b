"""The HTTP service: the champion bundle of every exported task behind one JSON API.

    manset-serve --models models --host 127.0.0.1 --port 8000

POST /v1/classify {"headlines": [...], "tasks": ["category", "topic"]} → one result per headline,
in order, and the model of each task. GET /healthz (the process is up), /readyz (a model is
loaded), /v1/models; OpenAPI at /docs and /openapi.json.

Models are read from <models>/<task>/champion/ and re-read when a new champion is exported there
(checked every `reload_seconds`): the new bundle is fully checked before it replaces the old one,
and a missing, half-written or corrupt bundle leaves the old one serving. Predictions run on a
bounded pool of threads (numpy and onnxruntime release the GIL), so a slow batch does not stall
health checks; only a few headlines whose model answered them in under `inline_ms` last
time run on the event loop itself, since the hop to a thread and back costs as much (0.1-0.5
ms). On SIGTERM uvicorn finishes the requests in flight, then the process exits 0.
"""

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from manset_serving.bundle import Bundle
from manset_serving.champion import CHAMPION, RECORD, champion_dir, record
from manset_serving.inputs import InputError, check_texts
from manset_serving.models import Model, has_int8, load
from manset_serving.settings import MAX_HEAD, MAX_HEADERS, Settings

INLINE_HEADLINES = 8  # at most this many headlines may be predicted on the event loop

log = logging.getLogger("manset_serving.service")


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    headlines: list[str] = Field(description="Headlines to classify, in order.",
                                 examples=[["Merkez Bankası faiz kararını açıkladı"]])
    tasks: list[str] | None = Field(None, description="Tasks to run [default: every exported "
                                                      "task].", examples=[["category"]])


class Prediction(BaseModel):
    label: str | None = Field(description="null when the service abstains (--abstain): the "
                                          "probabilities still hold the best guess")
    name: dict[str, str] | None = Field(None, description="{en, tr} when labels are codes")
    probabilities: dict[str, float]


class ClassifyResponse(BaseModel):
    results: list[dict[str, Prediction]] = Field(description="One per headline: task → result")
    models: dict[str, dict[str, Any]] = Field(description="task → model, version, run id")


def _request_schema(settings: Settings) -> dict[str, Any]:
    """ClassifyRequest's JSON schema with this service's limits, for the OpenAPI document (the
    handler checks them itself, to answer 413 for a batch over the limit and name the item)."""
    schema = ClassifyRequest.model_json_schema()
    schema["properties"]["headlines"].update(
        minItems=1, maxItems=settings.max_batch,
        items={"type": "string", "minLength": 1, "maxLength": settings.max_chars,
               "pattern": r"\S"})
    return schema


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
            with self._lock:
                self.loaded[task] = Loaded(model, None, sig)
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


def _where(loc: tuple | list) -> str:
    """('headlines', 3) → 'headlines[3]'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


Answer = tuple[int, bytes]  # status, JSON body


def _json(status: int, payload: object) -> Answer:
    # compact separators: a third less time in the encoder for a batch (floats are most of it);
    # NaN is not JSON: a model that gave one is an error (Model.rows), never an answer
    return status, json.dumps(payload, ensure_ascii=False, separators=(",", ":"),
                              allow_nan=False).encode()


def _error(status: int, loc: tuple | list, message: str, kind: str = "value_error") -> Answer:
    """FastAPI's error shape, {"detail": [{"type", "loc": ["body", ...], "msg"}]}, with the
    field also named at the start of msg."""
    return _json(status, {"detail": [{"type": kind, "loc": ["body", *loc],
                                      "msg": f"{_where(loc)}: {message}"}]})


def _invalid(e: ValidationError) -> Answer:
    errors = e.errors(include_url=False, include_context=False, include_input=False)
    return _json(422, {"detail": [{"type": x["type"], "loc": ["body", *x["loc"]],
                                   "msg": f"{_where(x['loc'])}: {x['msg']}"} for x in errors]})


def _not_utf8(body: bytes, e: UnicodeDecodeError) -> Answer:
    """A body that is not UTF-8: name the headline (or task) that holds the bad bytes when the
    rest of it is JSON."""
    try:
        doc = json.loads(body.decode("utf-8", "surrogateescape"))
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        for key in ("headlines", "tasks"):
            items = doc.get(key)
            for i, x in enumerate(items if isinstance(items, list) else []):
                if isinstance(x, str) and any("\udc80" <= c <= "\udcff" for c in x):
                    return _error(422, (key, i), "not valid UTF-8 text", "unicode_error")
    return _error(422, (), f"not valid UTF-8 (byte {e.start})", "unicode_error")


async def _body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The request body, or None once it passes `limit` bytes (read no further)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            return None
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: the client went away
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class _Front:
    """POST /v1/classify answered straight from the ASGI server, everything else passed on to
    the FastAPI app (which documents the route and answers it too, for in-process clients).
    FastAPI's routing, middleware and request objects cost about 0.1 ms a request, a tenth of
    the whole budget for one headline."""

    def __init__(self, app: FastAPI):
        self.app = app
        self.answer: Callable[[bytes | None], Awaitable[Answer]] = app.state.answer
        self.limit: int = app.state.settings.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/classify" or \
                scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            body = await _body(scope, receive, self.limit)
        except ClientDisconnect:
            return  # no one to answer
        status, data = await self.answer(body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})


def create_app(settings: Settings) -> FastAPI:
    registry = Registry(settings.models, settings.int8, settings.abstain)
    limiter = anyio.CapacityLimiter(settings.threads)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(settings.reload_seconds):
            registry.refresh()

    async def lifespan(app: FastAPI):
        registry.refresh()
        watcher = threading.Thread(target=watch, name="manset-reload", daemon=True)
        watcher.start()
        yield
        stop.set()

    app = FastAPI(title="manset", version="1", lifespan=lifespan,
                  description="Turkish news headline classification (category and topic).")
    app.state.registry = registry
    app.state.settings = settings

    # async: these answer on the event loop, without a hop to a worker thread

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "No model loaded"}})
    async def readyz() -> JSONResponse:
        loaded = sorted(registry.snapshot())
        out: dict[str, Any] = {"ready": bool(loaded), "tasks": loaded,
                               "errors": registry.errors_now()}
        if not loaded:
            out["message"] = registry.not_ready()
        return JSONResponse(out, 200 if loaded else 503)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return registry.describe()

    @app.post(
        "/v1/classify", response_model=ClassifyResponse,
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": _request_schema(settings)}}}},
        responses={413: {"description": "Body or batch over the size limit"},
                   422: {"description": "Invalid request: the message names the field"},
                   503: {"description": "No model loaded for a requested task"}})
    async def classify(request: Request) -> Response:
        try:
            body = await _body(request.scope, request.receive, settings.max_body)
        except ClientDisconnect:
            return Response(status_code=400)  # no one reads it
        status, data = await answer(body)
        return Response(data, status, media_type="application/json")

    async def answer(body: bytes | None) -> Answer:
        """POST /v1/classify: the status and JSON body for a request body (None: too long)."""
        if body is None:
            return _error(413, (), f"over {settings.max_body} bytes", "too_large")
        try:
            req = ClassifyRequest.model_validate_json(body)
        except ValidationError as e:
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as bad:
                return _not_utf8(body, bad)
            try:  # JSON that Python reads and pydantic does not: a lone surrogate ("\ud800"),
                # which check_texts then names by its headline
                req = ClassifyRequest.model_validate(json.loads(body))
            except (ValueError, RecursionError):  # ValidationError is a ValueError
                return _invalid(e)
        if len(req.headlines) > settings.max_batch:
            return _error(413, ("headlines",), f"{len(req.headlines)} headlines, at most "
                                               f"{settings.max_batch} per request", "too_large")
        try:
            texts = check_texts(req.headlines, settings.max_chars, settings.max_batch)
        except InputError as e:  # its message already starts with the item, headlines[i]
            return _json(422, {"detail": [{"type": "value_error", "loc": ["body", "headlines"],
                                           "msg": str(e)}]})
        current = registry.snapshot()
        if req.tasks is not None and not req.tasks:
            return _error(422, ("tasks",), "empty; name at least one task or leave tasks out")
        tasks = req.tasks if req.tasks is not None else sorted(current)
        if not tasks:
            return _error(503, (), f"no model is loaded: {registry.not_ready()}", "not_ready")
        for i, task in enumerate(tasks):
            if task not in current:
                errors = registry.errors_now()
                why = f": {errors[task]}" if task in errors else ""
                return _error(503 if task in errors else 422, ("tasks", i),
                              f"{task[:100]!r} is not a loaded task (loaded: {sorted(current)})"
                              + why)
        chosen = {t: current[t] for t in dict.fromkeys(tasks)}

        def run() -> Answer:  # the JSON too: for a batch it costs as much as the model
            try:
                out = {t: x.timed(texts) for t, x in chosen.items()}
            except Exception as e:  # a model fault: the client gets JSON, the log the details
                log.exception("classify failed")
                return _error(500, (), f"the model failed: {registry.public(str(e))}",
                              "model_error")
            return _json(200, {
                "results": [{t: out[t][i] for t in chosen} for i in range(len(texts))],
                "models": {t: {"model": x.model.family, "version": x.version,
                               "mlflow_run_id": x.model.bundle.run_id}
                           for t, x in chosen.items()}})

        guess = [x.small_call_seconds for x in chosen.values()]
        if len(texts) <= INLINE_HEADLINES and None not in guess and \
                sum(g or 0 for g in guess) < settings.inline_ms / 1000:
            return run()  # less work than the hop to a worker thread and back
        return await anyio.to_thread.run_sync(run, limiter=limiter)

    app.state.answer = answer
    return app


def _protocol(settings: Settings) -> type[asyncio.Protocol] | str:
    """uvicorn's httptools protocol with what a hostile client must not get: a request head over
    MAX_HEAD bytes is answered 431 and closed before it is buffered (httptools keeps a header
    line whole until it ends: 64 lines of 1 MiB each cost a GB), more than MAX_HEADERS lines
    400, and a request not received whole within request_seconds of its first byte 408 (a
    client sending its body a byte a minute would hold its connection forever). Without
    httptools, h11, which bounds the head itself."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "h11"

    def refuse(transport: asyncio.Transport, status: int, message: str) -> None:
        _, body = _error(status, (), message, "too_large" if status == 431 else "timeout")
        reason = {431: b"Request Header Fields Too Large", 408: b"Request Timeout"}[status]
        transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                        b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                        % (status, reason, len(body), body))
        transport.close()

    class Bounded(HttpToolsProtocol):
        head: int | None = 0  # bytes of the request head so far; None once it is complete
        timer: asyncio.TimerHandle | None = None

        def data_received(self, data: bytes) -> None:
            if self.timer is None:
                self.timer = self.loop.call_later(settings.request_seconds, self.too_slow)
            if self.head is not None:
                self.head += len(data)
            super().data_received(data)  # on_headers_complete sets head to None
            # still in the head: the parser holds at most MAX_HEAD and one read (<= 256 KiB)
            if self.head is not None and self.head > MAX_HEAD and \
                    not self.transport.is_closing():
                log.warning("%s: request head over %d bytes: closed", self.client, MAX_HEAD)
                refuse(self.transport, 431, f"request head over {MAX_HEAD} bytes")

        def on_header(self, name: bytes, value: bytes) -> None:
            if len(self.headers) >= MAX_HEADERS:
                raise ValueError(f"over {MAX_HEADERS} headers")  # httptools: 400 and closed
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self.head = None
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self.head = 0  # the next request on this connection starts its head
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            if self.timer is not None:
                self.timer.cancel()
            super().connection_lost(exc)

        def too_slow(self) -> None:
            self.timer = None
            log.warning("%s: request not received within %g s: closed", self.client,
                        settings.request_seconds)
            if self.head is None:  # in the body: self.cycle is this request's
                if self.cycle.response_started:  # answered already (a body over the limit)
                    self.transport.close()
                    return
                self.cycle.disconnected = True  # the app stops waiting for the body
                self.cycle.message_event.set()
            refuse(self.transport, 408,
                   f"request not received within {settings.request_seconds:g} s")

    return Bounded


def serve(settings: Settings) -> None:
    import uvicorn

    # uvicorn stops on SIGTERM or SIGINT, finishes the requests in flight, then raises the signal
    # again so that the handler it found ends the process; the default one would end it killed by
    # the signal (status 143). A stop is the normal way out, so that last signal does nothing and
    # the process exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    # http and loop stay "auto": httptools and uvloop when installed (uvicorn[standard]), which
    # take about 0.15 ms off every request; h11 and asyncio otherwise
    uvicorn.run(_Front(create_app(settings)), host=settings.host, port=settings.port,
                log_level="warning",
                access_log=False, timeout_graceful_shutdown=10, http=_protocol(settings),
                h11_max_incomplete_event_size=MAX_HEAD,
                limit_concurrency=settings.max_connections,
                # longer than the idle timeout of the proxies and balancers in front (60 s on
                # most), so they never send on a connection the service has just closed
                timeout_keep_alive=75)


def _option(f: dataclasses.Field) -> tuple[str, dict[str, Any]]:
    """A Settings field as an argparse option: its flag, type, default and help; a value out of
    its range is a usage error naming the range (a port of 73536 would otherwise be taken modulo
    65536, 0 threads hang every request)."""
    flag, bounds = "--" + f.name.replace("_", "-"), f.metadata.get("range")
    kind: type = type(f.default)
    if kind is bool:
        return flag, {"action": argparse.BooleanOptionalAction, "default": f.default,
                      "help": f.metadata["help"]}

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise argparse.ArgumentTypeError(f"{value} is outside {bounds[0]}-{bounds[1]}")
        return value

    return flag, {"type": parse, "default": f.default,
                  "help": f"{f.metadata['help']} [{f.default}]",
                  "metavar": "PATH" if issubclass(kind, Path) else kind.__name__.upper()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="manset-serve", description=__doc__.split("\n\n")[0])
    for f in fields(Settings):
        flag, kwargs = _option(f)
        ap.add_argument(flag, **kwargs)
    ap.set_defaults(models=Path(os.environ.get("MANSET_MODELS", "models")))
    serve(Settings(**vars(ap.parse_args(argv))))
