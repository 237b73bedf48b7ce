"""An app's /health: deep for readiness, shallow for the services that depend on it."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from fastapi.testclient import TestClient

from stackdeploy import FILES_DIR

sys.path.insert(0, str(FILES_DIR / "common"))
import stackapp  # noqa: E402


class Dependency(BaseHTTPRequestHandler):
    """A dependency whose own dependencies are down: its deep /health answers 503."""

    seen: list[str] = []

    def do_GET(self) -> None:  # http.server's name
        Dependency.seen.append(self.path)
        status = 200 if "shallow=true" in self.path else 503
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(autouse=True)
def no_signal_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    """TestClient runs the app off the main thread, where no signal handler can be set."""
    monkeypatch.setattr(stackapp, "close_sockets_on_sigterm", lambda _backends: None)


@pytest.fixture
def dependency() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Dependency)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/health"
    server.shutdown()


def test_a_dependency_is_asked_only_whether_it_is_up(dependency):
    app = stackapp.create_app("svc", stackapp.Backends(), http_checks={"dep": dependency})
    with TestClient(app) as client:
        response = client.get("/health")
    assert response.status_code == 200, response.text  # its own dependencies are its business
    assert response.json()["checks"] == {"dep": "ok"}
    assert Dependency.seen and all("shallow=true" in path for path in Dependency.seen)


def test_shallow_health_skips_the_checks():
    app = stackapp.create_app("svc", stackapp.Backends(), http_checks={"dep": "http://127.0.0.1:9/health"})
    with TestClient(app) as client:
        assert client.get("/health", params={"shallow": "true"}).json() == {"service": "svc", "status": "ok",
                                                                             "checks": {}}
        deep = client.get("/health")
    assert deep.status_code == 503 and deep.json()["checks"]["dep"].startswith("down")


def test_an_infrastructure_endpoint_is_asked_as_it_is(dependency):
    """Ollama's /api/version or ChromaDB's heartbeat know no ``shallow``: only an app's /health gets it."""
    Dependency.seen.clear()
    version = dependency.replace("/health", "/api/version")
    app = stackapp.create_app("svc", stackapp.Backends(), http_checks={"ollama": version})
    with TestClient(app) as client:
        client.get("/health")
    assert set(Dependency.seen) == {"/api/version"}  # asked twice (it answers 503), never with a query
