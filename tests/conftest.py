"""Shared test helpers: the project's own stack definition, loaded like pyinfra does."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from stackdeploy.model import read_settings

ROOT = Path(__file__).resolve().parent.parent


def group_data() -> dict[str, Any]:
    """group_data/all.py as a plain dict (a deep copy: tests may edit it freely)."""
    return copy.deepcopy(read_settings(ROOT / "group_data" / "all.py"))


@pytest.fixture
def data() -> dict[str, Any]:
    return group_data()
