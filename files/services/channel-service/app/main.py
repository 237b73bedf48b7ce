"""channel-service: authenticated WebSocket channels fanned out through Redis pub/sub.

Every message is published to Redis, and every connection (on any worker or replica)
relays what its channel receives, so clients on different workers see each other.
Messages starting with "/ai " are answered by ai-engine in the same channel.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import WebSocket, WebSocketDisconnect
from stackapp import Backends, create_app, env

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id BIGSERIAL PRIMARY KEY,
    channel TEXT NOT NULL,
    username TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"""
AI_ENGINE = env("AI_ENGINE_URL")

backends = Backends()
app = create_app(
    "channel-service", backends,
    {"auth-service": f"{env('AUTH_SERVICE_URL')}/health", "ai-engine": f"{AI_ENGINE}/health"},
    schema=SCHEMA,
)


async def _publish(channel: str, username: str, body: str) -> None:
    assert backends.redis is not None and backends.db is not None
    await backends.db.execute(
        "INSERT INTO messages (channel, username, body) VALUES ($1, $2, $3)", channel, username, body
    )
    await backends.redis.publish(f"channel:{channel}", json.dumps({"from": username, "text": body}))


async def _ask_ai(channel: str, prompt: str) -> None:
    assert backends.http is not None
    response = await backends.http.post(f"{AI_ENGINE}/complete", json={"prompt": prompt}, timeout=60.0)
    answer = response.json().get("response", "") if response.status_code == 200 else "(ai-engine failed)"
    await _publish(channel, "ai-engine", answer)


@app.get("/channels/{channel}/history")
async def history(channel: str, limit: int = 50) -> list[dict]:
    assert backends.db is not None
    rows = await backends.db.fetch(
        "SELECT username, body, created_at FROM messages WHERE channel = $1 ORDER BY id DESC LIMIT $2",
        channel, min(limit, 500),
    )
    return [{"from": r["username"], "text": r["body"], "at": r["created_at"].isoformat()} for r in rows]


@app.websocket("/ws/{channel}")
async def channel_socket(websocket: WebSocket, channel: str, token: str = "") -> None:
    try:
        user = await backends.current_user(f"Bearer {token}")
    except Exception:  # noqa: BLE001 - any auth failure closes with policy violation
        await websocket.close(code=1008)
        return
    await websocket.accept()
    backends.sockets.add(websocket)
    assert backends.redis is not None
    pubsub = backends.redis.pubsub()
    await pubsub.subscribe(f"channel:{channel}")
    await websocket.send_json({"from": "channel-service", "text": f"joined {channel}"})

    async def relay() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                await websocket.send_text(message["data"])

    relay_task = asyncio.create_task(relay())
    try:
        while True:
            text = await websocket.receive_text()
            await _publish(channel, user["username"], text)
            if text.startswith("/ai "):
                asyncio.create_task(_ask_ai(channel, text[4:]))
    except (WebSocketDisconnect, RuntimeError):  # the client left, or we closed it (shutdown: 1001)
        pass
    finally:
        backends.sockets.discard(websocket)
        relay_task.cancel()
        await pubsub.unsubscribe()
        await pubsub.aclose()
