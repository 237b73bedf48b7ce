"""ai-engine: documents in ChromaDB (embedded through Ollama), completions from Ollama.

Talks to both over their HTTP APIs, so the image carries no ML libraries. Embeddings
come from Ollama's /api/embeddings and are handed to ChromaDB with each document.
"""

from __future__ import annotations

import uuid

from fastapi import HTTPException
from pydantic import BaseModel, Field
from stackapp import Backends, create_app, env

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    chars INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"""
OLLAMA = env("OLLAMA_URL")
CHROMA = env("CHROMADB_URL")
MODEL = env("OLLAMA_MODEL", "llama3.2")
COLLECTIONS = f"{CHROMA}/api/v2/tenants/default_tenant/databases/default_database/collections"

backends = Backends()
app = create_app(
    "ai-engine", backends,
    {"ollama": f"{OLLAMA}/api/version", "chromadb": f"{CHROMA}/api/v2/heartbeat"},
    schema=SCHEMA,
)


class Document(BaseModel):
    text: str = Field(min_length=1, max_length=100_000)
    id: str | None = None
    metadata: dict[str, str | int | float | bool] | None = None


class Query(BaseModel):
    text: str = Field(min_length=1)
    n_results: int = Field(default=3, ge=1, le=50)


class Prompt(BaseModel):
    prompt: str = Field(min_length=1)


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


@app.post("/documents", status_code=201)
async def add_document(doc: Document) -> dict:
    doc_id = doc.id or uuid.uuid4().hex
    payload = {"ids": [doc_id], "embeddings": [await _embed(doc.text)], "documents": [doc.text]}
    if doc.metadata:
        payload["metadatas"] = [doc.metadata]
    await _post(f"{COLLECTIONS}/{await _collection_id()}/upsert", payload)
    assert backends.db is not None
    await backends.db.execute(
        "INSERT INTO documents (id, chars) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET chars = $2",
        doc_id, len(doc.text),
    )
    return {"id": doc_id}


@app.post("/query")
async def query(q: Query) -> dict:
    result = await _post(
        f"{COLLECTIONS}/{await _collection_id()}/query",
        {"query_embeddings": [await _embed(q.text)], "n_results": q.n_results,
         "include": ["documents", "distances", "metadatas"]},
    )
    ids, docs, distances = result["ids"][0], result["documents"][0], result["distances"][0]
    return {"matches": [{"id": i, "text": d, "distance": s} for i, d, s in zip(ids, docs, distances, strict=True)]}


@app.post("/complete")
async def complete(p: Prompt) -> dict:
    result = await _post(f"{OLLAMA}/api/generate", {"model": MODEL, "prompt": p.prompt, "stream": False})
    return {"model": result.get("model", MODEL), "response": result["response"]}
