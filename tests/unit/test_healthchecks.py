"""Docker's healthcheck of every HTTP image (templates/images/http-check.j2): a raw-socket GET
in python3 -S, run here against a real HTTP server, and in every image that has one."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stackdeploy import SERVICES_DIR
from stackdeploy.model import load
from stackdeploy.plan import build_plan
from tests.certs import certificate

SECRETS = {"POSTGRES_PASSWORD": "p", "REDIS_PASSWORD": "r", "JWT_SECRET": "j", "GRAFANA_ADMIN_PASSWORD": "g"}


def healthchecks(data) -> dict[str, list[str]]:
    """Dockerfile path -> its HEALTHCHECK's command, for each Dockerfile of the offline plan."""
    files = build_plan(load(data, SERVICES_DIR), "local", SECRETS, certificate=certificate()).files
    found = {}
    for rel, text in files.items():
        if rel.endswith("Dockerfile") and "HEALTHCHECK" in text:
            match = re.search(r"HEALTHCHECK [^\n]*\\\n\s+CMD (\[[^\n]*\])", text)
            if match:
                found[rel] = json.loads(match.group(1))
    return found


class Answers(BaseHTTPRequestHandler):
    """200 on /health, 503 elsewhere; HTTP/1.1 status lines, as uvicorn and nginx answer."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()


def test_every_http_image_checks_itself_with_the_raw_socket_check(data):
    checks = healthchecks(data)
    raw = {rel for rel, command in checks.items() if command[:2] == ["python3", "-S"]}
    # The four apps, the monitor, nginx, chromadb, ollama's stand-in, prometheus, alertmanager
    # and the four exporters; postgres, redis and the log store check with their own tools.
    assert len(raw) == 14, sorted(raw)
    assert not any("urllib" in checks[rel][-1] for rel in checks)


def test_the_check_passes_on_200_and_fails_otherwise(data, server):
    script = healthchecks(data)["images/nginx/Dockerfile"][-1].replace(", 8080)", f", {server})")
    ok = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, timeout=10, check=False)
    assert ok.returncode == 0, ok.stderr
    failing = script.replace("GET /health ", "GET /missing ")
    assert subprocess.run([sys.executable, "-S", "-c", failing], capture_output=True, timeout=10).returncode == 1
    refused = script.replace(f", {server})", ", 1)")  # nothing listens on port 1
    assert subprocess.run([sys.executable, "-S", "-c", refused], capture_output=True, timeout=10).returncode == 1
