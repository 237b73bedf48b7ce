"""Long work shows progress as it happens: the host helper prints one line per event, and the
deploy shows a command's lines while it still runs (through pyinfra's own connector)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pyinfra.api import Config, Inventory, State, output
from pyinfra.api.connect import connect_all

from stackdeploy.commands import argv, live
from stackdeploy.desired import helper_files

# Prints a line, then waits (at most 10 s) for the file the deploy side creates when it has
# shown that line, and only then prints the next and exits: the second line says whether the
# first one was shown while the command still ran. Ordering only, never a timing.
HANDSHAKE = """
import os, sys, time
print("build auth-service started", flush=True)
for _ in range(200):
    if os.path.exists(sys.argv[1]):
        print("build auth-service done in 0.1 s, 1/2 steps cached", flush=True)
        sys.exit(0)
    time.sleep(0.05)
print("the first line was not shown while the command ran", file=sys.stderr, flush=True)
sys.exit(1)
"""


@pytest.fixture
def local_host():
    inventory = Inventory((["@local"], {}))
    state = State(inventory, Config())
    connect_all(state)
    return state, inventory.get_host("@local")


@pytest.fixture
def shown(monkeypatch) -> list[str]:
    """What pyinfra's CLI would print (its echo, which the CLI sets to click's)."""
    lines: list[str] = []
    monkeypatch.setattr(output, "_echo", lambda message=None, **_kwargs: lines.append(str(message)))
    return lines


def test_a_commands_lines_are_shown_while_it_runs(local_host, monkeypatch, tmp_path):
    state, host = local_host
    marker = tmp_path / "seen"
    shown: list[str] = []

    def echo(message=None, **_kwargs):
        shown.append(str(message))
        if "started" in str(message):
            marker.touch()

    monkeypatch.setattr(output, "_echo", echo)
    ok, result = live(argv(sys.executable, "-c", HANDSHAKE, str(marker))).execute(state, host, {})
    assert ok, shown
    assert shown == ["[@local] build auth-service started",
                     "[@local] build auth-service done in 0.1 s, 1/2 steps cached"]
    assert result.stdout_lines == ["build auth-service started", "build auth-service done in 0.1 s, 1/2 steps cached"]


def test_a_failed_commands_output_is_shown_once(local_host, shown):
    state, host = local_host
    script = "import sys; print('build a started'); print('BUILD FAILED: a', file=sys.stderr); sys.exit(1)"
    ok, result = live(argv(sys.executable, "-c", script)).execute(state, host, {})
    assert not ok
    assert sorted(shown) == ["[@local] BUILD FAILED: a", "[@local] build a started"]  # two pipes: any order
    assert list(result) == []  # already shown: pyinfra has nothing left to print again


FAKE_DOCKER = """#!/bin/sh
# docker compose ... build --progress plain SERVICE: one cached step and one built, or a failure
case "$*" in *broken*) echo "#4 ERROR: boom"; exit 1;; esac
echo "#4 [2/3] RUN pip install -r requirements.txt"
echo "#4 CACHED"
echo "#5 [3/3] COPY app ./app"
"""


@pytest.fixture
def helper(tmp_path: Path) -> Path:
    """The host helper and its contract in a scratch deploy directory, a fake docker on PATH."""
    for rel, content in helper_files().items():  # as the deploy ships them
        (tmp_path / rel).write_bytes(content)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "docker").write_text(FAKE_DOCKER)
    (tmp_path / "bin" / "docker").chmod(0o755)
    return tmp_path


def test_build_prints_each_services_start_and_end(helper):
    result = subprocess.run([sys.executable, str(helper / "stackctl.py"), "--host", "h", "build", "--release", "R1",
                             "auth-service", "broken-service"], capture_output=True, text=True, timeout=30,
                            check=False, env={**os.environ, "PATH": f"{helper / 'bin'}:{os.environ['PATH']}"})
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert sorted(lines) == sorted([
        "build auth-service started", "build broken-service started",
        *(line for line in lines if re.fullmatch(r"build auth-service done in \d+\.\d s, 1/2 steps cached", line)),
        *(line for line in lines if re.fullmatch(r"build broken-service FAILED after \d+\.\d s", line)),
    ])
    assert len(lines) == 4  # one line per event, nothing else on stdout
    for service in ("auth-service", "broken-service"):
        events = [line for line in lines if line.startswith(f"build {service} ")]
        assert events[0].endswith(" started") and len(events) == 2
    assert "BUILD FAILED: service 'broken-service' on host h" in result.stderr
