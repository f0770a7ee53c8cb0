"""HTTP limits shared by the model server and the rollback controller.

uvicorn gives most of them as settings: at most `limit_concurrency` connections + in-flight
requests (more are answered 503 at once), the accept `backlog`, and idle keep-alive connections
closed after `keep_alive_s`. What it lacks is a deadline for a request's headers and a header size
limit with its httptools parser: a client that opens connections and dribbles bytes (slowloris)
holds them, and their file descriptors and concurrency slots, forever. `HttpLimits.protocol()`
subclasses uvicorn's httptools protocol to add both (408 / 431, then close), and a deadline for a
request body that arrives in pieces (408).
"""

from __future__ import annotations

from dataclasses import dataclass

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kdflow.redact import install_log_filter

_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


@dataclass(frozen=True)
class HttpLimits:
    header_timeout_s: float = 5.0       # request line + headers must arrive within this (from the first byte,
                                        # or from the connection's opening)
    body_timeout_s: float = 10.0        # the whole body must arrive within this once its headers are in
    max_header_bytes: int = 16 * 1024   # request line + headers (uvicorn's h11 default; nginx uses 8-32 KiB)
    limit_concurrency: int = 1024       # connections + in-flight requests; beyond: 503 at once
    backlog: int = 2048                 # pending connections the kernel queues before accept
    keep_alive_s: float = 5.0           # idle keep-alive connections are closed after this

    def protocol(self) -> type[HttpToolsProtocol]:
        return type("GuardedHttpToolsProtocol", (_Guarded,),
                    {"header_timeout_s": self.header_timeout_s, "body_timeout_s": self.body_timeout_s,
                     "max_header_bytes": self.max_header_bytes})

    def uvicorn_kwargs(self) -> dict:
        return {"http": self.protocol(), "limit_concurrency": self.limit_concurrency, "backlog": self.backlog,
                "timeout_keep_alive": self.keep_alive_s}


def uvicorn_config(app, host: str, port: int, limits: HttpLimits, log_level: str) -> uvicorn.Config:
    """uvicorn with kdflow's HTTP limits (the tests serve through the same config)."""
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          timeout_graceful_shutdown=10, **limits.uvicorn_kwargs())


def run_uvicorn(config: uvicorn.Config) -> int:
    """Serve until stopped; the process exit code."""
    install_log_filter()  # after uvicorn.Config: it (re)configures its loggers
    server = uvicorn.Server(config)
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits on startup failures such as a port in use
        return int(exc.code or 1)
    return 0 if server.started else 1


class _Guarded(HttpToolsProtocol):
    """Deadlines cost a timer only when a request arrives in pieces: a request whose headers and body come
    in one read (the usual case) never arms one, so the hot path pays a few attribute checks."""

    header_timeout_s = 5.0
    body_timeout_s = 10.0
    max_header_bytes = 16 * 1024

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer = None
        self._partial = False      # a request has begun and its headers are not complete
        self._await_headers()
        self._arm(self.header_timeout_s)  # a fresh connection must send its request in time

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting:
            end = (self._tail + data).find(b"\r\n\r\n")  # header bytes only: the chunk may carry body bytes
            self._header_bytes += len(data) if end < 0 else max(0, end + 4 - len(self._tail))
            if self._header_bytes > self.max_header_bytes:
                self._refuse(_TOO_LARGE)
                return
            self._tail = data[-3:]
        super().data_received(data)
        if self._timer is None:
            cycle = self.cycle
            if self._partial:
                self._arm(self.header_timeout_s)
            elif cycle is not None and cycle.more_body and not cycle.response_complete:
                self._arm(self.body_timeout_s)  # the body comes in pieces: all of it within the deadline

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting = self._partial = True

    def on_headers_complete(self) -> None:
        self._awaiting = self._partial = False
        self._disarm()
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not before:  # a new request's cycle (not an upgrade): its response leaves in one write
            self.cycle.transport = _OneWrite(self.transport)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._await_headers()  # the next request's bytes count from the first one (uvicorn's keep-alive
        if self._partial:      # timer closes the connection if none come); a pipelined one already began
            self._arm(self.header_timeout_s)

    def _await_headers(self) -> None:
        self._awaiting, self._header_bytes, self._tail = True, 0, b""

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._refuse, _TIMEOUT)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _refuse(self, response: bytes) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:  # never inside a response
            self.transport.write(response)
        self.transport.close()


_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _OneWrite:
    """The transport as one response cycle sees it: the status line and headers (its first write other
    than a 100 Continue) wait for the body and leave with it in one write, one syscall and one TCP
    segment instead of two (the client wakes once)."""

    __slots__ = ("_transport", "_head", "_started")

    def __init__(self, transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._started = False

    def write(self, data: bytes) -> None:
        if not self._started and data != _CONTINUE:
            self._started = True
            self._head = data
            return
        if self._head is not None:
            data, self._head = self._head + data, None
        self._transport.write(data)

    def close(self) -> None:
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()
