"""The readiness gate tells a crash of an app's workers from workers that are only slow: both
make uvicorn's supervisor log "Child process [N] died", only a crash leaves a traceback."""

from __future__ import annotations

import subprocess

from tests.conftest import shipped_helper

SLOW = """\
INFO:     Uvicorn running on http://0.0.0.0:8002 (Press CTRL+C to quit)
INFO:     Started parent process [1]
INFO:     Child process [12] died
INFO:     Child process [13] died
INFO:     Waiting for application startup.
"""
CRASH = """\
INFO:     Started parent process [1]
Process SpawnProcess-1:
Traceback (most recent call last):
  File "/app/app/main.py", line 90, in <module>
    raise RuntimeError('broken release')
RuntimeError: broken release
INFO:     Child process [12] died
INFO:     Child process [14] died
"""


def judged(helpers_dir, monkeypatch, log: str) -> str | None:
    with shipped_helper(helpers_dir, "stackctl") as stackctl:
        monkeypatch.setattr(stackctl, "run", lambda args, timeout=None: subprocess.CompletedProcess(args, 0, "", log))
        return stackctl.workers_dying("c1")


def test_workers_killed_for_answering_slowly_are_not_a_crash(helpers_dir, monkeypatch):
    assert judged(helpers_dir, monkeypatch, SLOW) is None


def test_workers_that_die_with_a_traceback_are_a_crash_named_by_its_error(helpers_dir, monkeypatch):
    expected = "its worker processes keep dying (2 so far): RuntimeError: broken release"
    assert judged(helpers_dir, monkeypatch, CRASH) == expected
    assert judged(helpers_dir, monkeypatch, CRASH.replace("INFO:     Child process [14] died\n", "")) is None  # once
