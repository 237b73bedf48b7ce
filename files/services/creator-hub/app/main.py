"""creator-hub: authenticated uploads into a named volume, metadata in PostgreSQL.

The bearer token is checked with auth-service on every request, so a logout there
locks the client out here at once. Each user sees and downloads only their own uploads;
another user's upload id answers 404, as if it did not exist.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

from fastapi import Depends, HTTPException, Response, UploadFile
from fastapi.responses import FileResponse
from stackapp import NEEDS_TOKEN, Backends, create_app, env, unprocessable, user_of

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
SIGNED_IN = Depends(user_of(backends))
NOT_FOUND = {**NEEDS_TOKEN, 404: {"description": "no upload with this id belongs to the caller"}}


def clean_filename(name: str | None) -> str:
    """The name to record, or a 422: no control characters (PostgreSQL refuses NUL), no path,
    at most 255 characters. The file itself is stored under a generated id, never this name."""
    name = name or "upload"
    if len(name) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in name) or "/" in name or "\\" in name:
        raise unprocessable(["body", "file", "filename"], "filename must be 1-255 characters, without control "
                                                          "characters or path separators")
    return name


def _upload_json(row: Any) -> dict:
    return {"id": str(row["id"]), "filename": row["filename"], "size": row["size_bytes"],
            "sha256": row["sha256"], "created_at": row["created_at"].isoformat()}


async def _own_upload(upload_id: uuid.UUID, user: dict) -> Any:
    assert backends.db is not None
    row = await backends.db.fetchrow(
        "SELECT id, filename, size_bytes, sha256, created_at FROM uploads WHERE id = $1 AND owner_id = $2",
        upload_id, user["user_id"],
    )
    if row is None:
        raise HTTPException(status_code=404, detail="no such upload")
    return row


# OpenAPI links: a client (and schemathesis's stateful phase) learns that an upload's id
# is what the metadata and download routes take.
UPLOAD_LINKS = {name: {"operationId": op, "parameters": {"upload_id": "$response.body#/id"}}
                for name, op in (("GetUpload", "get_upload"), ("DownloadUpload", "download_upload"))}


@app.post("/uploads", status_code=201, responses={**NEEDS_TOKEN, 201: {"description": "stored", "links": UPLOAD_LINKS}})
async def upload(file: UploadFile, user: dict = SIGNED_IN) -> dict:
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


@app.get("/uploads", responses=NEEDS_TOKEN)
async def list_uploads(user: dict = SIGNED_IN) -> list[dict]:
    assert backends.db is not None
    rows = await backends.db.fetch(
        "SELECT id, filename, size_bytes, sha256, created_at FROM uploads "
        "WHERE owner_id = $1 ORDER BY created_at", user["user_id"],
    )
    return [_upload_json(r) for r in rows]


@app.get("/uploads/{upload_id}", responses=NOT_FOUND, operation_id="get_upload")
async def upload_metadata(upload_id: uuid.UUID, user: dict = SIGNED_IN) -> dict:
    return _upload_json(await _own_upload(upload_id, user))


@app.delete("/uploads/{upload_id}", status_code=204, response_class=Response, responses=NOT_FOUND)
async def delete_upload(upload_id: uuid.UUID, user: dict = SIGNED_IN) -> Response:
    """The row first, then the file: a failure in between leaves a file no row points to
    (invisible, and removed again by the next delete), never a row without its file."""
    row = await _own_upload(upload_id, user)
    assert backends.db is not None
    await backends.db.execute("DELETE FROM uploads WHERE id = $1", row["id"])
    (UPLOAD_DIR / str(row["id"])).unlink(missing_ok=True)
    return Response(status_code=204)


@app.get("/uploads/{upload_id}/content", operation_id="download_upload", response_class=FileResponse, responses={
    **NOT_FOUND,
    200: {"content": {"application/octet-stream": {}}, "description": "the file, streamed"},
    206: {"content": {"application/octet-stream": {}}, "description": "the requested byte range"},
    416: {"description": "the range lies outside the file"},
})
async def download(upload_id: uuid.UUID, user: dict = SIGNED_IN) -> FileResponse:
    """The file as uploaded, streamed from the volume; a Range header gets 206 and those bytes."""
    row = await _own_upload(upload_id, user)
    return FileResponse(UPLOAD_DIR / str(row["id"]), media_type="application/octet-stream", filename=row["filename"])
