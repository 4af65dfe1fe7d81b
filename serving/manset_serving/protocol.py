"""The HTTP protocol the service runs: uvicorn's httptools protocol, bounded against hostile
clients."""

import asyncio
import logging

from manset_serving.answers import reject
from manset_serving.settings import MAX_HEAD, MAX_HEADERS, Settings

log = logging.getLogger("manset_serving.service")


def bounded(settings: Settings) -> type[asyncio.Protocol] | str:
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

    def close_with(transport: asyncio.Transport, status: int, message: str) -> None:
        body = reject(status, (), message, "too_large" if status == 431 else "timeout").body
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
                close_with(self.transport, 431, f"request head over {MAX_HEAD} bytes")

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
            close_with(self.transport, 408,
                       f"request not received within {settings.request_seconds:g} s")

    return Bounded
