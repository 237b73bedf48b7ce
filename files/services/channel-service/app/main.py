"""channel-service: authenticated WebSocket channels fanned out through Redis pub/sub.

Every message is published to Redis, and every connection (on any worker or replica)
relays what its channel receives, so clients on different workers see each other.
Messages starting with "/ai " are answered by ai-engine in the same channel.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import Depends, HTTPException, Path, Query, WebSocket, WebSocketDisconnect
from stackapp import NEEDS_TOKEN, Backends, create_app, env, user_of

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id BIGSERIAL PRIMARY KEY,
    channel TEXT NOT NULL,
    username TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Who caused a message: its sender, or for an ai-engine answer the user who asked.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS author_id BIGINT;
"""
AI_ENGINE = env("AI_ENGINE_URL")
REVERIFY_SECONDS = 2.0  # how often an open socket's token is checked again (logout reaches it)
MAX_MESSAGE_CHARS = 10_000
CHANNEL_NAME = Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="letters, digits, '_', '.', '-'")


def refusal(text: str) -> str | None:
    """Why a message is not posted (answered to its sender only), or None to post it."""
    if len(text) > MAX_MESSAGE_CHARS:
        return f"message too long: at most {MAX_MESSAGE_CHARS} characters"
    if "\x00" in text:
        return "message contains a NUL character"
    if text.startswith("/ai ") and not text[4:].strip():
        return "empty /ai prompt: nothing sent"
    return None


backends = Backends()
app = create_app(
    "channel-service", backends,
    {"auth-service": f"{env('AUTH_SERVICE_URL')}/health", "ai-engine": f"{AI_ENGINE}/health"},
    schema=SCHEMA,
)
SIGNED_IN = Depends(user_of(backends))


async def _publish(channel: str, username: str, body: str, author_id: int) -> None:
    assert backends.redis is not None and backends.db is not None
    await backends.db.execute(
        "INSERT INTO messages (channel, username, body, author_id) VALUES ($1, $2, $3, $4)",
        channel, username, body, author_id,
    )
    await backends.redis.publish(f"channel:{channel}", json.dumps({"from": username, "text": body}))


async def _ask_ai(channel: str, prompt: str, token: str, author_id: int) -> None:
    """ai-engine answers signed-in users only: ask on behalf of the one who wrote ``/ai``."""
    assert backends.http is not None
    response = await backends.http.post(f"{AI_ENGINE}/complete", json={"prompt": prompt}, timeout=60.0,
                                        headers={"Authorization": f"Bearer {token}"})
    answer = response.json().get("response", "") if response.status_code == 200 else "(ai-engine failed)"
    await _publish(channel, "ai-engine", answer, author_id)


@app.get("/channels/{channel}/history", responses=NEEDS_TOKEN)
async def history(channel: str = CHANNEL_NAME, limit: int = Query(50, ge=1, le=500),
                  _user: dict = SIGNED_IN) -> list[dict]:
    assert backends.db is not None
    rows = await backends.db.fetch(
        "SELECT username, body, created_at FROM messages WHERE channel = $1 ORDER BY id DESC LIMIT $2",
        channel, limit,
    )
    return [{"from": r["username"], "text": r["body"], "at": r["created_at"].isoformat()} for r in rows]


@app.delete("/channels/{channel}/messages", responses=NEEDS_TOKEN)
async def delete_my_messages(channel: str = CHANNEL_NAME, user: dict = SIGNED_IN) -> dict:
    """Delete what the caller posted in a channel, and the ai-engine answers they asked for."""
    assert backends.db is not None
    deleted = await backends.db.fetch("DELETE FROM messages WHERE channel = $1 AND author_id = $2 RETURNING id",
                                      channel, user["user_id"])
    return {"deleted": len(deleted)}


@app.websocket("/ws/{channel}")
async def channel_socket(websocket: WebSocket, channel: str = CHANNEL_NAME, token: str = "") -> None:
    try:
        user = await backends.current_user(f"Bearer {token}")
    except Exception:  # any auth failure closes with policy violation
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

    async def still_authorised() -> None:
        """Logout (or expiry) revokes the token for this open socket too, within seconds."""
        while True:
            await asyncio.sleep(REVERIFY_SECONDS)
            try:
                await backends.current_user(f"Bearer {token}")
            except HTTPException:
                await websocket.close(code=1008, reason="token revoked or expired")
                return

    tasks = [asyncio.create_task(relay()), asyncio.create_task(still_authorised())]
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("text") is None:  # a binary frame: this protocol is text only
                await websocket.close(code=1003, reason="text frames only")
                break
            text = message["text"]
            if problem := refusal(text):
                await websocket.send_json({"from": "channel-service", "error": problem})
                continue
            await _publish(channel, user["username"], text, user["user_id"])
            if text.startswith("/ai "):
                asyncio.create_task(_ask_ai(channel, text[4:], token, user["user_id"]))
    except (WebSocketDisconnect, RuntimeError):  # the client left, or we closed it (shutdown: 1001)
        pass
    finally:
        backends.sockets.discard(websocket)
        for task in tasks:
            task.cancel()
        await pubsub.unsubscribe()
        await pubsub.aclose()
