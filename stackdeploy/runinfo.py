"""Who runs this deploy, from where, under which release id (one per control process), and
whether it is a dry run.

Every host of one run gets the same release id, so a release can be named across a fleet
(``rollback.py --data release=<id>``).
"""

from __future__ import annotations

import getpass
import socket
import subprocess
import sys
import time
from functools import cache

from stackdeploy import PROJECT_ROOT, contract

STARTED = time.time()
RELEASE_ID = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(STARTED))


def _git_commit() -> str:
    """The deploy repository's commit, marked "-dirty" with uncommitted changes ("" outside git)."""
    try:
        head = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{head}-dirty" if dirty else head


def is_dry_run() -> bool:
    """pyinfra's ``--dry``. Its CLI keeps the flag to itself (no Config or State field holds
    it), so it is read from the command line."""
    return "--dry" in sys.argv


@cache
def actor() -> contract.Actor:
    return {"user": getpass.getuser(), "control_host": socket.gethostname(), "commit": _git_commit()}
