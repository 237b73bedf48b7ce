"""Running a command on the control machine: an ssh to a host, or a pipe between two hosts.

It sits at the bottom of the package so that any phase can ship, compare or probe through the
control machine without importing the phases that decide what to run."""

from __future__ import annotations

import subprocess

from pyinfra.api import StringCommand


def run_on_control_machine(command: StringCommand, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``command`` on this control machine, in bash with pipefail so a pipe fails when any
    part of it does."""
    return subprocess.run(["bash", "-o", "pipefail", "-c", command.get_raw_value()], capture_output=True,
                          text=True, timeout=timeout, check=False)
