"""A minimal service to copy: `cp -r files/services/_template files/services/<name>`.

It depends on postgres only (see README, "Adding a service"). stackapp opens PostgreSQL and
Redis only when the service lists them in depends_on, and /health checks exactly those plus
the HTTP dependencies named below. Behind the gateway, a request to
/api/<name>/items arrives here as /items: the gateway strips the route prefix.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from stackapp import Backends, create_app

SCHEMA = """
CREATE TABLE IF NOT EXISTS template_items (  -- every service shares the database: prefix your tables
    id BIGSERIAL PRIMARY KEY,
    text TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"""
NAME = "template"  # your service's name, as in group_data

backends = Backends()
# The third argument maps dependency names to health URLs, e.g.
# {"auth-service": f"{env('AUTH_SERVICE_URL')}/health"} when you depend on auth-service
# (then use stackapp.user_of(backends) as a dependency to require a signed-in user).
app = create_app(NAME, backends, {}, schema=SCHEMA)


class Item(BaseModel):
    text: str = Field(min_length=1, max_length=1000, pattern=r"^[^\x00]*$")  # PostgreSQL refuses NUL


@app.post("/items", status_code=201)
async def add_item(item: Item) -> dict:
    assert backends.db is not None  # opened at startup, since the service depends on postgres
    row = await backends.db.fetchrow("INSERT INTO template_items (text) VALUES ($1) RETURNING id", item.text)
    return {"id": row["id"], "text": item.text}


@app.get("/items")
async def list_items() -> list[dict]:
    assert backends.db is not None
    rows = await backends.db.fetch("SELECT id, text FROM template_items ORDER BY id DESC LIMIT 100")
    return [{"id": r["id"], "text": r["text"]} for r in rows]
