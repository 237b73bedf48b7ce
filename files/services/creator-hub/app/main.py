"""creator-hub: authenticated uploads into a named volume, metadata in PostgreSQL.

The bearer token is checked with auth-service on every request, so a logout there
locks the client out here at once.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from fastapi import Depends, HTTPException, UploadFile
from stackapp import Backends, authorization_header, create_app, env

SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    id UUID PRIMARY KEY,
    owner_id BIGINT NOT NULL,
    filename TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS uploads_owner ON uploads (owner_id, created_at);
"""
UPLOAD_DIR = Path(env("UPLOAD_DIR", "/data/uploads"))
CHUNK = 1024 * 1024

backends = Backends()
app = create_app("creator-hub", backends, {"auth-service": f"{env('AUTH_SERVICE_URL')}/health"}, schema=SCHEMA)


def clean_filename(name: str | None) -> str:
    """The name to record, or a 422: no control characters (PostgreSQL refuses NUL), no path,
    at most 255 characters. The file itself is stored under a generated id, never this name."""
    name = name or "upload"
    if len(name) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in name) or "/" in name or "\\" in name:
        raise HTTPException(status_code=422, detail="filename must be 1-255 characters, without control "
                                                    "characters or path separators")
    return name


@app.post("/uploads", status_code=201)
async def upload(file: UploadFile, authorization: str | None = Depends(authorization_header)) -> dict:
    user = await backends.current_user(authorization)
    filename = clean_filename(file.filename)
    upload_id = uuid.uuid4()
    digest = hashlib.sha256()
    size = 0
    target = UPLOAD_DIR / str(upload_id)
    try:
        with target.open("wb") as out:
            while chunk := await file.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        assert backends.db is not None
        await backends.db.execute(
            "INSERT INTO uploads (id, owner_id, filename, size_bytes, sha256) VALUES ($1, $2, $3, $4, $5)",
            upload_id, user["user_id"], filename, size, digest.hexdigest(),
        )
    except BaseException:
        target.unlink(missing_ok=True)  # no file without its row
        raise
    return {"id": str(upload_id), "filename": filename, "size": size, "sha256": digest.hexdigest()}


@app.get("/uploads")
async def list_uploads(authorization: str | None = Depends(authorization_header)) -> list[dict]:
    user = await backends.current_user(authorization)
    assert backends.db is not None
    rows = await backends.db.fetch(
        "SELECT id, filename, size_bytes, sha256, created_at FROM uploads "
        "WHERE owner_id = $1 ORDER BY created_at", user["user_id"],
    )
    return [
        {"id": str(r["id"]), "filename": r["filename"], "size": r["size_bytes"],
         "sha256": r["sha256"], "created_at": r["created_at"].isoformat()}
        for r in rows
    ]
