"""JSON log lines and request ids for the stack's Python services (stackapp and the monitor).

Copied into every Python image beside stackapp. Standard library only (httpx is imported by
the caller), so it can be tested without FastAPI.

- Every line on stdout is one JSON object: ``time``, ``level``, ``service``, ``request_id``
  and the fields of the event. A request's line adds ``method``, ``path`` (never the query
  string: a WebSocket's ``?token=`` must not be logged), ``status`` and ``duration_s``.
  No header is ever logged, so neither is ``Authorization``.
- The request id is the ``X-Request-ID`` the gateway sends (it makes one when the client sent
  none), kept in a context variable for the whole request or WebSocket, answered back in the
  response and sent on with every call this service makes to another (``outgoing_headers``,
  the httpx event hook ``add_request_id``). One request can then be followed across services.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any, TextIO

REQUEST_ID_HEADER = "X-Request-ID"
# What a request id may look like when it comes from outside: anything else (too long, a line
# break, quotes) is replaced by a fresh one, so a client cannot forge or break log lines.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")

request_id: ContextVar[str] = ContextVar("request_id", default="")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def now_iso() -> str:
    """UTC, milliseconds: lines of several services sort by it."""
    stamp = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp % 1 * 1000):03d}Z"


def valid_request_id(value: str | None) -> str:
    """``value`` when it is an acceptable request id, else a new one (32 hex digits, like nginx's)."""
    if value and REQUEST_ID_PATTERN.fullmatch(value):
        return value
    return uuid.uuid4().hex


def line(service: str, level: str, event: str, **fields: Any) -> str:
    """One log line: the common keys first, then ``fields`` (None values left out)."""
    entry = {"time": now_iso(), "level": level, "service": service, "request_id": request_id.get() or None,
             "event": event, **fields}
    return json.dumps({k: v for k, v in entry.items() if v is not None}, default=str)


def emit(service: str, level: str, event: str, out: TextIO | None = None, **fields: Any) -> None:
    print(line(service, level, event, **fields), file=out or sys.stdout, flush=True)


def outgoing_headers() -> dict[str, str]:
    """Headers to send on a call to another service: the current request's id, if any."""
    current = request_id.get()
    return {REQUEST_ID_HEADER: current} if current else {}


async def add_request_id(request: Any) -> None:
    """httpx request event hook: every outgoing call carries the current request id."""
    current = request_id.get()
    if current and REQUEST_ID_HEADER not in request.headers:
        request.headers[REQUEST_ID_HEADER] = current


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class AccessLog:
    """ASGI middleware: sets the request id for the request (or the WebSocket's whole life),
    answers it in ``X-Request-ID``, and logs one line when the request ends. ``quiet_paths``
    (the health checks, polled every second, and Prometheus's scrapes) are logged only when
    they fail; one ending in "/" quiets every path under it."""

    def __init__(self, app: ASGIApp, service: str, quiet_paths: frozenset[str] = frozenset({"/health", "/metrics"}),
                 out: TextIO | None = None) -> None:
        self.app = app
        self.service = service
        self.quiet_paths = quiet_paths
        self.out = out

    def quiet(self, path: str) -> bool:
        return path in self.quiet_paths or any(q.endswith("/") and path.startswith(q) for q in self.quiet_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = valid_request_id(_header(scope, b"x-request-id"))
        token = request_id.set(rid)
        started = time.monotonic()
        status: list[int] = []

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                if message["type"] == "http.response.start":
                    status.append(int(message["status"]))
                else:
                    status.append(101)
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "websocket.close" and not status:
                status.append(403)  # closed before it was accepted
            await send(message)

        level = "info"
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            status.append(500)
            level = "error"
            raise
        finally:
            code = status[0] if status else 500
            if code >= 500:
                level = "error"
            if not self.quiet(scope["path"]) or code >= 400:
                emit(self.service, level, "request", out=self.out,
                     method="WEBSOCKET" if scope["type"] == "websocket" else scope.get("method"),
                     path=scope["path"], status=code, duration_s=round(time.monotonic() - started, 4))
            request_id.reset(token)


class JsonFormatter(logging.Formatter):
    """Python logging records (uvicorn's own, errors with tracebacks) as the same JSON lines."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {"logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            fields["error"] = self.formatException(record.exc_info)
        return line(self.service, record.levelname.lower(), "log", **fields)


def configure_logging(service: str) -> None:
    """Route the root logger and uvicorn's loggers through ``JsonFormatter`` on stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    for name in ("", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
        if name == "":
            logger.setLevel(logging.INFO)
