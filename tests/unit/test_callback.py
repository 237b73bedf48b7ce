"""A refusal raised in a Python callback is the host's one error line: no traceback first."""

from __future__ import annotations

import logging

import pytest
from pyinfra import host as current_host
from pyinfra.api import OperationError

from stackdeploy.callback import callback
from tests.unit.fakehost import fake_host


def refuse() -> None:
    raise OperationError("DEPLOY LOCKED: host somehost is held by ana@laptop")


def test_a_refusal_fails_the_command_with_its_message_alone(caplog):
    with fake_host({}) as host, caplog.at_level(logging.DEBUG):
        status = callback(refuse).execute(host.state, host, {})
    assert status is False
    assert [record.getMessage() for record in caplog.records if "DEPLOY LOCKED" in record.getMessage()] == [
        "[somehost] DEPLOY LOCKED: host somehost is held by ana@laptop"]
    assert "Traceback" not in caplog.text


def test_a_callback_runs_with_its_arguments_for_its_host():
    seen = []
    with fake_host({}) as host:
        assert callback(lambda a, b=0: seen.append((a, b, current_host.name)), 1, b=2).execute(host.state, host, {})
    assert seen == [(1, 2, "somehost")]


def test_any_other_error_is_not_swallowed():
    with fake_host({}) as host, pytest.raises(ZeroDivisionError):
        callback(lambda: 1 / 0).execute(host.state, host, {})
