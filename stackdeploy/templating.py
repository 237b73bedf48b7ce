"""The one renderer of templates/: the deploy and the tests render through it."""

from __future__ import annotations

import json

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from stackdeploy import TEMPLATES_DIR


def compose_json(value: object) -> str:
    """``value`` as JSON for compose.yaml, with ``$`` doubled so compose does not interpolate it."""
    return json.dumps(value).replace("$", "$$")


_jinja = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_jinja.filters["compose_json"] = compose_json


def render(template: str, **context: object) -> str:
    """Render one template from templates/."""
    return _jinja.get_template(template).render(**context)
