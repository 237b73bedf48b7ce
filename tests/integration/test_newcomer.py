"""docs/adding-a-service.md, both paths followed to the letter in one scratch copy: a service
from its own Dockerfile (the page's Dockerfile, entry and route, with the example's server.js),
and one from the Python template (copy it, paste the page's entry and route, place it); one
deploy, then both are called through the gateway.

The snippets are taken from docs/adding-a-service.md itself, so a page that drifts from what works
fails here rather than for the next newcomer.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, plans

from .conftest import GATEWAY, containers, deploy, https, project_copy

SERVICE = "notes-service"
OWN = "hello-node"  # the Dockerfile path's service


def readme_section(title: str) -> str:
    """One section of the documentation's "Adding a service" page, linked from the README."""
    page = (ROOT / "docs" / "adding-a-service.md").read_text()
    return page.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def add_own_dockerfile_as_documented(copy: Path) -> str:
    """The Dockerfile section's steps; returns the route to call it by."""
    section = readme_section("Your own Dockerfile")
    folder = copy / "files" / "services" / OWN
    folder.mkdir()
    (folder / "Dockerfile").write_text(textwrap.dedent(re.search(r"```dockerfile\n(.*?)```", section, re.S)[1]))
    shutil.copy(copy / "examples" / "node-hello" / "server.js", folder / "server.js")
    entry = re.search(r"```python\n(.*?)```", section, re.S)[1]
    all_py = copy / "group_data" / "all.py"
    route = re.search(r'`("/api/hello/": "hello-node")`', section)[1]
    text = all_py.read_text().replace("services = {\n", "services = {\n" + entry, 1)
    text = text.replace('"routes": {\n', '"routes": {\n            ' + route + ",\n", 1)
    # Placed, for the inventories with groups, as the page says (in front of the apps already there).
    assert re.search(r'`"apps": \[\.\.\., "hello-node"\]`', section), "the page no longer says to place it"
    all_py.write_text(text.replace('"apps": [', '"apps": ["hello-node", ', 1))
    return "/api/hello/"


def add_service_as_documented(copy: Path) -> None:
    section = readme_section("The Python template")
    # Step 1: cp -r files/services/_template files/services/notes-service, then name it.
    command = re.search(r"cp -r (\S+) (\S+)", section)
    assert command, "the README no longer says which folder to copy"
    shutil.copytree(copy / command[1], copy / command[2])
    main = copy / command[2] / "app" / "main.py"
    main.write_text(main.read_text().replace('NAME = "template"', f'NAME = "{SERVICE}"')
                    .replace("template_items", "notes_items"))
    # Step 2: the README's services entry, pasted into group_data/all.py.
    entry = re.search(r"```python\n(.*?)```", section, re.S)[1]
    all_py = copy / "group_data" / "all.py"
    text = all_py.read_text().replace("services = {\n", "services = {\n" + entry, 1)
    # Step 3: the route, and the gateway waits for the new service.
    route = re.search(r'`("/api/notes/": "notes-service")`', section)[1]
    text = text.replace('"routes": {\n', '"routes": {\n            ' + route + ",\n", 1)
    text = text.replace('"depends_on": ["auth-service", "creator-hub", "ai-engine", "channel-service"]',
                        f'"depends_on": ["auth-service", "creator-hub", "ai-engine", "channel-service", "{SERVICE}"]')
    # Step 4: placement, for the inventories with groups.
    text = text.replace('"apps": ["auth-service", "creator-hub", "channel-service"]',
                        f'"apps": ["auth-service", "creator-hub", "channel-service", "{SERVICE}"]')
    all_py.write_text(text)


@pytest.fixture(scope="module")
def with_notes(stack, session_tmp) -> Iterator[Path]:
    copy = project_copy(session_tmp, "newcomer")
    add_service_as_documented(copy)
    add_own_dockerfile_as_documented(copy)
    result = deploy(session_tmp, None, copy)
    assert result.returncode == 0, result.output[-6000:]
    yield copy
    restored = deploy(session_tmp)  # the usual stack again: notes-service is removed
    assert restored.returncode == 0, restored.output[-6000:]
    assert SERVICE not in containers() and OWN not in containers()


def test_the_documented_dockerfile_service_answers_through_the_gateway(with_notes):
    hello = https.get(f"{GATEWAY}/api/hello/", timeout=10)
    assert hello.status_code == 200, hello.text
    assert hello.json()["hello"] == "world"
    assert containers()[OWN]["Config"]["Cmd"] == ["node", "/app/server.js"]


def test_the_documented_service_deploys_and_answers_through_the_gateway(with_notes):
    health = https.get(f"{GATEWAY}/api/notes/health", timeout=10)
    assert health.status_code == 200, health.text
    assert health.json()["checks"] == {"postgres": "ok"}  # no Redis: it did not declare one
    created = https.post(f"{GATEWAY}/api/notes/items", json={"text": "first note"}, timeout=10)
    assert created.status_code == 201, created.text  # /api/notes/items reached the app as /items
    assert {"id": created.json()["id"], "text": "first note"} in https.get(f"{GATEWAY}/api/notes/items",
                                                                            timeout=10).json()
    env = containers()[SERVICE]["Config"]["Env"]
    assert any(v.startswith("POSTGRES_HOST=") for v in env)
    assert not any(v.startswith("REDIS_HOST=") for v in env)


def test_the_documented_placement_places_it_in_the_example_inventories(with_notes):
    for inventory in ("inventory/staging.py", "inventory/production.py"):
        hosts = plans(inventory, with_notes)
        assert any(SERVICE in plan.services for plan in hosts.values()), inventory
        assert any(OWN in plan.services for plan in hosts.values()), inventory
