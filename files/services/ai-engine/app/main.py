"""ai-engine: documents in ChromaDB (embedded through Ollama), completions from Ollama.

Talks to both over their HTTP APIs, so the image carries no ML libraries. Embeddings
come from Ollama's /api/embeddings and are handed to ChromaDB with each document.

Every route but /health needs a signed-in user (checked with auth-service): writes so that
nobody can add or overwrite documents anonymously, and reads and completions too, since
they return stored documents and cost model time. A document belongs to the user who
first stored it; only they can overwrite it by id, and a query finds only the caller's own
documents (each carries its owner in ChromaDB as the metadata key ``owner_id``). With
``SHARED_CORPUS=true`` in the service's env, every signed-in user queries every document.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Response
from pydantic import BaseModel, Field
from stackapp import NEEDS_TOKEN, Backends, create_app, env, user_of

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    chars INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Documents stored before ownership existed have none; the first user to write one claims it.
ALTER TABLE documents ADD COLUMN IF NOT EXISTS owner_id BIGINT;
"""
OLLAMA = env("OLLAMA_URL")
CHROMA = env("CHROMADB_URL")
MODEL = env("OLLAMA_MODEL", "llama3.2")
SHARED_CORPUS = env("SHARED_CORPUS", "false").lower() == "true"
OWNER_KEY = "owner_id"  # set by the service on every document: a writer's own value is replaced
COLLECTIONS = f"{CHROMA}/api/v2/tenants/default_tenant/databases/default_database/collections"

backends = Backends()
app = create_app(
    "ai-engine", backends,
    {"ollama": f"{OLLAMA}/api/version", "chromadb": f"{CHROMA}/api/v2/heartbeat",
     "auth-service": f"{env('AUTH_SERVICE_URL')}/health"},
    schema=SCHEMA,
)
SIGNED_IN = Depends(user_of(backends))


DOCUMENT_ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"
DOCUMENT_ID = Path(min_length=1, max_length=128, pattern=DOCUMENT_ID_PATTERN)
# What ChromaDB accepts as a metadata value: short strings, 64-bit integers, finite floats.
MetadataValue = (Annotated[str, Field(max_length=1000)] | bool | Annotated[int, Field(ge=-2**63, lt=2**63)]
                 | Annotated[float, Field(allow_inf_nan=False)])


class Document(BaseModel):
    text: str = Field(min_length=1, max_length=100_000)
    id: str | None = Field(default=None, min_length=1, max_length=128, pattern=DOCUMENT_ID_PATTERN)
    # ChromaDB reserves keys starting with '#' or '$' (found by schemathesis).
    metadata: dict[Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^#$]")], MetadataValue] | None = (
        Field(default=None, max_length=32))


class Query(BaseModel):
    text: str = Field(min_length=1, max_length=100_000)
    n_results: int = Field(default=3, ge=1, le=50)


class Prompt(BaseModel):
    prompt: str = Field(min_length=1, max_length=100_000)


async def _post(url: str, payload: dict) -> dict:
    assert backends.http is not None
    response = await backends.http.post(url, json=payload, timeout=60.0)
    if response.status_code >= 400:
        raise HTTPException(status_code=502, detail=f"{url}: {response.status_code} {response.text[:200]}")
    return response.json()


async def _embed(text: str) -> list[float]:
    result = await _post(f"{OLLAMA}/api/embeddings", {"model": MODEL, "prompt": text})
    return result["embedding"]


async def _collection_id() -> str:
    result = await _post(COLLECTIONS, {"name": "documents", "get_or_create": True})
    return result["id"]


@app.post("/documents", status_code=201,
          responses={**NEEDS_TOKEN, 403: {"description": "the id belongs to another user"}})
async def add_document(doc: Document, user: dict = SIGNED_IN) -> dict:
    doc_id = doc.id or uuid.uuid4().hex
    payload = {"ids": [doc_id], "embeddings": [await _embed(doc.text)], "documents": [doc.text],
               "metadatas": [{**(doc.metadata or {}), OWNER_KEY: user["user_id"]}]}
    assert backends.db is not None
    async with backends.db.acquire() as conn, conn.transaction():
        # The row is claimed (or found to be someone else's) before ChromaDB is written, and
        # committed only once ChromaDB has the document.
        owned = await conn.fetchval(
            "INSERT INTO documents (id, chars, owner_id) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE "
            "SET chars = $2, owner_id = $3 WHERE documents.owner_id IS NULL OR documents.owner_id = $3 "
            "RETURNING id",
            doc_id, len(doc.text), user["user_id"],
        )
        if owned is None:
            raise HTTPException(status_code=403, detail="this document id belongs to another user")
        await _post(f"{COLLECTIONS}/{await _collection_id()}/upsert", payload)
    return {"id": doc_id}


@app.delete("/documents/{doc_id}", status_code=204, response_class=Response,
            responses={**NEEDS_TOKEN, 404: {"description": "no document with this id belongs to the caller"}})
async def delete_document(doc_id: str = DOCUMENT_ID, user: dict = SIGNED_IN) -> Response:
    assert backends.db is not None
    async with backends.db.acquire() as conn, conn.transaction():
        deleted = await conn.fetchval("DELETE FROM documents WHERE id = $1 AND owner_id = $2 RETURNING id",
                                      doc_id, user["user_id"])
        if deleted is None:
            raise HTTPException(status_code=404, detail="no such document")
        await _post(f"{COLLECTIONS}/{await _collection_id()}/delete", {"ids": [doc_id]})
    return Response(status_code=204)


@app.post("/query", responses=NEEDS_TOKEN)
async def query(q: Query, user: dict = SIGNED_IN) -> dict:
    search = {"query_embeddings": [await _embed(q.text)], "n_results": q.n_results,
              "include": ["documents", "distances", "metadatas"]}
    if not SHARED_CORPUS:
        search["where"] = {OWNER_KEY: user["user_id"]}
    result = await _post(f"{COLLECTIONS}/{await _collection_id()}/query", search)
    ids, docs, distances = result["ids"][0], result["documents"][0], result["distances"][0]
    return {"matches": [{"id": i, "text": d, "distance": s} for i, d, s in zip(ids, docs, distances, strict=True)]}


@app.post("/complete", responses=NEEDS_TOKEN)
async def complete(p: Prompt, _user: dict = SIGNED_IN) -> dict:
    result = await _post(f"{OLLAMA}/api/generate", {"model": MODEL, "prompt": p.prompt, "stream": False})
    return {"model": result.get("model", MODEL), "response": result["response"]}
