"""`stackdeploy`: each verb is the pyinfra command it stands for, read-only verbs never
prompt, a mistyped verb, option or environment gets one line with the nearest one, and
`plan`'s exit status follows the deploy's own decision."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stackdeploy import cli

PYINFRA = str(Path(sys.executable).parent / "pyinfra")


def command(*argv: str) -> list[str]:
    parser, subs = cli._parser()
    cli._refuse_unknown(list(argv), subs)
    return cli.pyinfra_command(parser.parse_args(list(argv)))


def test_each_verb_runs_its_deploy_file_on_the_named_inventory(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    assert command("deploy") == [PYINFRA, "-y", "inventory/local.py", "deploy.py"]
    assert command("rollback", "staging", "--to", "R1") == [PYINFRA, "inventory/staging.py", "rollback.py",
                                                           "--data", "release=R1"]
    assert command("restore", "production", "B7", "--service", "postgres", "--limit", "data") == [
        PYINFRA, "--limit", "data", "inventory/production.py", "restore.py", "--data", "backup=B7",
        "--data", "service=postgres"]
    assert command("plan", "production") == [PYINFRA, "-y", "inventory/production.py", "deploy.py", "--dry"]


def test_read_only_verbs_never_prompt(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    for verb in ("plan", "verify", "smoke", "releases", "logs"):
        assert command(verb)[1] == "-y", verb
    assert "-y" not in command("rollback") and "-y" not in command("provision")


def test_logs_options_become_its_data_and_a_service_may_come_first():
    assert command("logs", "staging", "creator-hub", "auth-service", "--since", "15m", "--grep", "err")[-6:] == [
        "--data", "service=creator-hub,auth-service", "--data", "since=15m", "--data", "grep=err"]
    assert command("logs", "creator-hub")[2:5] == ["inventory/local.py", "logs.py", "--data"]


@pytest.mark.parametrize(("argv", "expected"), [
    (["rollbak"], "stackdeploy: unknown verb 'rollbak' (did you mean 'rollback'?)"),
    (["logs", "--greb", "x"], "stackdeploy logs: unknown option '--greb' (did you mean '--grep'?)"),
    (["deploy", "prodution"], "stackdeploy: no inventory/prodution.py (did you mean 'production'?)"),
], ids=["verb", "option", "inventory"])
def test_a_mistyped_word_gets_the_nearest_one(argv, expected):
    with pytest.raises(SystemExit) as info:
        command(*argv)
    assert str(info.value).startswith(expected)


@pytest.mark.parametrize("verb", list(cli.VERBS))
def test_every_verb_has_help_with_examples(verb, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([verb, "--help"])
    assert info.value.code == 0 and f"stackdeploy {verb}" in capsys.readouterr().out.split("examples:")[1]


def test_plan_says_changes_from_the_hosts_announcements():
    assert cli.plan_changes("    [@local] image source: local; ...\n    [@local] plan: changes\n")
    assert not cli.plan_changes("    [a] plan: no changes\n    [b] plan: no changes\n")
