"""The apps' JSON log lines and request ids (files/common/stacklog.py, used by stackapp)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys

import httpx
import pytest

from stackdeploy import FILES_DIR

sys.path.insert(0, str(FILES_DIR / "common"))
import stacklog  # noqa: E402


def run_asgi(app, scope: dict, messages: list[dict]) -> list[dict]:
    """Drive an ASGI app with ``messages`` in; what it sent out."""
    sent: list[dict] = []
    incoming = list(messages)

    async def receive() -> dict:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def http_scope(path: str, query: bytes = b"", headers: list | None = None) -> dict:
    return {"type": "http", "method": "GET", "path": path, "query_string": query, "headers": headers or []}


async def answer(status: int, scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def logged(out: io.StringIO) -> list[dict]:
    return [json.loads(text) for text in out.getvalue().splitlines()]


def test_a_request_is_one_json_line_with_every_field():
    out = io.StringIO()
    app = stacklog.AccessLog(lambda s, r, se: answer(201, s, r, se), "creator-hub", out=out)
    run_asgi(app, http_scope("/uploads", headers=[(b"x-request-id", b"abc123")]), [])
    [entry] = logged(out)
    assert entry["service"] == "creator-hub" and entry["level"] == "info" and entry["event"] == "request"
    assert (entry["request_id"], entry["method"], entry["path"], entry["status"]) == ("abc123", "GET", "/uploads", 201)
    assert isinstance(entry["duration_s"], float) and entry["time"].endswith("Z")


def test_the_request_id_is_answered_back_and_made_when_missing():
    out = io.StringIO()
    app = stacklog.AccessLog(lambda s, r, se: answer(200, s, r, se), "auth-service", out=out)
    sent = run_asgi(app, http_scope("/verify"), [])
    answered = dict(sent[0]["headers"])[b"x-request-id"].decode()
    assert len(answered) == 32 and logged(out)[0]["request_id"] == answered


@pytest.mark.parametrize("given", ["a" * 65, "x\ny", 'a"b', "", "é"])
def test_a_forged_or_broken_request_id_is_replaced(given):
    assert stacklog.valid_request_id(given) != given


def test_no_query_string_and_no_header_is_ever_logged():
    out = io.StringIO()
    app = stacklog.AccessLog(lambda s, r, se: answer(200, s, r, se), "channel-service", out=out)
    run_asgi(app, http_scope("/history/general", b"token=SECRET", [(b"authorization", b"Bearer SECRET")]), [])
    assert "SECRET" not in out.getvalue() and "token" not in out.getvalue()


def test_health_checks_are_logged_only_when_they_fail():
    out = io.StringIO()
    run_asgi(stacklog.AccessLog(lambda s, r, se: answer(200, s, r, se), "x", out=out), http_scope("/health"), [])
    assert out.getvalue() == ""
    run_asgi(stacklog.AccessLog(lambda s, r, se: answer(503, s, r, se), "x", out=out), http_scope("/health"), [])
    assert logged(out)[0]["status"] == 503 and logged(out)[0]["level"] == "error"


def test_scrapes_are_quiet_too_and_a_path_ending_in_a_slash_quiets_what_is_under_it():
    out = io.StringIO()
    run_asgi(stacklog.AccessLog(lambda s, r, se: answer(200, s, r, se), "x", out=out), http_scope("/metrics"), [])
    monitor = stacklog.AccessLog(lambda s, r, se: answer(200, s, r, se), "stack-monitor",
                                 quiet_paths=frozenset({"/scrape/"}), out=out)
    run_asgi(monitor, http_scope("/scrape/creator-hub"), [])
    assert out.getvalue() == ""
    run_asgi(monitor, http_scope("/scraped"), [])
    assert logged(out)[0]["path"] == "/scraped"


def test_a_crash_is_logged_as_a_500_error():
    out = io.StringIO()

    async def crash(scope, receive, send):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run_asgi(stacklog.AccessLog(crash, "ai-engine", out=out), http_scope("/complete"), [])
    assert (logged(out)[0]["status"], logged(out)[0]["level"]) == (500, "error")


def test_a_websocket_is_one_line_when_it_closes_with_its_path_only():
    out = io.StringIO()

    async def socket(scope, receive, send):
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})

    scope = {"type": "websocket", "path": "/ws/general", "query_string": b"token=SECRET",
             "headers": [(b"x-request-id", b"ws-1")]}
    run_asgi(stacklog.AccessLog(socket, "channel-service", out=out), scope, [])
    [entry] = logged(out)
    assert (entry["method"], entry["path"], entry["status"], entry["request_id"]) == ("WEBSOCKET", "/ws/general",
                                                                                     101, "ws-1")


def test_calls_made_while_handling_a_request_carry_its_id():
    """What creator-hub -> auth-service and channel-service -> ai-engine rely on: the client
    stackapp builds (event hook) adds the id of the request being handled."""
    seen: list[str | None] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-request-id"))
        return httpx.Response(200, json={})

    async def app(scope, receive, send):
        async with httpx.AsyncClient(transport=httpx.MockTransport(upstream),
                                     event_hooks={"request": [stacklog.add_request_id]}) as client:
            await client.get("http://auth-service:8001/verify")
        await answer(200, scope, receive, send)

    run_asgi(stacklog.AccessLog(app, "creator-hub", out=io.StringIO()),
             http_scope("/uploads", headers=[(b"x-request-id", b"follow-me")]), [])
    assert seen == ["follow-me"]
    assert stacklog.outgoing_headers() == {}  # reset once the request is over


def test_python_logging_goes_out_as_the_same_json_lines():
    formatter = stacklog.JsonFormatter("auth-service")
    record = logging.LogRecord("uvicorn.error", 40, __file__, 1, "worker %s died", ("3",), None)
    entry = json.loads(formatter.format(record))
    assert (entry["service"], entry["level"], entry["message"]) == ("auth-service", "error", "worker 3 died")


@pytest.fixture
def python_logging_restored():
    """stackapp routes Python logging to its JSON lines: put pytest's handlers back after."""
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
             for name in ("", "uvicorn", "uvicorn.error")}
    yield
    for name, (handlers, propagate) in saved.items():
        logging.getLogger(name).handlers, logging.getLogger(name).propagate = handlers, propagate


def test_stackapp_uses_the_request_id_client_and_the_access_log(python_logging_restored, monkeypatch):
    """stackapp itself needs FastAPI (in the images, and in requirements-dev.txt at their version)."""
    monkeypatch.setenv("AUTH_SERVICE_URL", "http://auth-service:8001")
    import stackapp  # after its environment is set

    seen: list[str | None] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-request-id"))
        return httpx.Response(200, json={"user_id": 1, "username": "u"})

    backends = stackapp.Backends()
    backends.http = stackapp.http_client(transport=httpx.MockTransport(upstream))
    app = stackapp.create_app("creator-hub", backends)

    @app.get("/me")
    async def me() -> dict:
        return await backends.current_user("Bearer t")

    from fastapi.testclient import TestClient

    client = TestClient(app)  # no lifespan: the backends above stay as set
    response = client.get("/me", headers={"X-Request-ID": "hub-1"})
    assert response.headers["x-request-id"] == "hub-1" and seen == ["hub-1"]
