"""smoke.py, the operator's check after a deploy or rollback, on the test stack. It runs last
in the suite (modules run in name order), over everything the other tests left behind."""

from __future__ import annotations

import re
import time

import httpx

from .conftest import GATEWAY, containers, docker, https, run_pyinfra

STEPS = ["register", "log in", "verify token", "upload a file", "read the upload back", "store a document",
         "query the document", "websocket message", "/ai message", "log out", "clean up: log in",
         "clean up: upload", "clean up: document", "clean up: channel", "clean up: user"]


def healthy(path: str) -> bool:
    try:
        return https.get(f"{GATEWAY}{path}", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_user_journey_passes_step_by_step_and_cleans_up(stack, session_tmp):
    result = run_pyinfra(session_tmp, "smoke.py")
    assert result.returncode == 0, result.output[-4000:]
    done = re.findall(r"ok   (.+?)\s{2,}\S+\s+\d+ ms", result.output)
    assert done == STEPS


def test_a_broken_service_fails_the_run_naming_the_step_and_the_service(stack, session_tmp):
    hub = containers()["creator-hub"]["Id"]
    docker("stop", hub)
    try:
        result = run_pyinfra(session_tmp, "smoke.py")
    finally:
        docker("start", hub)
        deadline = time.monotonic() + 120  # leave the stack serving for whatever runs next
        while not healthy("/api/creators/health") and time.monotonic() < deadline:
            time.sleep(0.5)  # pacing of the bounded poll
    assert result.returncode != 0
    assert "SMOKE TEST FAILED: step 'upload a file', service creator-hub" in result.output
    assert "Traceback" not in result.output
