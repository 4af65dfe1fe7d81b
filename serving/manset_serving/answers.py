"""The service's answers: a status and a JSON body; errors in FastAPI's shape, with the field
named at the start of the message (`headlines[3]: empty headline`)."""

import json
from typing import NamedTuple

from pydantic import ValidationError


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


def reply(status: int, payload: object, headlines: int = 0) -> Answer:
    # compact separators: a third less time in the encoder for a batch (floats are most of it);
    # NaN is not JSON: a model that gave one is an error (Model.rows), never an answer
    return Answer(status, json.dumps(payload, ensure_ascii=False, separators=(",", ":"),
                                     allow_nan=False).encode(), headlines)


def reject(status: int, loc: tuple | list, message: str, kind: str = "value_error") -> Answer:
    """FastAPI's error shape, {"detail": [{"type", "loc": ["body", ...], "msg"}]}, with the
    field also named at the start of msg."""
    return reply(status, {"detail": [{"type": kind, "loc": ["body", *loc],
                                      "msg": f"{_where(loc)}: {message}"}]})


def invalid(e: ValidationError) -> Answer:
    errors = e.errors(include_url=False, include_context=False, include_input=False)
    return reply(422, {"detail": [{"type": x["type"], "loc": ["body", *x["loc"]],
                                   "msg": f"{_where(x['loc'])}: {x['msg']}"} for x in errors]})


def not_utf8(body: bytes, e: UnicodeDecodeError) -> Answer:
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
                    return reject(422, (key, i), "not valid UTF-8 text", "unicode_error")
    return reject(422, (), f"not valid UTF-8 (byte {e.start})", "unicode_error")
