"""The one renderer of templates/: the deploy and the tests render through it."""

from __future__ import annotations

import json

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from stackdeploy import TEMPLATES_DIR


def compose_escaped(argv: list[str]) -> list[str]:
    """``argv`` as compose.yaml must hold it: ``$`` doubled, so compose does not interpolate it."""
    return [arg.replace("$", "$$") for arg in argv]


def compose_json(argv: list[str]) -> str:
    """``argv`` as a JSON list for compose.yaml (escaped, see ``compose_escaped``)."""
    return json.dumps(compose_escaped(argv))


def compose_text(text: str) -> str:
    """``text`` as one JSON (so YAML) string for compose.yaml, ``$`` doubled."""
    return json.dumps(text.replace("$", "$$"))


_jinja = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_jinja.filters["compose_json"] = compose_json
_jinja.filters["compose_text"] = compose_text


def render(template: str, **context: object) -> str:
    """Render one template from templates/."""
    return _jinja.get_template(template).render(**context)
