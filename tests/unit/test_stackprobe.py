"""files/stackprobe.py, the probe and the loop shared by stackctl.py and wait-for-services.py,
against real sockets on loopback (bounded in time)."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stackdeploy import FILES_DIR

sys.path.insert(0, str(FILES_DIR))
import stackprobe  # noqa: E402 - the shipped module, as the helpers import it

sys.path.remove(str(FILES_DIR))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_port() -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = {"/health": 200, "/down": 503}.get(self.path, 404)
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b'{"checks": {"postgres": "down"}}' if status == 503 else b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port
    server.shutdown()


def test_an_answering_port_is_ready_and_a_closed_one_says_why():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert stackprobe.not_ready("127.0.0.1", server.getsockname()[1], None) is None
    port = closed_port()
    assert stackprobe.not_ready("127.0.0.1", port, None).startswith(f"127.0.0.1:{port} not answering: ")


def test_http_needs_a_200_and_quotes_the_refusal(http_port):
    assert stackprobe.not_ready("127.0.0.1", http_port, "/health") is None
    assert stackprobe.not_ready("127.0.0.1", http_port, "/health", tcp=False) is None
    assert stackprobe.not_ready("127.0.0.1", http_port, "/down") == (
        'GET /down answered 503: {"checks": {"postgres": "down"}}')
    assert stackprobe.not_ready("127.0.0.1", http_port, "/nothing").startswith("GET /nothing answered 404")


def test_a_server_that_never_answers_is_not_ready_within_the_timeout(monkeypatch):
    monkeypatch.setattr(stackprobe, "HTTP_TIMEOUT", 0.3)
    with socket.socket() as server:  # accepts (the kernel's backlog), never answers
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        reason = stackprobe.not_ready("127.0.0.1", server.getsockname()[1], "/health")
    assert "not answering" in reason and "timed out" in reason  # its own timeout ended it


def test_poll_waits_for_each_check_until_ready_fatal_or_past_its_deadline():
    calls = {"late": 0}

    def late() -> str | None:
        calls["late"] += 1
        return None if calls["late"] >= 3 else "starting"

    now = time.monotonic()
    ready, failed = stackprobe.poll(
        {"up": lambda: None, "late": late, "down": lambda: "refused", "crashed": lambda: "refused"},
        {"up": now + 5, "late": now + 5, "down": now + 0.5, "crashed": now + 5},
        fatal=lambda key: "container exited" if key == "crashed" else None)
    assert set(ready) == {"up", "late"} and ready["up"] < ready["late"]
    assert calls["late"] == 3  # polled every POLL_SECONDS, not once more after it was ready
    assert failed == {"down": "not ready within 0s: refused", "crashed": "container exited"}
