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
from typing import Any, NamedTuple

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from manset_serving.bundle import Bundle, BundleError
from manset_serving.champion import CHAMPION, RECORD, champion_dir, record
from manset_serving.inputs import InputError, check_texts
from manset_serving.models import Model, abstention_threshold, has_int8, load
from manset_serving.observe import Metrics, log_request, start_access_log
from manset_serving.settings import MAX_HEAD, MAX_HEADERS, Settings

INLINE_HEADLINES = 8  # at most this many headlines may be predicted on the event loop

log = logging.getLogger("manset_serving.service")


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    headlines: list[str] | None = Field(None, description="Headlines to classify, in order.",
                                        examples=[["Merkez Bankası faiz kararını açıkladı"]])
    inputs: list[str] | None = Field(None, description="The same as headlines, under the name "
                                     "Hugging Face and TEI clients send; give one of the two.")
    tasks: list[str] | None = Field(None, description="Tasks to run [default: every exported "
                                                      "task].", examples=[["category"]])


class Prediction(BaseModel):
    label: str | None = Field(description="null when the service abstains (--abstain): the "
                                          "probabilities still hold the best guess")
    name: dict[str, str] | None = Field(None, description="{en, tr} when labels are codes")
    score: float = Field(description="The top probability (that of label, or of the best guess "
                                     "when label is null)")
    probabilities: dict[str, float]


class ClassifyResponse(BaseModel):
    results: list[dict[str, Prediction]] = Field(description="One per headline: task → result")
    models: dict[str, dict[str, Any]] = Field(description="task → model, version, run id")


def _request_schema(settings: Settings) -> dict[str, Any]:
    """ClassifyRequest's JSON schema with this service's limits, for the OpenAPI document (the
    handler checks them itself, to answer 413 for a batch over the limit and name the item)."""
    schema = ClassifyRequest.model_json_schema()
    for name in ("headlines", "inputs"):
        schema["properties"][name] = {**schema["properties"][name], "type": "array",
                                      "minItems": 1, "maxItems": settings.max_batch,
                                      "items": {"type": "string", "minLength": 1,
                                                "maxLength": settings.max_chars,
                                                "pattern": r"\S"}}
        schema["properties"][name].pop("anyOf", None)
    schema["oneOf"] = [{"required": ["headlines"]}, {"required": ["inputs"]}]
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


def _where(loc: tuple | list) -> str:
    """('headlines', 3) → 'headlines[3]'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


class Answer(NamedTuple):
    status: int
    body: bytes  # JSON
    headlines: int = 0  # classified, for the access log


def _json(status: int, payload: object, headlines: int = 0) -> Answer:
    # compact separators: a third less time in the encoder for a batch (floats are most of it);
    # NaN is not JSON: a model that gave one is an error (Model.rows), never an answer
    return Answer(status, json.dumps(payload, ensure_ascii=False, separators=(",", ":"),
                                     allow_nan=False).encode(), headlines)


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

    def __init__(self, app: FastAPI, access_log: bool = True):
        self.app = app
        self.routes: dict[str, Callable[[bytes | None], Awaitable[Answer]]] = app.state.routes
        self.limit: int = app.state.settings.max_body
        self.metrics: Metrics = app.state.metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status, headlines = time.perf_counter(), 0, 0

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            handler = self.routes.get(scope["path"]) if scope["method"] == "POST" else None
            if handler is None:
                await self.app(scope, receive, sending)  # type: ignore[arg-type]
                return
            try:
                body = await _body(scope, receive, self.limit)
            except ClientDisconnect:
                return  # no one to answer
            status, data, headlines = await handler(body)
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(data)).encode())]})
            await send({"type": "http.response.body", "body": data})
        finally:
            took = time.perf_counter() - start
            self.metrics.request(scope["path"], status, took)
            if self.access_log:
                log_request(scope["method"], scope["path"], status, headlines, took)


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
    app.state.metrics = metrics = Metrics()

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
        status, data, _ = await answer(body)
        return Response(data, status, media_type="application/json")

    @app.post(
        "/invocations",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": {"type": "object", "description": "MLflow's scoring format: inputs, "
                       "instances, dataframe_split or dataframe_records (a text or title "
                       "column), and params.task [default: category]"}}}}},
        responses={400: {"description": "Invalid request, in MLflow's error shape"},
                   503: {"description": "No model loaded for the task"}})
    async def invocations_route(request: Request) -> Response:
        """MLflow's scoring route, answered as `mlflow models serve` answers for the same
        bundle's pyfunc: {"predictions": [one result per headline]}."""
        try:
            body = await _body(request.scope, request.receive, settings.max_body)
        except ClientDisconnect:
            return Response(status_code=400)
        status, data, _ = await invocations(body)
        return Response(data, status, media_type="application/json")

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics_route() -> Response:
        """Prometheus metrics: requests, latency, headlines per label, unsure answers."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    def chosen_tasks(asked: list[str] | None) -> dict[str, Loaded] | Answer:
        """The loaded models of the tasks asked for (None: every loaded task), or the error."""
        current = registry.snapshot()
        if asked is not None and not asked:
            return _error(422, ("tasks",), "empty; name at least one task or leave tasks out")
        tasks = asked if asked is not None else sorted(current)
        if not tasks:
            return _error(503, (), f"no model is loaded: {registry.not_ready()}", "not_ready")
        for i, task in enumerate(tasks):
            if task not in current:
                errors = registry.errors_now()
                why = f": {errors[task]}" if task in errors else ""
                return _error(503 if task in errors else 422, ("tasks", i),
                              f"{task[:100]!r} is not a loaded task (loaded: {sorted(current)})"
                              + why)
        return {t: current[t] for t in dict.fromkeys(tasks)}

    async def predict(texts: list[str], chosen: dict[str, Loaded],
                      shape: Callable[[dict[str, list[dict[str, Any]]]], object]) -> Answer:
        """The models' rows for `texts`, as the JSON `shape` makes of them."""
        def run() -> Answer:  # the JSON too: for a batch it costs as much as the model
            try:
                out = {t: x.timed(texts) for t, x in chosen.items()}
            except Exception as e:  # a model fault: the client gets JSON, the log the details
                log.exception("classify failed")
                return _error(500, (), f"the model failed: {registry.public(str(e))}",
                              "model_error")
            for t, x in chosen.items():
                metrics.answers(t, out[t], x.unsure_below)
            return _json(200, shape(out), len(texts))

        guess = [x.small_call_seconds for x in chosen.values()]
        if len(texts) <= INLINE_HEADLINES and None not in guess and \
                sum(g or 0 for g in guess) < settings.inline_ms / 1000:
            return run()  # less work than the hop to a worker thread and back
        return await anyio.to_thread.run_sync(run, limiter=limiter)

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
        if req.headlines is not None and req.inputs is not None:
            return _error(422, ("inputs",), "give headlines or inputs, not both")
        name, given = ("inputs", req.inputs) if req.inputs is not None else \
            ("headlines", req.headlines)
        if given is None:
            return _error(422, ("headlines",), "Field required (or give inputs)", "missing")
        if len(given) > settings.max_batch:
            return _error(413, (name,), f"{len(given)} headlines, at most "
                                       f"{settings.max_batch} per request", "too_large")
        try:
            texts = check_texts(given, settings.max_chars, settings.max_batch, field=name)
        except InputError as e:  # its message already starts with the item, headlines[i]
            return _json(422, {"detail": [{"type": "value_error", "loc": ["body", name],
                                           "msg": str(e)}]})
        chosen = chosen_tasks(req.tasks)
        if isinstance(chosen, Answer):
            return chosen
        return await predict(texts, chosen, lambda out: {
            "results": [{t: out[t][i] for t in chosen} for i in range(len(texts))],
            "models": {t: {"model": x.model.family, "version": x.version,
                           "mlflow_run_id": x.model.bundle.run_id}
                       for t, x in chosen.items()}})

    async def invocations(body: bytes | None) -> Answer:
        """POST /invocations: MLflow's scoring format for one task, errors in MLflow's shape."""
        def bad(status: int, message: str) -> Answer:  # as the pyfunc's MlflowException
            return _json(status, {"error_code": "INVALID_PARAMETER_VALUE" if status < 500 else
                                  "TEMPORARILY_UNAVAILABLE", "message": message})

        if body is None:
            return bad(413, f"body over {settings.max_body} bytes")
        try:
            doc = json.loads(body)
            texts, task = _mlflow_inputs(doc)
            texts = check_texts(texts, settings.max_chars, settings.max_batch)
        except RecursionError:
            return bad(400, "nested too deeply")
        except (ValueError, TypeError, KeyError) as e:  # InputError, JSONDecodeError: ValueErrors
            return bad(400, str(e))
        chosen = chosen_tasks([task])
        if isinstance(chosen, Answer):
            return bad(chosen.status, json.loads(chosen.body)["detail"][0]["msg"])
        return await predict(texts, chosen, lambda out: {"predictions": out[task]})

    app.state.routes = {"/v1/classify": answer, "/invocations": invocations}
    return app


def _mlflow_inputs(doc: object) -> tuple[object, str]:
    """The headlines and the task of an MLflow scoring request: {"inputs": [...]}, {"instances":
    [...]}, {"dataframe_split": {"columns", "data"}} or {"dataframe_records": [...]} (a text or
    title column, or the only one), with "params": {"task": ...} [category]."""
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON object with inputs, instances, dataframe_split or "
                         "dataframe_records")
    params = doc.get("params") or {}
    task = params.get("task", "category") if isinstance(params, dict) else None
    if not isinstance(task, str):
        raise ValueError("params.task must be a task name")
    keys = [k for k in ("inputs", "instances", "dataframe_split", "dataframe_records")
            if k in doc]
    if len(keys) != 1 or set(doc) - {keys[0], "params"}:
        raise ValueError("expected exactly one of inputs, instances, dataframe_split or "
                         f"dataframe_records (and params); got {sorted(doc)[:10]}")
    value = doc[keys[0]]
    if keys[0] in ("inputs", "instances"):
        if isinstance(value, dict):  # columns: {"text": [...]}
            value = value[_column(list(value))]
        return ([value] if isinstance(value, str) else value), task
    if keys[0] == "dataframe_split":
        columns = value.get("columns") if isinstance(value, dict) else None
        data = value.get("data") if isinstance(value, dict) else None
        if not isinstance(columns, list) or not isinstance(data, list) or \
                not all(isinstance(r, list) and len(r) == len(columns) for r in data):
            raise ValueError("dataframe_split needs columns and data rows of that length")
        at = columns.index(_column(columns))
        return [r[at] for r in data], task
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise ValueError("dataframe_records must be a list of objects")
    name = _column(sorted({k for r in value for k in r}))
    return [r.get(name) for r in value], task


def _column(columns: list) -> Any:
    """Which column holds the headlines: text, title, or the only one (as the pyfunc reads)."""
    found = next((c for c in ("text", "title") if c in columns), None)
    if found is None and len(columns) == 1:
        found = columns[0]
    if found is None:
        raise ValueError(f"the headlines need a 'text' or 'title' column; got {columns[:10]}")
    return found


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
        body = _error(status, (), message, "too_large" if status == 431 else "timeout").body
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
    if settings.access_log:
        start_access_log()
    uvicorn.run(_Front(create_app(settings), settings.access_log), host=settings.host,
                port=settings.port,
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
