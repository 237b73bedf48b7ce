"""Phase 2: every rendered file, the build sources and the host helper onto the host.

One operation for all files: it compares one hash listing of the deploy directory with
the exact bytes wanted, so a no-op redeploy costs one command per host, also over SSH.
"""

from __future__ import annotations

import hashlib
import posixpath
import shlex
from io import BytesIO

from pyinfra import host
from pyinfra.api import FileUploadCommand, deploy, operation
from pyinfra.operations import files

from stackdeploy import FILES_DIR
from stackdeploy.facts import FileHashes
from stackdeploy.fingerprint import context_files
from stackdeploy.plan import Plan

MANAGED_DIRS = ("services/", "images/", "env/", "nginx/")


def _modes(plan: Plan, paths: list[str]) -> dict[str, list[str]]:
    modes: dict[str, list[str]] = {}
    for rel in paths:
        mode = "600" if rel in plan.secret_files or rel == ".secrets.json" else "755" if rel == "stackctl.py" else "644"
        modes.setdefault(mode, []).append(rel)
    return modes


@operation(is_idempotent=True)
def stack_files(plan: Plan, files: dict[str, bytes]):
    """Upload the files whose content differs (one hash listing of the host, not a fact
    per file: that keeps a no-op redeploy fast over SSH) and remove stale managed files."""
    root = plan.stack.deploy_dir
    remote = host.get_fact(FileHashes, root=root)
    changed = [rel for rel in sorted(files) if remote.get(rel) != hashlib.sha256(files[rel]).hexdigest()]
    stale = [rel for rel in sorted(remote) if rel not in files and rel.startswith(MANAGED_DIRS)]
    if not changed and not stale:
        host.noop(f"{len(files)} files up to date")
        return
    dirs = sorted({posixpath.dirname(f"{root}/{rel}") for rel in changed})
    # env/ holds secrets: make it private before anything lands in it.
    yield f"mkdir -p {' '.join(shlex.quote(d) for d in dirs)} {root}/env && chmod 700 {root}/env"
    for rel in changed:
        yield FileUploadCommand(BytesIO(files[rel]), f"{root}/{rel}")
    for mode, paths in _modes(plan, changed).items():
        yield f"cd {root} && chmod {mode} {' '.join(shlex.quote(p) for p in paths)}"
    if stale:
        yield f"cd {root} && rm -f {' '.join(shlex.quote(p) for p in stale)}"


def desired_files(plan: Plan, secrets_json: str) -> dict[str, bytes]:
    """Every file the host should have under the deploy dir, with its exact bytes."""
    files = {rel: content.encode() for rel, content in plan.files.items()}
    files[".secrets.json"] = secrets_json.encode()
    files["stackctl.py"] = (FILES_DIR / "stackctl.py").read_bytes()
    for spec in plan.builds.values():
        if spec.source_dir is not None:
            for path in context_files(spec.source_dir):
                files[f"{spec.build_dir}/src/{path.relative_to(spec.source_dir).as_posix()}"] = path.read_bytes()
    return files


@deploy("Render stack files")
def render_stack(plan: Plan, secrets_json: str) -> None:
    """Put every rendered file, the build sources and the host helper under the deploy dir."""
    root = plan.stack.deploy_dir
    files.directory(name=f"Deploy directory {root}", path=root, mode="750")
    stack_files(name="Rendered files, sources and host helper", plan=plan, files=desired_files(plan, secrets_json))
