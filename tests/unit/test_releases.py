"""Release bookkeeping without an engine: choosing a rollback target, the history table
and the host helper's lock ownership."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from stackdeploy import contract
from stackdeploy.desired import StackInputError
from stackdeploy.facts.stack import HostReleases
from stackdeploy.rollback import choose_target, history_table
from tests.conftest import run_helper


def record(release: str, result: str = "ok", action: str = "deploy") -> dict:
    return {"id": release, "result": result, "action": action, "at": 1795666882.0, "user": "root",
            "control_host": "laptop", "commit": "abc123", "services": {}}


HISTORY = HostReleases(
    current="R3",
    manifests={"R1": {}, "R2": {}, "R3": {}, "R4": {}},  # type: ignore[typeddict-item]  # unread here
    releases=(record("R1"), record("R2"), record("R2b", "failed"), record("R3"), record("R4", "failed")),
)


def test_rollback_goes_to_the_last_good_release_before_current():
    assert choose_target("h", HISTORY, None) == "R2"


def test_rollback_to_a_named_release_or_the_newest_before_it():
    assert choose_target("h", HISTORY, "R1") == "R1"
    assert choose_target("h", HISTORY, "R2c") == "R2"  # a run that did not change this host
    assert choose_target("h", HISTORY, "R4") == "R3"  # R4 failed: never a target


def test_rollback_refuses_what_the_host_does_not_keep():
    with pytest.raises(StackInputError, match="release R0 is not kept on this host"):
        choose_target("h", HISTORY, "R0")
    with pytest.raises(StackInputError, match="no earlier release to roll back to"):
        choose_target("h", replace(HISTORY, current="R1"), None)


def test_history_marks_only_the_newest_record_of_the_current_release():
    history = replace(HISTORY, releases=(*HISTORY.releases, record("R3", action="rollback")))
    marked = [line for line in history_table("h", history).splitlines() if line.strip().startswith("*")]
    assert len(marked) == 1 and "rollback" in marked[0]


def stackctl(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_helper(root, "stackctl.py", "--host", "h", *args)


def test_lock_is_refused_to_a_second_run_and_released_by_its_holder(helpers_dir):
    holder = json.dumps({"user": "ana", "control_host": "laptop", "commit": "", "action": "deploy", "release": "R9"})
    # Each call below is its own process tree, like two runs: the first one's anchor (this
    # pytest process) is alive, so the lock it left is live.
    assert stackctl(helpers_dir, "lock", "acquire", "--holder", holder).returncode == 0
    lock = json.loads((helpers_dir / "state" / "deploy.lock").read_text())
    assert lock["anchor_pid"] == os.getpid()
    again = stackctl(helpers_dir, "lock", "acquire", "--holder", holder)
    assert again.returncode == 0  # same anchor (this process): the same run, not a second one
    # Another run: its anchor is another live process (a python that runs the helper).
    second = subprocess.run([sys.executable, "-c", "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:])"
                             ".returncode)", sys.executable, str(helpers_dir / "stackctl.py"), "--host", "h", "lock",
                             "acquire", "--holder", holder], capture_output=True, text=True, timeout=30, check=False)
    assert second.returncode == 1
    assert "DEPLOY LOCKED: host h is held by ana@laptop" in second.stderr and "Wait for it to finish" in second.stderr
    lock["anchor_pid"], lock["anchor_start"] = 1, "not-init's-start"  # a holder that died
    (helpers_dir / "state" / "deploy.lock").write_text(json.dumps(lock))
    refused = stackctl(helpers_dir, "lock", "acquire", "--holder", holder)
    assert refused.returncode == 1 and "whose process is gone" in refused.stderr and "ana@laptop" in refused.stderr
    taken = stackctl(helpers_dir, "lock", "acquire", "--holder", holder, "--take-over")
    assert taken.returncode == 0 and "took over the stale lock of ana@laptop" in taken.stdout
    # The run's end releases it (finish; a failed run's callback calls it too) and audits the run.
    assert stackctl(helpers_dir, "finish", "--release", "R9", "--result", "failed").returncode == 0
    assert not (helpers_dir / "state" / "deploy.lock").exists()
    assert json.loads((helpers_dir / contract.AUDIT_FILE).read_text())["result"] == "failed"


def test_lock_is_refused_when_the_host_changed_since_the_run_read_it(helpers_dir):
    (helpers_dir / "releases" / "R2").mkdir(parents=True)
    (helpers_dir / "current").symlink_to("releases/R2")
    holder = json.dumps({"user": "ana", "control_host": "laptop", "commit": "", "action": "deploy", "release": "R3"})
    stale = stackctl(helpers_dir, "lock", "acquire", "--holder", holder, "--expect-current", "R1")
    assert stale.returncode == 1 and "changed since this run read it" in stale.stderr
    assert not (helpers_dir / "state" / "deploy.lock").exists()
    assert stackctl(helpers_dir, "lock", "acquire", "--holder", holder, "--expect-current", "R2").returncode == 0
