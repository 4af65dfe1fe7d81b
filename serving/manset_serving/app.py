"""The FastAPI app of manset-serve: the routes, their OpenAPI document, and the answers to
POST /v1/classify and /invocations. The champions it serves are watch.py's (reloaded when a new
one is exported), the error shapes answers.py's; front.py answers /v1/classify before FastAPI
in the running server, with the same handler."""

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import ClientDisconnect

from manset_serving.answers import Answer, invalid, not_utf8, reject, reply
from manset_serving.front import read_body
from manset_serving.inputs import InputError, check_texts
from manset_serving.observe import Metrics
from manset_serving.scoring import mlflow_inputs
from manset_serving.settings import Settings
from manset_serving.watch import INLINE_HEADLINES, Loaded, Registry

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
            body = await read_body(request.scope, request.receive, settings.max_body)
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
            body = await read_body(request.scope, request.receive, settings.max_body)
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
            return reject(422, ("tasks",), "empty; name at least one task or leave tasks out")
        tasks = asked if asked is not None else sorted(current)
        if not tasks:
            return reject(503, (), f"no model is loaded: {registry.not_ready()}", "not_ready")
        for i, task in enumerate(tasks):
            if task not in current:
                errors = registry.errors_now()
                why = f": {errors[task]}" if task in errors else ""
                return reject(503 if task in errors else 422, ("tasks", i),
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
                return reject(500, (), f"the model failed: {registry.public(str(e))}",
                              "model_error")
            for t, x in chosen.items():
                metrics.answers(t, out[t], x.unsure_below)
            return reply(200, shape(out), len(texts))

        guess = [x.small_call_seconds for x in chosen.values()]
        if len(texts) <= INLINE_HEADLINES and None not in guess and \
                sum(g or 0 for g in guess) < settings.inline_ms / 1000:
            return run()  # less work than the hop to a worker thread and back
        return await anyio.to_thread.run_sync(run, limiter=limiter)

    async def answer(body: bytes | None) -> Answer:
        """POST /v1/classify: the status and JSON body for a request body (None: too long)."""
        if body is None:
            return reject(413, (), f"over {settings.max_body} bytes", "too_large")
        try:
            req = ClassifyRequest.model_validate_json(body)
        except ValidationError as e:
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as bad:
                return not_utf8(body, bad)
            try:  # JSON that Python reads and pydantic does not: a lone surrogate ("\ud800"),
                # which check_texts then names by its headline
                req = ClassifyRequest.model_validate(json.loads(body))
            except (ValueError, RecursionError):  # ValidationError is a ValueError
                return invalid(e)
        if req.headlines is not None and req.inputs is not None:
            return reject(422, ("inputs",), "give headlines or inputs, not both")
        name, given = ("inputs", req.inputs) if req.inputs is not None else \
            ("headlines", req.headlines)
        if given is None:
            return reject(422, ("headlines",), "Field required (or give inputs)", "missing")
        if len(given) > settings.max_batch:
            return reject(413, (name,), f"{len(given)} headlines, at most "
                                       f"{settings.max_batch} per request", "too_large")
        try:
            texts = check_texts(given, settings.max_chars, settings.max_batch, field=name)
        except InputError as e:  # its message already starts with the item, headlines[i]
            return reply(422, {"detail": [{"type": "value_error", "loc": ["body", name],
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
            return reply(status, {"error_code": "INVALID_PARAMETER_VALUE" if status < 500 else
                                  "TEMPORARILY_UNAVAILABLE", "message": message})

        if body is None:
            return bad(413, f"body over {settings.max_body} bytes")
        try:
            doc = json.loads(body)
            texts, task = mlflow_inputs(doc)
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
