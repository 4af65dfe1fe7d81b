"""The HTTP service: the champion bundle of every exported task behind one JSON API.

    manset-serve --models models --host 127.0.0.1 --port 8000

POST /v1/classify {"headlines": [...], "tasks": ["category", "topic"]} → one result per headline,
in order, and the model of each task; POST /invocations, MLflow's scoring format. GET /healthz
(the process is up), /readyz (a model is loaded), /v1/models, /metrics (Prometheus); OpenAPI at
/docs and /openapi.json. This file runs it (uvicorn, signals, the command line); beside it:
app.py (the FastAPI app and its handlers), front.py (POST /v1/classify before FastAPI),
watch.py (the champions, reloaded), answers.py (the JSON answers and errors), scoring.py
(MLflow's input shapes), protocol.py (the bounds on a request), observe.py (metrics, access
log), settings.py (every option).

Models are read from <models>/<task>/champion/ and re-read when a new champion is exported there
(checked every `reload_seconds`): the new bundle is fully checked before it replaces the old one,
and a missing, half-written or corrupt bundle leaves the old one serving. Predictions run on a
bounded pool of threads (numpy and onnxruntime release the GIL), so a slow batch does not stall
health checks; only a few headlines whose model answered them in under `inline_ms` last
time run on the event loop itself, since the hop to a thread and back costs as much (0.1-0.5
ms). On SIGTERM uvicorn finishes the requests in flight, then the process exits 0.
"""

import argparse
import dataclasses
import os
import signal
from dataclasses import fields
from pathlib import Path
from typing import Any

from manset_serving.app import create_app
from manset_serving.front import Front
from manset_serving.observe import start_access_log
from manset_serving.protocol import bounded
from manset_serving.settings import MAX_HEAD, Settings


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
    uvicorn.run(Front(create_app(settings), settings.access_log), host=settings.host,
                port=settings.port,
                log_level="warning",
                access_log=False, timeout_graceful_shutdown=10, http=bounded(settings),
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
