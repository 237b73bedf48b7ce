"""No requirements file and nothing installed on the control machine falls below the minimum
safe versions (security/minimum-versions.txt); the images are checked in
tests/integration/test_services_hardened.py."""

from __future__ import annotations

import importlib.metadata

from packaging.version import Version

from tests import versions
from tests.versions import minimums, requirement_files, too_low_in_file, too_low_installed


def test_every_requirements_file_keeps_to_the_minimum_safe_versions():
    floor = minimums()
    files = requirement_files()
    assert len(files) >= 8  # the control machine's two and each image's
    assert [problem for path in files for problem in too_low_in_file(path, floor)] == []


def test_the_control_machines_venv_keeps_to_the_minimum_safe_versions():
    installed = {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()}
    assert too_low_installed(installed, minimums()) == []


def test_a_pin_a_bound_or_a_name_alone_below_a_minimum_is_found(tmp_path, monkeypatch):
    floor = {"starlette": Version("0.49.1"), "h11": Version("0.16.0")}
    (tmp_path / "requirements.txt").write_text(
        "fastapi==0.115.12\nstarlette==0.46.2  # what fastapi 0.115 held it to\nh11>=0.14\nstarlette\n"
        "h11>=0.16.0,<1\nstarlette~=0.50.0\n-r other.txt\n")
    monkeypatch.setattr(versions, "ROOT", tmp_path)
    problems = too_low_in_file(tmp_path / "requirements.txt", floor)
    assert [p.split(": ", 1)[0] for p in problems] == ["requirements.txt:2", "requirements.txt:3",
                                                       "requirements.txt:4"]
    assert too_low_installed({"Starlette": "0.46.2", "h11": "0.16.0", "other": "0.1"}, floor) == [
        "Starlette==0.46.2 (minimum 0.49.1)"]

