"""Secrets are generated once and never rotated by a redeploy; preparing decides them, and
only a run that executes writes the control machine's copy."""

from __future__ import annotations

import json
import stat

import pytest

from stackdeploy import secrets
from stackdeploy.model import StackError
from tests.conftest import shipped_helper
from tests.unit.fakehost import fake_host


@pytest.fixture(autouse=True)
def new_run(monkeypatch):
    """Each test starts a run of its own (what one run resolved is shared by its hosts)."""
    monkeypatch.setattr(secrets, "_this_run", {})


def keep(store):
    """Execute the ``kept`` operation as a real run does; True when it wrote the store."""
    with fake_host({}) as host:
        host.state.is_executing = True
        written = list(secrets.kept._inner(store=store))
        for command in written:
            assert command.function(host.state, host) is not False
    return bool(written)


def test_generated_once_then_reused(tmp_path, monkeypatch):
    store = tmp_path / "s.json"
    first = secrets.resolve(["A", "B"], store, None)
    assert len(first.values["A"]) == 48 and first.values["A"] != first.values["B"] and first.new == ["A", "B"]
    assert secrets.resolve(["A", "B"], store, None) == secrets.Resolved(first.values, [])  # another host, same run
    assert not store.exists()  # preparing writes nothing
    assert keep(store)
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    monkeypatch.setattr(secrets, "_this_run", {})  # the next run
    assert secrets.resolve(["A", "B"], store, None).values == first.values
    assert not keep(store)  # nothing new: a noop


def test_host_copy_is_adopted_by_a_new_control_machine(tmp_path):
    store = tmp_path / "new.json"
    resolved = secrets.resolve(["A", "B"], store, {"A": "from-host"})
    assert resolved.values["A"] == "from-host" and resolved.new == ["B"]
    keep(store)
    assert json.loads(store.read_text()) == resolved.values


def test_new_secret_added_without_touching_old_ones(tmp_path):
    store = tmp_path / "s.json"
    first = secrets.resolve(["A"], store, None).values
    second = secrets.resolve(["A", "C"], store, first)
    assert second.values["A"] == first["A"] and second.new == ["C"]


def test_conflicting_copies_are_refused(tmp_path):
    store = tmp_path / "s.json"
    secrets.resolve(["A"], store, None)
    with pytest.raises(StackError, match="secret 'A' differs between the host"):
        secrets.resolve(["A"], store, {"A": "something-else"})


def test_a_check_plans_new_secrets_with_placeholders(tmp_path):
    resolved = secrets.resolve(["A", "B"], tmp_path / "s.json", {"A": "from-host"}, generate=False)
    assert resolved.values == {"A": "from-host", "B": secrets.PLACEHOLDER} and resolved.new == ["B"]



def test_the_helper_writes_each_secret_as_a_file_only_its_user_can_reach(helpers_dir):
    (helpers_dir / ".secrets.json").write_text(json.dumps({"JWT_SECRET": "j-value", "REDIS_PASSWORD": "r-value"}))
    (helpers_dir / "secrets").mkdir(mode=0o755)
    (helpers_dir / "secrets" / "DROPPED").write_text("no longer a secret of the stack")
    with shipped_helper(helpers_dir, "stackctl") as stackctl:
        stackctl.write_secret_files()
        stackctl.write_secret_files()  # again: nothing to change
    directory = helpers_dir / "secrets"
    assert directory.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in directory.iterdir()) == ["JWT_SECRET", "REDIS_PASSWORD"]
    assert (directory / "JWT_SECRET").read_text() == "j-value"  # exactly the value: no newline
