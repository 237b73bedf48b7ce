"""auth-service: accounts (argon2 hashes in PostgreSQL) and JWTs with sessions in Redis.

A token is valid while its session key exists in Redis, so logout revokes it at once.
Each user's sessions are also listed in a Redis set, so deleting an account revokes them all.

Logins are throttled per username: each attempt counts in Redis for a window
(LOGIN_LOCKOUT_SECONDS, 300 by default), a success clears the count, and past
LOGIN_MAX_FAILURES (5) attempts the answer is 429 with Retry-After until the window ends,
whatever the password. (The gateway limits login and register per client address too.)
argon2 runs in worker threads, a few at a time: a burst of logins does not stall the event
loop that every other service's token checks (/verify) wait on.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from fastapi import Depends, HTTPException, Response
from pydantic import BaseModel, Field
from stackapp import NEEDS_TOKEN, Backends, authorization_header, create_app, env

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id BIGSERIAL PRIMARY KEY,
    username TEXT UNIQUE NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"""
TOKEN_TTL_SECONDS = 3600
LOGIN_MAX_FAILURES = int(env("LOGIN_MAX_FAILURES", "5"))
LOGIN_LOCKOUT_SECONDS = int(env("LOGIN_LOCKOUT_SECONDS", "300"))
HASHING_AT_ONCE = 2  # argon2 is CPU-bound: more at once only queues for the same cores
THROTTLED = {429: {"description": "too many attempts: try again after Retry-After seconds",
                   "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}}}

backends = Backends()
hasher = PasswordHasher()
# An unknown username is checked against this hash, so it costs as long as a wrong password
# and the answer time does not tell which usernames exist.
DUMMY_HASH = hasher.hash(uuid.uuid4().hex)
REQUIRED_CLAIMS = ["sub", "name", "jti", "exp"]
app = create_app("auth-service", backends, schema=SCHEMA)
hashing = asyncio.Semaphore(HASHING_AT_ONCE)


async def off_the_loop(function, *args):
    """Run an argon2 call in a worker thread, at most HASHING_AT_ONCE at a time."""
    async with hashing:
        return await asyncio.to_thread(function, *args)


def too_many(seconds: int, what: str) -> HTTPException:
    """A 429 whose Retry-After says when to ask again."""
    return HTTPException(status_code=429, detail=f"{what}; try again in {seconds} s",
                         headers={"Retry-After": str(seconds)})


class Credentials(BaseModel):
    username: str = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    password: str = Field(min_length=8, max_length=256)


@app.post("/register", status_code=201, responses={409: {"description": "username already taken"}, **THROTTLED})
async def register(body: Credentials) -> dict:
    assert backends.db is not None
    row = await backends.db.fetchrow(
        "INSERT INTO users (username, password_hash) VALUES ($1, $2) "
        "ON CONFLICT (username) DO NOTHING RETURNING id",
        body.username, await off_the_loop(hasher.hash, body.password),
    )
    if row is None:
        raise HTTPException(status_code=409, detail="username already taken")
    return {"id": row["id"], "username": body.username}


async def counted_attempt(username: str) -> str:
    """Count a login attempt for ``username`` before its password is checked (so parallel
    guesses count too), and return the count's key; refuse the attempt once the window holds
    more than LOGIN_MAX_FAILURES (a success clears the count, so only failures add up)."""
    assert backends.redis is not None
    key = f"login-attempts:{username}"
    attempts = await backends.redis.incr(key)
    if attempts == 1:
        await backends.redis.expire(key, LOGIN_LOCKOUT_SECONDS)
    if attempts > LOGIN_MAX_FAILURES:
        left = await backends.redis.ttl(key)
        if left < 0:  # the count lost its expiry (a crash between the two calls): give it one
            await backends.redis.expire(key, LOGIN_LOCKOUT_SECONDS)
            left = LOGIN_LOCKOUT_SECONDS
        raise too_many(max(left, 1), "too many failed logins for this user")
    return key


@app.post("/login", responses={401: {"description": "wrong username or password"}, **THROTTLED})
async def login(body: Credentials) -> dict:
    assert backends.db is not None and backends.redis is not None
    attempts_key = await counted_attempt(body.username)
    row = await backends.db.fetchrow(
        "SELECT id, password_hash FROM users WHERE username = $1", body.username
    )
    try:
        await off_the_loop(hasher.verify, row["password_hash"] if row else DUMMY_HASH, body.password)
        if row is None:
            raise VerifyMismatchError()
    except VerifyMismatchError:
        raise HTTPException(status_code=401, detail="wrong username or password") from None
    await backends.redis.delete(attempts_key)
    jti = uuid.uuid4().hex
    now = int(time.time())
    claims = {"sub": str(row["id"]), "name": body.username, "jti": jti, "iat": now,
              "exp": now + TOKEN_TTL_SECONDS}
    token = jwt.encode(claims, env("JWT_SECRET"), algorithm="HS256")
    await backends.redis.set(f"session:{jti}", row["id"], ex=TOKEN_TTL_SECONDS)
    await backends.redis.sadd(f"sessions-of:{row['id']}", jti)
    await backends.redis.expire(f"sessions-of:{row['id']}", TOKEN_TTL_SECONDS)
    return {"access_token": token, "token_type": "bearer", "expires_in": TOKEN_TTL_SECONDS}


async def _claims(authorization: str | None) -> dict:
    assert backends.redis is not None
    if not authorization or not authorization.lower().startswith("bearer "):
        raise HTTPException(status_code=401, detail="missing bearer token")
    try:
        claims = jwt.decode(authorization[7:], env("JWT_SECRET"), algorithms=["HS256"],
                            options={"require": REQUIRED_CLAIMS})
    except jwt.PyJWTError:
        raise HTTPException(status_code=401, detail="invalid token") from None
    if not str(claims["sub"]).isdigit():
        raise HTTPException(status_code=401, detail="invalid token")
    if not await backends.redis.exists(f"session:{claims['jti']}"):
        raise HTTPException(status_code=401, detail="session revoked or expired")
    return claims


@app.get("/verify", responses=NEEDS_TOKEN)
async def verify(authorization: str | None = Depends(authorization_header)) -> dict:
    claims = await _claims(authorization)
    return {"user_id": int(claims["sub"]), "username": claims["name"]}


@app.delete("/me", status_code=204, response_class=Response, responses=NEEDS_TOKEN)
async def delete_account(authorization: str | None = Depends(authorization_header)) -> Response:
    """Delete the caller's account and revoke every session of it (the smoke test cleans up
    its throwaway user this way). Their uploads and documents are the other services' to delete."""
    claims = await _claims(authorization)
    assert backends.db is not None and backends.redis is not None
    user_id = int(claims["sub"])
    await backends.db.execute("DELETE FROM users WHERE id = $1", user_id)
    jtis = await backends.redis.smembers(f"sessions-of:{user_id}")
    await backends.redis.delete(*[f"session:{jti}" for jti in {*jtis, claims["jti"]}], f"sessions-of:{user_id}")
    return Response(status_code=204)


@app.post("/logout", status_code=204, response_class=Response, responses=NEEDS_TOKEN)
async def logout(authorization: str | None = Depends(authorization_header)) -> Response:
    claims = await _claims(authorization)
    assert backends.redis is not None
    await backends.redis.delete(f"session:{claims['jti']}")
    return Response(status_code=204)
