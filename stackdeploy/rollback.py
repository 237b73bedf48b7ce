"""Rollback and release history: decided from what each host has kept.

A release directory holds everything a release needs (compose file, env files, the
gateway's config) and its images are kept with it, so going back needs no build and no
registry: the helper rolls the services whose containers differ from the target release,
wave by wave, exactly like a deploy (apps without downtime, health-gated).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pyinfra.api import Host

from stackdeploy.desired import StackInputError, load_stack, read_host
from stackdeploy.facts.stack import HostReleases


@dataclass(frozen=True)
class RollbackDecisions:
    """Where one host goes back to, and which services that changes."""

    deploy_dir: str
    current: str
    target: str
    waves: list[list[str]]
    to_change: list[str]
    keep: int
    batch: int


def choose_target(host_name: str, history: HostReleases, wanted: str | None) -> str:
    """``wanted`` (or the newest good release before it, when this host has no good one by that
    id: a run records a release only on the hosts it changed); else the good release before current."""
    present = set(history.manifests)
    good = sorted(r["id"] for r in history.releases if r["result"] == "ok" and r["id"] in present)
    here = ", ".join(sorted(present)) or "none"
    if wanted:
        if wanted in good:
            return wanted
        earlier = [r for r in good if r <= wanted]
        if not earlier:
            raise StackInputError(f"{host_name}: release {wanted} is not kept on this host (releases here: {here})")
        return earlier[-1]
    earlier = [r for r in good if r < history.current]
    if not earlier:
        raise StackInputError(f"{host_name}: no earlier release to roll back to (releases here: {here})")
    return earlier[-1]


def decide_rollback(host: Host, history: HostReleases) -> RollbackDecisions:
    stack = load_stack(host)
    if not history.current:
        raise StackInputError(f"{host.name}: nothing deployed with releases in {stack.deploy_dir}")
    target = choose_target(host.name, history, host.data.get("release"))
    manifest = history.manifests[target]
    state = read_host(host, stack)
    gateway = (manifest["gateway"] or {}).get("service")
    to_change = [name for name, spec in manifest["services"].items()
                 if name == gateway or not state.up_to_date(name, spec["config_hash"])]
    return RollbackDecisions(stack.deploy_dir, history.current, target, manifest["waves"], to_change,
                             stack.keep_releases, stack.rollout_batch)


def history_table(host_name: str, history: HostReleases) -> str:
    """The release history of one host, newest first, the current release marked."""
    lines = [f"releases on {host_name} (* current):",
             f"    {'release':<18} {'action':<9} {'result':<7} {'by':<24} {'commit':<20} when (UTC)"]
    marked = False
    for record in reversed(history.releases):
        mark = "*" if record["id"] == history.current and not marked else " "
        marked = marked or mark == "*"
        kept = "" if record["id"] in history.manifests else "  (pruned)"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record["at"]))
        by = f"{record['user']}@{record['control_host']}"
        lines.append(f"  {mark} {record['id']:<18} {record['action']:<9} {record['result']:<7} {by:<24} "
                     f"{record['commit'] or '-':<20} {when}{kept}")
    if not history.releases:
        lines.append("    (no release recorded)")
    return "\n".join(lines)
