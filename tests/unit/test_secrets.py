"""Secrets are generated once and never rotated by a redeploy."""

from __future__ import annotations

import stat

import pytest

from stackdeploy import secrets
from stackdeploy.model import StackError


def test_generated_once_then_reused(tmp_path):
    store = tmp_path / "s.json"
    first = secrets.resolve(["A", "B"], store, None)
    assert len(first["A"]) == 48 and first["A"] != first["B"]
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert secrets.resolve(["A", "B"], store, None) == first


def test_host_copy_is_adopted_by_a_new_control_machine(tmp_path):
    on_host = {"A": "from-host"}
    assert secrets.resolve(["A", "B"], tmp_path / "new.json", on_host)["A"] == "from-host"


def test_new_secret_added_without_touching_old_ones(tmp_path):
    store = tmp_path / "s.json"
    first = secrets.resolve(["A"], store, None)
    second = secrets.resolve(["A", "C"], store, first)
    assert second["A"] == first["A"] and "C" in second


def test_conflicting_copies_are_refused(tmp_path):
    store = tmp_path / "s.json"
    secrets.resolve(["A"], store, None)
    with pytest.raises(StackError, match="secret 'A' differs between the host"):
        secrets.resolve(["A"], store, {"A": "something-else"})
