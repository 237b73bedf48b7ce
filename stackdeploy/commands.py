"""Every command the deploy runs on a host, or pipes between hosts, built from quoted parts.

Like Kamal's ``lib/kamal/commands``: functions that build command lines and do nothing else;
the phases decide when to run them. A value (a path, a project, an image, a service) only
ever enters a command as a ``QuoteString``, so a deploy directory with a space in it stays
one word; the fixed shell around the values is plain text. The results are pyinfra
``StringCommand`` objects: operations yield them as they are (``server.shell`` passes them
through too), pyinfra renders them when it runs them, and a command run on the control
machine is rendered with ``get_raw_value()``.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pyinfra.api import Host, QuoteString, State, StringCommand
from pyinfra.api.arguments import ConnectorArguments
from pyinfra.api.host import HostData
from pyinfra.connectors.util import CommandOutput

from stackdeploy import contract

# --------------------------------------------------------------- combinators


def argv(*words: str) -> StringCommand:
    """A command from its words, each one quoted: the shell runs exactly these words."""
    return StringCommand(*(QuoteString(word) for word in words))


def combine(*commands: StringCommand, by: str = "&&") -> StringCommand:
    """Commands joined by a shell operator (``&&`` runs the next only when one succeeds)."""
    parts: list[str | StringCommand] = []
    for command in commands:
        parts += [command, by]
    return StringCommand(*parts[:-1])


def chain(*commands: StringCommand) -> StringCommand:
    """Commands run one after the other, whatever each one returns (unless the first is ``set -e``)."""
    return combine(*commands, by=";")


def pipe(*commands: StringCommand) -> StringCommand:
    return combine(*commands, by="|")


def script(*commands: StringCommand) -> StringCommand:
    """Commands as the lines of one script (a line may end in ``&``, which ``;`` may not follow)."""
    return StringCommand(*commands, _separator="\n")


def run_over_ssh(ssh: Sequence[str], command: StringCommand) -> StringCommand:
    """``command`` on the host that the ``ssh`` prefix reaches (ssh hands its one last argument to
    that host's shell, so the command goes quoted as one word); ``command`` itself where the
    prefix is empty (the host is this machine)."""
    return StringCommand(argv(*ssh), QuoteString(command)) if ssh else command


# --------------------------------------------------------------- live output


class LiveOutputCommand(StringCommand):
    """A command whose output pyinfra shows line by line as it arrives, after the host's
    prefix (``[host] build auth-service started``), instead of only when it fails: its own
    ``-vv`` (``state.print_output``), for this one command. stdout lines are plain, stderr
    lines red on a terminal; where stdout is not one (CI), click drops the colour and pyinfra
    its spinner, so the log gets the same lines, one per event.

    For long host-helper verbs (``build``, ``up``) whose stdout is progress for people, never
    data a phase parses."""

    def execute(self, state: State, host: Host, connector_arguments: ConnectorArguments) -> tuple[bool, CommandOutput]:
        connector_arguments.update(self.connector_arguments)
        ok, output = host.run_shell_command(self, print_output=True, print_input=state.print_input,
                                            **connector_arguments)
        # pyinfra prints a failed command's output unless it was shown as it came (its rule is
        # ``not state.print_output``, which cannot see a per-command flag): hand it nothing to
        # print twice.
        return ok, output if ok else CommandOutput([])


def live(command: StringCommand) -> LiveOutputCommand:
    """``command``, its output shown as it arrives (see ``LiveOutputCommand``)."""
    return LiveOutputCommand(command)


# --------------------------------------------------------------- ssh

STRICT_HOST_KEY = {"off": "no", "no": "no", "accept-new": "accept-new", "yes": "yes", "on": "yes"}


def ssh_prefix(name: str, data: Mapping[str, Any] | HostData) -> list[str]:
    """``ssh ...`` to a host described by pyinfra's ssh_* settings (inventory data, or
    ``images_from``); BatchMode, so a missing key fails instead of prompting."""
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
    address = data.get("ssh_hostname") or name
    user = data.get("ssh_user")
    return [*command, f"{user}@{address}" if user else str(address)]


def ssh_to(target: Host) -> list[str]:
    """The ssh prefix that reaches ``target`` with its inventory data (empty for @local, where
    commands run right here)."""
    if target.name.startswith("@local"):
        return []
    return ssh_prefix(target.name, target.data)


# --------------------------------------------------------------- deploy directory


def release_dir(deploy_dir: str, release: str) -> str:
    return posixpath.join(deploy_dir, contract.RELEASES_DIR, release)


def stackctl(deploy_dir: str, host_name: str, *args: str) -> StringCommand:
    """The host helper (files/stackctl.py); ``host_name`` is the name its messages give the host."""
    return argv("python3", posixpath.join(deploy_dir, "stackctl.py"), "--host", host_name, *args)


def stackswarm(deploy_dir: str, *args: str) -> StringCommand:
    """The swarm engine's helper (files/stackswarm.py), on the first manager."""
    return argv("python3", posixpath.join(deploy_dir, "stackswarm.py"), *args)




def stackbackup(deploy_dir: str, *args: str) -> StringCommand:
    """The backup helper (files/stackbackup.py)."""
    return argv("python3", posixpath.join(deploy_dir, "stackbackup.py"), *args)


def backup_check(deploy_dir: str, backup_id: str, service: str | None) -> StringCommand:
    """``stackbackup.py check``, or an answer saying there is nothing where the helper never ran."""
    script = posixpath.join(deploy_dir, "stackbackup.py")
    nothing: contract.BackupCheckResult = {"ok": False, "error": "no backups on this host", "files": []}
    absent = json.dumps(nothing)
    check = stackbackup(deploy_dir, "check", "--id", backup_id, *(["--service", service] if service else []))
    return StringCommand("if [ -f", QuoteString(script), "]; then", check, "; else", argv("echo", absent), "; fi")


def make_dirs(*paths: str) -> StringCommand:
    return argv("mkdir", "-p", *paths)


def set_mode(root: str, mode: str, paths: Iterable[str]) -> StringCommand:
    """chmod files given relative to ``root``."""
    return combine(argv("cd", root), argv("chmod", mode, *paths))


def remove_files(root: str, paths: Iterable[str]) -> StringCommand:
    """rm -f files given relative to ``root``."""
    return combine(argv("cd", root), argv("rm", "-f", *paths))


def stage_release(deploy_dir: str, release: str) -> StringCommand:
    """Create the release directory as a copy of the current release (when there is one), with
    its env/ private before anything lands in it: env/ holds secrets."""
    root = release_dir(deploy_dir, release)
    env = posixpath.join(root, "env")
    current = posixpath.join(deploy_dir, contract.CURRENT_LINK)
    copy = StringCommand("if [ -d", QuoteString(posixpath.join(current, "")), "]; then",
                         argv("cp", "-a", posixpath.join(current, "."), posixpath.join(root, "")), "; fi")
    return combine(make_dirs(env), argv("chmod", "700", env), copy)


def json_file_or_empty(path: str) -> StringCommand:
    """The JSON file at ``path``, or ``{}`` when there is none."""
    return StringCommand("if [ -f", QuoteString(path), "]; then", argv("cat", path), "; else echo '{}'; fi")


# --------------------------------------------------------------- images

IMAGE_IDS_FORMAT = "{{.Repository}}:{{.Tag}} {{.ID}}"


def image_ids() -> StringCommand:
    """Every image as ``<repository>:<tag> <full id>``, one a line."""
    return argv("docker", "images", "--no-trunc", "--format", IMAGE_IDS_FORMAT)


def build_base_image(deploy_dir: str, release: str, image: str, debian_mirror: str) -> StringCommand:
    """The offline base image, built by the release's own copy of files/images/build-base.sh."""
    script = posixpath.join(release_dir(deploy_dir, release), "images", "build-base.sh")
    return argv("sh", script, image, debian_mirror)


def tag_image(image: str, name: str) -> StringCommand:
    """``image`` also known as ``name`` (its registry name, before it is pushed)."""
    return argv("docker", "tag", image, name)


def push_image(image: str) -> StringCommand:
    """``docker push`` to the registry ``image`` names (credentials: ``docker login`` on this host)."""
    return argv("docker", "push", image)


def pull_image(image: str) -> StringCommand:
    return argv("docker", "pull", image)


def ship_images(images: Sequence[str], source: Sequence[str], target: Sequence[str]) -> StringCommand:
    """``docker save`` where the ssh prefix ``source`` reaches, piped into ``docker load`` where
    ``target`` does: through the control machine, no registry."""
    return pipe(run_over_ssh(source, argv("docker", "save", *images)),
                run_over_ssh(target, argv("docker", "load", "-q")))


def load_archive(archive: str, target: Sequence[str]) -> StringCommand:
    """A `docker save` archive on this control machine, loaded where ``target`` reaches."""
    return pipe(argv("cat", archive), run_over_ssh(target, argv("docker", "load", "-q")))


# --------------------------------------------------------------- engine

WAIT_FOR_ENGINE = StringCommand(
    "for i in $(seq 1 300); do docker version >/dev/null 2>&1 && exit 0; sleep 0.2; done;",
    "echo 'docker engine did not answer within 60s' >&2; exit 1",
)


# dockerd where there is no init system to start it (pyinfra has no operation for that).
START_DETACHED = StringCommand("setsid nohup dockerd >/var/log/dockerd.log 2>&1 </dev/null &")


def start_engine(systemd: bool) -> list[StringCommand]:
    """Start dockerd (systemd, or detached where there is none) and wait until it answers."""
    if systemd:
        return [StringCommand("systemctl enable --now docker"), WAIT_FOR_ENGINE]
    return [START_DETACHED, WAIT_FOR_ENGINE]


# --------------------------------------------------------------- fact commands
#
# A fact's command exits non-zero when it cannot read what it is asked (pyinfra then reports
# the failure), and prints ABSENT where "there is none" is a real answer (a file or a deploy
# directory that a fresh host does not have yet): nothing is ever read as empty by accident.

SECTION = "--stackdeploy:"  # starts the line that names the next part of a multi-part fact's output
ABSENT = "--stackdeploy-absent"  # the whole output of a part, or of a fact, when what it reads does not exist

# Sets $engine to absent (no engine installed), down (installed, not answering) or up. Any other
# answer (permission denied on the socket, an engine that hangs) ends the script non-zero with
# the reason, under ``set -e``: it must never read as an empty host.
ENGINE_STATE = StringCommand(
    "engine=$(if ! command -v docker >/dev/null; then echo absent;",
    "elif out=$(timeout 10 docker version --format '{{.Server.Version}}' 2>&1); then echo up;",
    'else rc=$?; case "$out" in *"Cannot connect to the Docker daemon"*)',
    "if command -v dockerd >/dev/null; then echo down; else echo absent; fi;;",
    '*) echo "docker engine unreadable (exit $rc): $out" >&2; exit 1;; esac; fi)',
)
NO_ALIASES = "-"  # the aliases field of a container with none on the routes network


def container_format(project: str) -> str:
    """``docker inspect --format`` of one container per line: service, id, state, image, health,
    its aliases on the routes network (each followed by a comma, NO_ALIASES for none) and, last because it
    may print as two words, the config-hash label. Docker's health ("none" without a
    healthcheck, read with ``index``: a container without one has no Health key, which a
    plain ``.State.Health`` fails the whole read on) lets a no-op verify from this one read;
    the aliases show an app the gateway can no longer find by its live alias (a container
    recreated by hand)."""
    aliases = ('{{with index .NetworkSettings.Networks "ROUTES"}}{{if .Aliases}}{{range .Aliases}}{{.}},{{end}}'
               '{{else}}NONE{{end}}{{else}}NONE{{end}}')
    aliases = aliases.replace("ROUTES", contract.routes_network(project)).replace("NONE", NO_ALIASES)
    return ('{{index .Config.Labels "com.docker.compose.service"}} {{.Id}} {{.State.Status}} {{.Image}} '
            '{{with index .State "Health"}}{{.Status}}{{else}}none{{end}} '
            f'{aliases} {{{{index .Config.Labels "{contract.CONFIG_HASH_LABEL}"}}}}')


def section(name: str) -> StringCommand:
    return argv("echo", f"{SECTION}{name}")


def readable_dir(path: str) -> StringCommand:
    """Fail when ``path`` exists but cannot be listed: below it, every file would test as absent."""
    return StringCommand("if [ -e", QuoteString(path), "] && ! { [ -r", QuoteString(path), "] && [ -x",
                         QuoteString(path), "]; }; then", argv("echo", f"cannot read {path}"), ">&2; exit 1; fi")


def read_file(path: str) -> StringCommand:
    """The file's content, or ABSENT when there is no such file; a file that cannot be read fails."""
    return StringCommand("if [ -e", QuoteString(path), "]; then", argv("cat", path), "; else", argv("echo", ABSENT),
                         "; fi")


def read_link(path: str) -> StringCommand:
    """Where the symlink ``path`` points, or ABSENT when there is no such link."""
    return StringCommand("if [ -L", QuoteString(path), "]; then", argv("readlink", path), "; else",
                         argv("echo", ABSENT), "; fi")


def compose_containers(project: str) -> StringCommand:
    """Ids of the compose engine's containers of ``project``. Swarm's tasks of a stack by the
    same name carry the compose labels too (the CLI renders stack files with compose), and
    are left out: they are Swarm's to manage."""
    return argv("docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}",
                "--filter", "is-task=false")


def host_state(deploy_dir: str, project: str) -> StringCommand:
    """Sections: the engine and, when it is up, the project's containers, every image, the
    secrets' and the certificate's host copies, the remembered image source and the release ``current`` points at."""
    ids = StringCommand("ids=$(", compose_containers(project), ")", _separator="")
    return chain(
        StringCommand("set -e"), ENGINE_STATE,
        section("engine"), StringCommand('echo "$engine"; [ "$engine" = up ] || exit 0'),
        readable_dir(deploy_dir),
        section("containers"), ids,
        StringCommand('if [ -n "$ids" ]; then', argv("docker", "inspect", "--format", container_format(project)),
                      "$ids; fi"),
        section("images"), image_ids(),
        section("secrets"), read_file(posixpath.join(deploy_dir, ".secrets.json")),
        section("tls"), read_file(posixpath.join(deploy_dir, ".tls.json")),
        section("image-source"), read_file(posixpath.join(deploy_dir, "state", "image-source")),
        section("current"), read_link(posixpath.join(deploy_dir, contract.CURRENT_LINK)),
    )


def engine_status() -> StringCommand:
    """``key=value`` lines, every key always: the docker CLI, dockerd, systemd, debootstrap,
    python3 (yes or no), the engine (absent, down or up) and Compose's version (empty when
    ``docker compose`` does not answer: a plugin that does not answer is installed again)."""
    tools = [StringCommand("if command -v", tool, ">/dev/null; then echo", f"{key}=yes; else echo", f"{key}=no; fi")
             for key, tool in (("cli", "docker"), ("dockerd", "dockerd"), ("debootstrap", "debootstrap"),
                               ("python3", "python3"))]
    return chain(
        StringCommand("set -e"), ENGINE_STATE, StringCommand('echo "engine=$engine"'), *tools,
        StringCommand("if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then echo systemd=yes;",
                      "else echo systemd=no; fi"),
        StringCommand("if command -v docker >/dev/null &&",
                      "version=$(timeout 10 docker compose version --short 2>/dev/null); then",
                      'echo "compose=$version"; else echo compose=; fi'),
    )


def registry_reachable(images: Sequence[str]) -> StringCommand:
    """``yes`` when every image is on the host or its registry answers for it, else ``no``. The
    engine is asked first, so a "no such image" is never an engine that did not answer."""
    checks = [StringCommand('{ { [ "$engine" = up ] &&', argv("docker", "image", "inspect", image),
                            ">/dev/null 2>&1; } ||", argv("timeout", "20", "docker", "manifest", "inspect", image),
                            ">/dev/null 2>&1; }")
              for image in images]
    return chain(StringCommand("set -e"), ENGINE_STATE,
                 StringCommand("if", combine(*checks), "; then echo yes; else echo no; fi"))


NO_SUCH_MANIFEST = "no such manifest"  # what `docker manifest inspect` says of a tag its registry lacks


def registry_images(images: Sequence[str], insecure: bool) -> StringCommand:
    """``present <image>`` or ``absent <image>`` for each image, as the registry it names answers
    (``docker manifest inspect``: the docker CLI alone, with the credentials of ``docker login``;
    ``--insecure`` for a plain-HTTP registry). Any other answer (no connection, a timeout, an
    error page) ends the script non-zero with it: a registry that does not answer must never
    read as one that lacks everything."""
    flags = ["--insecure"] if insecure else []
    checks = [StringCommand("if out=$(", argv("timeout", "30", "docker", "manifest", "inspect", *flags, image),
                            "2>&1 >/dev/null); then", argv("echo", "present", image), '; else case "$out" in',
                            f'*"{NO_SUCH_MANIFEST}"*)', argv("echo", "absent", image), ";; *)",
                            argv("echo", f"the registry did not answer for {image}:"), '"$out" >&2; exit 1;;',
                            "esac; fi")
              for image in images]
    return chain(StringCommand("set -e"), *checks)


def registry_config() -> StringCommand:
    """The engine's registry settings (insecure registries among them), as JSON."""
    return argv("docker", "info", "--format", "{{json .RegistryConfig}}")


def stack_status(deploy_dir: str, remote_only: bool = False) -> StringCommand:
    """``stackctl.py status``: a probe of every service, or only of the dependencies on other hosts."""
    return argv("python3", posixpath.join(deploy_dir, "stackctl.py"), "status",
                *(["--remote-only"] if remote_only else []))


def release_history(deploy_dir: str) -> StringCommand:
    """The helper's release history, or ABSENT when the helper is not there (never deployed)."""
    helper = posixpath.join(deploy_dir, "stackctl.py")
    return chain(StringCommand("set -e"), readable_dir(deploy_dir),
                 StringCommand("if [ -e", QuoteString(helper), "]; then", argv("python3", helper, "releases"),
                               "; else", argv("echo", ABSENT), "; fi"))


def file_hashes(root: str, top_files: Sequence[str]) -> StringCommand:
    """``<sha256>  <path>`` of every file of the current release and of ``top_files``, paths
    relative to ``root``; ABSENT when ``root`` does not exist. No pipe: a find or sha256sum
    that fails is the command's exit status."""
    current = posixpath.join(contract.CURRENT_LINK, "")
    return chain(
        StringCommand("set -e"), readable_dir(root),
        StringCommand("if [ -d", QuoteString(root), "]; then", argv("cd", root), "; else", argv("echo", ABSENT),
                      "; exit 0; fi"),
        StringCommand("if [ -d", QuoteString(current), "]; then",
                      argv("find", "-L", current, "-type", "f", "-exec", "sha256sum", "{}", "+"), "; fi"),
        StringCommand("for f in", *(QuoteString(f) for f in top_files),
                      '; do if [ -e "$f" ]; then sha256sum "$f"; fi; done'),
    )


def log_search(deploy_dir: str, project: str, store: str, options: Mapping[str, str]) -> StringCommand:
    """``stacklogs.py search`` on the log store's host: every argument quoted."""
    words = [f"--{key}={value}" for key, value in sorted(options.items())]  # a value may start with "-"
    return argv("python3", posixpath.join(deploy_dir, "stacklogs.py"), "search", "--project", project,
                "--store", store, *words)


# --------------------------------------------------------------- swarm

def swarm_nodes() -> StringCommand:
    """``docker node inspect`` of every node of the swarm (on a manager)."""
    return StringCommand("ids=$(docker node ls -q)", "&&", "docker", "node", "inspect", "$ids")


def swarm_init(address: str) -> StringCommand:
    return argv("docker", "swarm", "init", "--advertise-addr", address)


def swarm_join_token(role: str) -> StringCommand:
    """The token a ``role`` (manager or worker) joins with, printed alone (on a manager)."""
    return argv("docker", "swarm", "join-token", "-q", role)


def swarm_join(token: str, address: str, manager: str) -> StringCommand:
    """Join the swarm that ``manager`` (host:port) manages, advertising ``address``."""
    return argv("docker", "swarm", "join", "--token", token, "--advertise-addr", address, manager)


def node_removed(node_id: str) -> list[StringCommand]:
    """Drain a node's tasks elsewhere, then drop it from the swarm (on a manager)."""
    return [argv("docker", "node", "update", "--availability", "drain", node_id),
            argv("docker", "node", "rm", "--force", node_id)]


def swarm_stack_remove(stack: str) -> StringCommand:
    """Remove a stack's services (its volumes and secrets stay)."""
    return argv("docker", "stack", "rm", stack)


def swarm_task_containers(stack: str) -> StringCommand:
    """Ids of this host's containers that are tasks of ``stack``."""
    return argv("docker", "ps", "-aq", "--filter", f"label={contract.STACK_NAMESPACE_LABEL}={stack}")


def remove_containers(ids: Sequence[str]) -> StringCommand:
    return argv("docker", "rm", "-f", *ids)


def swarm_tasks_gone(stack: str, timeout: int) -> StringCommand:
    """Wait up to ``timeout`` s until this host has no task container of ``stack``; fail if one stays."""
    none_left = StringCommand('[ -z "$(', swarm_task_containers(stack), ')" ]', _separator="")
    return StringCommand("for i in $(seq", str(int(timeout)), "); do", none_left, "&& exit 0; sleep 1; done;",
                         "echo", QuoteString(f"swarm tasks of {stack} still running after {timeout} s"), ">&2; exit 1")


def compose_containers_removed(project: str) -> StringCommand:
    """Stop and remove a compose project's containers (their volumes stay)."""
    ids = StringCommand("ids=$(", compose_containers(project), ")", _separator="")
    return script(ids, StringCommand("docker stop -t 20 $ids >/dev/null && docker rm $ids >/dev/null"))


# --------------------------------------------------------------- firewall

def iptables_restore(text: str) -> StringCommand:
    """Apply an ``iptables-restore`` input without flushing what it does not name."""
    return StringCommand("printf", "%s", QuoteString(text), "|", "iptables-restore", "--noflush")


def ensure_jump(parent: str, chain: str) -> StringCommand:
    """Make ``parent`` jump to ``chain`` first, unless it already does."""
    return StringCommand(argv("iptables", "-C", parent, "-j", chain), "2>/dev/null ||",
                         argv("iptables", "-I", parent, "1", "-j", chain))


def ensure_chain(chain: str) -> StringCommand:
    """Make an empty chain ``chain`` unless it exists (DOCKER-USER at boot, before dockerd)."""
    return StringCommand(argv("iptables", "-n", "-L", chain), ">/dev/null 2>&1 ||", argv("iptables", "-N", chain))

