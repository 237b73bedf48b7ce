"""Every pyinfra fact of stackdeploy/facts/ against recorded output, the way pyinfra tests its own facts.

A fact is the deploy's only view of a host: its command is what runs there and its ``process()``
is what the deploy believes. So each fact has a table of cases in ``facts/<module>.<Fact>/*.json``
(pyinfra keeps ``tests/facts/<module>.<Fact>/*.json`` the same way): the arguments, the exact
command they render, the output lines, and the value ``process()`` must give or the error it must
raise. The outputs are recorded from a host running the stack where one can be (Docker 20.10, the
``creatorstack`` project; secret values made up, long outputs trimmed) and written by Docker's
documented formats where not (a swarm); each file's "note" says which. Recorded output catches
what a hand-made line hides: a real ``docker inspect`` line, a real ``stackctl.py releases``.

A fact added without a table fails ``test_every_fact_has_fixtures``. A case whose "defect" key
is set records a known product defect: it is expected to fail (strictly, so it fails once the
defect is fixed and the key must go). tests/unit/test_facts.py keeps the behaviour tests
(what the deploy reads from a fact, the commands run against a stand-in docker).

Keys of a case: "arg" (the fact's command keyword arguments), "command" (the raw command),
"output" (its lines), then "fact" (the expected value in JSON form: dataclasses as dicts,
frozensets as sorted lists, tuples as lists) or "raises" (a substring of the FactProcessError);
optionally "requires_command", "note" and "defect".
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api import FactBase
from pyinfra.api.exceptions import FactProcessError

import stackdeploy.facts

FIXTURES = Path(__file__).parent / "facts"
KEYS = {"arg", "command", "output", "fact", "raises", "requires_command", "note", "defect"}


def fact_classes() -> dict[str, type[FactBase]]:
    """Every FactBase subclass defined in stackdeploy/facts/, by ``<module>.<Fact>``."""
    found: dict[str, type[FactBase]] = {}
    for module_info in pkgutil.iter_modules(stackdeploy.facts.__path__):
        module = importlib.import_module(f"stackdeploy.facts.{module_info.name}")
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, FactBase) and value is not FactBase
                    and value.__module__ == module.__name__):
                found[f"{module_info.name}.{value.__name__}"] = value
    return found


FACTS = fact_classes()
FIXTURE_FILES = sorted(FIXTURES.glob("*/*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def case_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def to_json(value: Any) -> Any:
    """A fact's value in the fixtures' JSON form."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(to_json(item) for item in value)
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    return value


def process_param(path: Path) -> Any:
    defect = load(path).get("defect")
    marks = [pytest.mark.xfail(reason=f"product defect: {defect}", strict=True)] if defect else []
    return pytest.param(path, id=case_id(path), marks=marks)


def test_every_fact_has_fixtures():
    """A fact cannot be added untested, nor a table outlive its fact (a rename)."""
    assert FACTS, "no fact found in stackdeploy/facts/"
    tables = {path.parent.name for path in FIXTURE_FILES}
    assert sorted(set(FACTS) - tables) == [], "facts without a fixture directory in tests/unit/facts/"
    assert sorted(tables - set(FACTS)) == [], "fixture directories that name no fact"


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=case_id)
def test_fact_command(path: Path):
    """The case is well formed and the arguments render exactly its command."""
    case = load(path)
    assert set(case) <= KEYS, f"unknown keys: {sorted(set(case) - KEYS)}"
    assert {"arg", "command", "output"} <= set(case) and ("fact" in case) != ("raises" in case)
    assert isinstance(case["output"], list) and case["output"], "pyinfra calls process() only with output"
    fact = FACTS[path.parent.name]()
    command = fact.command(**case["arg"]) if callable(fact.command) else fact.command
    assert (command if isinstance(command, str) else command.get_raw_value()) == case["command"]
    if "requires_command" in case:
        requires = fact.requires_command
        assert (requires(**case["arg"]) if callable(requires) else requires) == case["requires_command"]


@pytest.mark.parametrize("path", [process_param(path) for path in FIXTURE_FILES])
def test_fact_process(path: Path):
    """``process(output)`` gives the case's value, or refuses the output with its error."""
    case = load(path)
    fact = FACTS[path.parent.name]()
    if "raises" in case:
        with pytest.raises(FactProcessError) as raised:
            fact.process(case["output"])
        assert case["raises"] in str(raised.value)
    else:
        assert to_json(fact.process(case["output"])) == case["fact"]
