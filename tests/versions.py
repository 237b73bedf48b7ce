"""security/minimum-versions.txt, and what falls below it: in a requirements file, in the
control machine's venv, or in an image (the tests hold all three to the one list)."""

from __future__ import annotations

from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
MINIMUMS_FILE = ROOT / "security" / "minimum-versions.txt"
LOWER_BOUNDS = {"==", "===", ">=", "~=", ">"}


def minimums() -> dict[str, Version]:
    """Package (canonical name) -> its lowest safe version."""
    found: dict[str, Version] = {}
    for line in MINIMUMS_FILE.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            requirement = Requirement(text)
            (bound,) = requirement.specifier
            assert bound.operator == ">=", f"{MINIMUMS_FILE.name}: {text!r} is not NAME>=VERSION"
            found[canonicalize_name(requirement.name)] = Version(bound.version)
    return found


def requirement_files() -> list[Path]:
    """Every requirements file of the project: the control machine's and each image's."""
    skip = {".venv", ".bench", ".git", "node_modules"}
    return sorted(p for p in ROOT.rglob("requirements*.txt") if not skip & set(p.relative_to(ROOT).parts))


def too_low_in_file(path: Path, floor: dict[str, Version]) -> list[str]:
    """Each requirement of ``path`` on a listed package that lets pip install a version below its
    minimum: a pin below it, a lower bound below it, or no lower bound at all."""
    problems = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-"):
            continue
        requirement = Requirement(text)
        minimum = floor.get(canonicalize_name(requirement.name))
        if minimum is None:
            continue
        bounds = [Version(s.version) for s in requirement.specifier if s.operator in LOWER_BOUNDS]
        if not bounds or max(bounds) < minimum:
            problems.append(f"{path.relative_to(ROOT)}:{number}: {text} allows versions below {minimum}")
    return problems


def too_low_installed(installed: dict[str, str], floor: dict[str, Version]) -> list[str]:
    """``name==version`` of each installed distribution below its minimum."""
    return sorted(f"{name}=={version} (minimum {floor[canonicalize_name(name)]})"
                  for name, version in installed.items()
                  if canonicalize_name(name) in floor and Version(version) < floor[canonicalize_name(name)])


# Run with an image's own interpreter: its installed distributions, as JSON (name -> version).
LIST_DISTRIBUTIONS = ("import importlib.metadata as m, json; "
                      "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
