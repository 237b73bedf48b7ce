"""The load generator's client behaviour, against a loopback server that hangs up on every
request: a keep-alive client retries a closed connection once only when asked to."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from benchmarks.loadgen import HttpLoad


@pytest.fixture
def hangs_up() -> Iterator[str]:
    """An HTTP server on loopback that reads each request and closes without an answer."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(2)
                with contextlib.suppress(OSError):
                    connection.recv(65536)
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    listener.close()


@pytest.mark.parametrize("retry", [True, False])
def test_a_closed_keepalive_is_retried_only_when_asked(hangs_up, retry):
    load = HttpLoad(hangs_up, ["/health"], keepalive_clients=1, fresh_clients=0, rate=50, max_requests=5,
                    max_seconds=20, timeout=2, retry_closed_keepalive=retry)
    with load:
        load.wait(timeout=30)
    result = load.result
    assert result.total == 5 and result.failed == 5, result.summary()
    assert all("Server disconnected" in reason for _, _, reason in result.failures), result.failures
    assert result.retried_on_closed_keepalive == (5 if retry else 0)
