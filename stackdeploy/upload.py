"""Phase 2: the release's files onto the host, into a directory of their own.

A release is staged in ``releases/<id>/`` (a copy of the current release plus the files that
differ), and only switched to (``current``) once it runs: a run that fails part-way leaves
the running release's files untouched. The helper and the host's own state files sit
outside the releases. The decision comes from one hash listing of the host, so a no-op
redeploy costs one command per host, also over SSH.
"""

from __future__ import annotations

import posixpath
from io import BytesIO

from pyinfra import host
from pyinfra.api import FileUploadCommand, deploy, operation
from pyinfra.operations import files

from stackdeploy import commands, contract
from stackdeploy.desired import HostDecisions


def _mode(decisions: HostDecisions, rel: str) -> str:
    if rel in decisions.plan.secret_files or rel in (".secrets.json", ".tls.json"):
        return "600"
    return "755" if rel == "stackctl.py" else "644"


def _upload(root: str, decisions: HostDecisions, wanted: dict[str, bytes]):
    """mkdir, upload, then chmod: every path quoted, secrets private before they land."""
    dirs = sorted({posixpath.dirname(posixpath.join(root, rel)) for rel in wanted})
    if dirs:
        yield commands.make_dirs(*dirs)
    for rel, content in wanted.items():
        yield FileUploadCommand(BytesIO(content), posixpath.join(root, rel))
    modes: dict[str, list[str]] = {}
    for rel in wanted:
        modes.setdefault(_mode(decisions, rel), []).append(rel)
    for mode, paths in sorted(modes.items()):
        yield commands.set_mode(root, mode, paths)


HELPER_FILES, STATE_FILES = contract.HELPER_FILES, contract.STATE_FILES


@operation(is_idempotent=True)
def top_files(decisions: HostDecisions, names: tuple[str, ...], what: str):
    """Deploy-directory files outside the releases: the helper and its contract (before the
    lock), or the secrets' host copy, the image-source record and certbot's scripts (under it)."""
    wanted = {rel: content for rel, content in decisions.top_files.items() if rel in names}
    if not wanted:
        host.noop(f"{what} up to date")
        return
    root = decisions.plan.stack.deploy_dir
    yield commands.make_dirs(posixpath.join(root, "state"))
    yield from _upload(root, decisions, wanted)


@operation(is_idempotent=True)
def staged_release(decisions: HostDecisions):
    """Stage a new release: copy the current one, then upload only the files that differ."""
    if not decisions.new_release:
        host.noop(f"release {decisions.release} is current: files up to date")
        return
    deploy_dir = decisions.plan.stack.deploy_dir
    root = commands.release_dir(deploy_dir, decisions.release)
    yield commands.stage_release(deploy_dir, decisions.release)
    wanted = {rel: decisions.release_files[rel] for rel in decisions.changed_files}
    yield from _upload(root, decisions, wanted)
    stale = sorted(rel for rel in decisions.current_files if rel not in decisions.release_files)
    if stale:
        yield commands.remove_files(root, stale)


def put_helper(decisions: HostDecisions) -> None:
    """The deploy directory and the helper, which everything after this (the lock too) uses."""
    root = decisions.plan.stack.deploy_dir
    files.directory(name=f"Deploy directory {root}", path=root, mode="750")
    top_files(name="Host helper", decisions=decisions, names=HELPER_FILES, what="host helper")


@deploy("Render stack files")
def render_stack(decisions: HostDecisions) -> None:
    """The host's state files, and the release staged when it is new (the current one is never edited)."""
    top_files(name="Secrets and image source on the host", decisions=decisions, names=STATE_FILES,
              what="host state files")
    staged_release(name="Stage the release's files", decisions=decisions)
