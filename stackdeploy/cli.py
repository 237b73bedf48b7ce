"""``stackdeploy VERB [ENV] [options]``: one command for every entry point, with help.

Each verb runs the pyinfra deploy file that does the work (``pyinfra inventory/ENV.py
deploy.py`` keeps working as it is), with the verb's options as ``--data``. ENV names
``inventory/ENV.py`` and defaults to ``local``. Read-only verbs never prompt. ``plan`` is
``deploy.py --dry`` with an exit status CI can gate on: 0 nothing would change, 2 something
would, 1 an error.
"""

from __future__ import annotations

import argparse
import difflib
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stackdeploy import PROJECT_ROOT

PLAN_CHANGES = 2  # plan's exit status when something would change


@dataclass(frozen=True)
class Verb:
    """One verb: the deploy file it runs, what it says in --help, and its own options."""

    deploy_file: str
    summary: str
    examples: tuple[str, ...]
    read_only: bool = False
    extra: tuple[str, ...] = ()  # pyinfra arguments added after the deploy file (plan: --dry)
    options: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    data: Callable[[argparse.Namespace], dict[str, str]] = lambda args: {}


def _rollback_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", metavar="ID", help="the release to go back to (default: the one before current)")


def _logs_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="*", metavar="SERVICE", help="only these services")
    parser.add_argument("--since", help="from then on: 15m, 2h, 3d or an ISO time (default 1h)")
    parser.add_argument("--grep", metavar="REGEX", help="only lines whose message matches")
    parser.add_argument("--request-id", metavar="ID", help="only the lines of one request, in every service")
    parser.add_argument("--lines", type=int, metavar="N", help="the last N matching lines (default 500)")


def _logs_data(args: argparse.Namespace) -> dict[str, str]:
    data = {"service": ",".join(args.services)} if args.services else {}
    for key in ("since", "grep", "request_id", "lines"):
        if getattr(args, key) is not None:
            data[key] = str(getattr(args, key))
    return data


def _restore_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("backup", metavar="ID", help="the backup to restore (see the hosts' <deploy_dir>/backups/)")
    parser.add_argument("--service", help="only this stateful service")


VERBS: dict[str, Verb] = {
    "deploy": Verb("deploy.py", "take every host of ENV to the stack group_data describes",
                   ("stackdeploy deploy", "stackdeploy deploy staging --limit apps")),
    "plan": Verb("deploy.py", "say per host what a deploy would change, and change nothing (exit 0: nothing, "
                              "2: changes, 1: error)", ("stackdeploy plan production",), read_only=True,
                 extra=("--dry",)),
    "verify": Verb("verify.py", "probe every service of the current release; exit non-zero naming what is unhealthy",
                   ("stackdeploy verify", "stackdeploy verify production"), read_only=True),
    "smoke": Verb("smoke.py", "the user journey through every gateway (register, log in, upload, ask, chat)",
                  ("stackdeploy smoke staging",), read_only=True),
    "rollback": Verb("rollback.py", "back to the previous release (or --to one), gated like a deploy",
                     ("stackdeploy rollback", "stackdeploy rollback production --to 20261203T101500Z"),
                     options=_rollback_options, data=lambda args: {"release": args.to} if args.to else {}),
    "releases": Verb("releases.py", "the release history of every host, the current one marked",
                     ("stackdeploy releases production",), read_only=True),
    "logs": Verb("logs.py", "every host's logs, merged in time order, from the central log store",
                 ("stackdeploy logs", "stackdeploy logs staging creator-hub --since 15m --grep error"),
                 read_only=True, options=_logs_options, data=_logs_data),
    "backup": Verb("backup.py", "back up every stateful service on the host it lives on",
                   ("stackdeploy backup production",)),
    "restore": Verb("restore.py", "restore a backup (every stateful service, or --service one)",
                    ("stackdeploy restore production 20261203T020000Z --service postgres",),
                    options=_restore_options,
                    data=lambda args: {"backup": args.backup, **({"service": args.service} if args.service else {})}),
    "provision": Verb("provision.py", "prepare new hosts: engine, deploy user, firewall, swarm",
                      ("stackdeploy provision production",)),
}


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The command's parser, and each verb's (to suggest the nearest of its options)."""
    parser = argparse.ArgumentParser(
        prog="stackdeploy", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Deploy and run the stack: each verb runs its pyinfra deploy file on inventory/ENV.py.",
        epilog="`stackdeploy VERB --help` shows a verb's options and examples.")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    subs = {}
    for name, verb in VERBS.items():
        sub = subs[name] = verbs.add_parser(name, help=verb.summary, description=verb.summary,
                                            formatter_class=argparse.RawDescriptionHelpFormatter,
                                            epilog="examples:\n" + "\n".join(f"  {line}" for line in verb.examples))
        sub.add_argument("env", nargs="?", default="local", metavar="ENV",
                         help="the inventory: inventory/ENV.py (default: local)")
        verb.options(sub)
        sub.add_argument("--limit", metavar="HOSTS", help="only these hosts or groups (pyinfra's --limit)")
        sub.add_argument("-v", "--verbose", action="count", default=0, help="pyinfra's -v (more for -vv)")
    return parser, subs


def suggestion(word: str, choices: Sequence[str]) -> str:
    """" (did you mean 'x'?)" for a mistyped verb or option, or ""."""
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _refuse_unknown(argv: Sequence[str], subs: dict[str, argparse.ArgumentParser]) -> None:
    """A mistyped verb or option: one line with the nearest one, before argparse's usage text."""
    if not argv or argv[0].startswith("-"):
        return
    if argv[0] not in subs:
        sys.exit(f"stackdeploy: unknown verb '{argv[0]}'{suggestion(argv[0], list(subs))}; verbs: {', '.join(subs)}")
    known = [option for action in subs[argv[0]]._actions for option in action.option_strings]
    for word in argv[1:]:
        option = word.split("=", 1)[0]
        if option.startswith("--") and option not in known:
            sys.exit(f"stackdeploy {argv[0]}: unknown option '{option}'{suggestion(option, known)}")


def pyinfra_command(args: argparse.Namespace, root: Path = PROJECT_ROOT) -> list[str]:
    """The pyinfra command line a parsed verb runs."""
    verb = VERBS[args.verb]
    if args.verb == "logs" and not (root / "inventory" / f"{args.env}.py").is_file() and args.env != "local":
        args.services, args.env = [args.env, *args.services], "local"  # `stackdeploy logs creator-hub`
    inventory = root / "inventory" / f"{args.env}.py"
    if not inventory.is_file():
        known = sorted(p.stem for p in (root / "inventory").glob("*.py"))
        sys.exit(f"stackdeploy: no inventory/{args.env}.py{suggestion(args.env, known)}; "
                 f"inventories: {', '.join(known)}")
    command = [str(Path(sys.executable).parent / "pyinfra")]
    if verb.read_only or args.verb == "deploy" or os.environ.get("CI"):
        command.append("-y")  # read-only verbs never prompt; `deploy` is the user's own yes
    command += ["-v"] * args.verbose
    if args.limit:
        command += ["--limit", args.limit]
    command += [str(inventory.relative_to(root)), verb.deploy_file, *verb.extra]
    for key, value in verb.data(args).items():
        command += ["--data", f"{key}={value}"]
    return command


def plan_changes(output: str) -> bool:
    """Whether a deploy's --dry says any host would change (each host's announcement ends with
    ``plan: changes`` or ``plan: no changes``, from the same decision the run gates on)."""
    return "] plan: changes" in output


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subs = _parser()
    _refuse_unknown(argv, subs)
    args = parser.parse_args(argv)
    command = pyinfra_command(args)
    if args.verb != "plan":
        return subprocess.run(command, cwd=PROJECT_ROOT, check=False).returncode
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        return 1
    return PLAN_CHANGES if plan_changes(result.stdout + result.stderr) else 0


if __name__ == "__main__":
    sys.exit(main())
