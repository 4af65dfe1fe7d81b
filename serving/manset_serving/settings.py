"""The HTTP service's settings, apart from the service so that reading them costs no import of
FastAPI: manset-serve's options and `manset serve`'s are made from these fields (name, default,
help, range), so the two commands cannot drift apart."""

import os
from dataclasses import dataclass, field
from pathlib import Path

from manset_serving.bundle import INT8_PROMISE
from manset_serving.features import check_ranges
from manset_serving.inputs import MAX_CHARS

MAX_BATCH = 256  # headlines per request
MAX_BODY = 1 << 20  # bytes per request body
MAX_HEAD = 64 << 10  # bytes of a request line and headers (browsers send under 8 KiB)
MAX_HEADERS = 100  # header lines per request


@dataclass(frozen=True)
class Settings:
    """Every setting of the service, its help and its range (check_ranges)."""

    models: Path = field(default=Path("models"), metadata={
        "help": "Folder of exported tasks: <models>/<task>/champion/ (manset-serve: "
                "$MANSET_MODELS)."})
    host: str = field(default="127.0.0.1", metadata={
        "help": "Address to listen on (0.0.0.0: every interface)."})
    port: int = field(default=8000, metadata={"range": (1, 65535), "help": "Port to listen on."})
    threads: int = field(default=min(8, os.cpu_count() or 1), metadata={
        "range": (1, 1024), "help": "Predictions running at once (cores, at most 8)."})
    max_batch: int = field(default=MAX_BATCH, metadata={
        "range": (1, 100_000), "help": "Headlines per request."})
    max_chars: int = field(default=MAX_CHARS, metadata={
        "range": (1, 100_000), "help": "Characters per headline."})
    max_body: int = field(default=MAX_BODY, metadata={
        "range": (1, 1 << 30), "help": "Bytes per request body."})
    request_seconds: float = field(default=10.0, metadata={
        "range": (0.1, 3600),
        "help": "Time to receive a whole request from its first byte; a slower one is "
                "answered 408 and closed."})
    max_connections: int = field(default=256, metadata={
        "range": (1, 100_000),
        "help": "Connections open at once; more are answered 503 and closed."})
    reload_seconds: float = field(default=2.0, metadata={
        "range": (0.01, 86_400), "help": "How often champion/ is checked for a new bundle."})
    inline_ms: float = field(default=2.0, metadata={
        "range": (0, 1000),
        "help": "A call of a few headlines that took less last time runs on the event loop, "
                "not a worker thread; 0: always a thread."})
    access_log: bool = field(default=True, metadata={
        "help": "One JSON line per request on stderr: time, route, status, headlines, ms."})
    int8: bool = field(default=False, metadata={
        "help": f"Serve a BERT bundle's int8 ONNX model (faster, {INT8_PROMISE}) where the "
                "bundle kept one."})
    abstain: bool = field(default=False, metadata={
        "help": "Answer label null (\"not sure\") below each bundle's threshold, chosen on "
                "validation for the precision its config states."})

    def __post_init__(self) -> None:
        check_ranges(self)
