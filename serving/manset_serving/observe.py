"""What the service tells its operators: Prometheus metrics (GET /metrics) and an access log of
one JSON line per request, so that a newsroom sees load, latency and drift (the share of each
label, and of answers the model is not sure of) without reading the service's code."""

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

ROUTES = frozenset({"/v1/classify", "/invocations", "/healthz", "/readyz", "/v1/models",
                    "/metrics", "/docs", "/openapi.json"})

access = logging.getLogger("manset_serving.access")


def route(path: str) -> str:
    """A known route, else "other": a client's made-up paths never become metric labels."""
    return path if path in ROUTES else "other"


class Metrics:
    """The service's metrics, in a registry of its own (one per app, so apps in one process do
    not share counts)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("manset_requests", "HTTP requests by route and status.",
                                ["route", "status"], registry=self.registry)
        self.seconds = Histogram("manset_request_seconds", "Time from the first byte of a "
                                 "request read to its answer sent, by route.", ["route"],
                                 registry=self.registry)
        self.headlines = Counter("manset_headlines", "Headlines answered, by task and top "
                                 "label (the best guess, also when the answer abstains).",
                                 ["task", "label"], registry=self.registry)
        self.unsure = Counter("manset_unsure_answers", "Answers whose top probability is under "
                              "the bundle's abstention threshold, whether or not the service "
                              "abstains: a rising share means headlines unlike the training "
                              "data.", ["task"], registry=self.registry)

    def request(self, path: str, status: int, seconds: float) -> None:
        self.requests.labels(route(path), str(status)).inc()
        self.seconds.labels(route(path)).observe(seconds)

    def answers(self, task: str, rows: Iterable[dict[str, Any]], below: float | None) -> None:
        for row in rows:
            top = max(row["probabilities"], key=row["probabilities"].__getitem__)
            self.headlines.labels(task, top).inc()
            if below is not None and row["score"] < below:
                self.unsure.labels(task).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def log_request(method: str, path: str, status: int, headlines: int, seconds: float) -> None:
    access.info(json.dumps({
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "method": method[:10],
        "route": route(path), "status": status, "headlines": headlines,
        "ms": round(seconds * 1000, 2)}))


def start_access_log() -> None:
    """The access log on stderr, one JSON line per request, as a container's log driver wants."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
