"""wait-for-services.py against real sockets on loopback (bounded in time)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "files" / "wait-for-services.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args: str, env: dict | None = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


@pytest.fixture
def tcp_port() -> Iterator[int]:
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def http_server(status: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_all_up_then_execs_the_command(tcp_port):
    server = http_server(200)
    try:
        result = run("--timeout", "5", f"db:tcp://127.0.0.1:{tcp_port}",
                     f"api:http://127.0.0.1:{server.server_port}/health", "--", "echo", "service started")
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    assert "db is up" in result.stdout and "api is up" in result.stdout
    assert result.stdout.rstrip().endswith("service started")


def test_names_every_target_that_never_came_up(tcp_port):
    closed = free_port()
    server = http_server(503)
    try:
        result = run("--timeout", "1", f"db:tcp://127.0.0.1:{tcp_port}", f"cache:tcp://127.0.0.1:{closed}",
                     f"api:http://127.0.0.1:{server.server_port}/health", "--", "echo", "must not run")
    finally:
        server.shutdown()
    assert result.returncode == 1
    assert "must not run" not in result.stdout
    assert "giving up on cache, api" in result.stderr
    assert "cache never came up" in result.stderr and "api never came up" in result.stderr
    assert "503" in result.stderr


def test_target_that_comes_up_late_is_waited_for():
    """The waiter starts while nothing listens (so a first refusal cannot end it), and succeeds
    once the listener comes: decided by order, not by timing."""
    port = free_port()
    waiter = subprocess.Popen([sys.executable, str(SCRIPT), "--timeout", "20", f"late:tcp://127.0.0.1:{port}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)  # pacing: let it meet a refused port first
        assert waiter.poll() is None, "it gave up on a port that was not listening yet"
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", port))
            server.listen(1)
            out, err = waiter.communicate(timeout=20)
    finally:
        waiter.kill()
    assert waiter.returncode == 0, err
    assert "late" in out  # it says when the target came up


def test_targets_from_environment_and_per_target_timeout(tcp_port):
    closed = free_port()
    env = {"WAIT_FOR": f"db:tcp://127.0.0.1:{tcp_port}, slow@0.5:tcp://127.0.0.1:{closed}", "PATH": "/usr/bin:/bin"}
    result = run("--timeout", "30", env=env)
    assert result.returncode == 1
    # Its own 0.5 s ended the wait, not the 30 s for every target.
    assert "slow never came up" in result.stderr and "within 0.5s" in result.stderr


def test_bad_target_is_rejected():
    result = run("db:postgres://x:1")
    assert result.returncode == 2
    assert "bad target" in result.stderr
