#!/usr/bin/env python3
"""Ollama-API STAND-IN (not Ollama): deterministic answers on Ollama's HTTP API.

No Ollama server can be obtained where no container registry is reachable, so offline
mode runs this instead. It speaks the parts of the API the stack uses, with the same
paths and JSON shapes, and answers deterministically (the same input always gives the
same output), which also makes end-to-end tests repeatable. Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "0.0.0-standin"
MODEL = "standin"
DIMENSIONS = 64


def embedding(text: str) -> list[float]:
    """A unit vector derived from the text's hash: equal texts give equal vectors."""
    seed = hashlib.sha256(text.encode()).digest()
    raw = [((seed[i % 32] ^ (i * 37)) % 251) / 125.0 - 1.0 for i in range(DIMENSIONS)]
    words = text.lower().split()
    for word in words:  # texts sharing words end up closer together
        bucket = int.from_bytes(hashlib.sha256(word.encode()).digest()[:2], "big") % DIMENSIONS
        raw[bucket] += 4.0
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [v / norm for v in raw]


def completion(prompt: str) -> str:
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
    return f"[ollama stand-in {digest}] You asked: {prompt.strip()[:200]}"


class Handler(BaseHTTPRequestHandler):
    server_version = "ollama-standin"

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self) -> None:  # http.server naming
        if self.path == "/api/version":
            self._reply(200, {"version": VERSION, "standin": True})
        elif self.path == "/api/tags":
            self._reply(200, {"models": [{"name": f"{MODEL}:latest", "model": f"{MODEL}:latest", "size": 0}]})
        elif self.path == "/":
            self._reply(200, {"status": "Ollama stand-in is running"})
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:  # http.server naming
        try:
            body = self._body()
        except json.JSONDecodeError:
            self._reply(400, {"error": "invalid JSON"})
            return
        model = body.get("model", MODEL)
        if self.path == "/api/generate":
            self._reply(200, {"model": model, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                              "response": completion(str(body.get("prompt", ""))), "done": True})
        elif self.path == "/api/embeddings":
            self._reply(200, {"embedding": embedding(str(body.get("prompt", "")))})
        elif self.path == "/api/embed":
            inputs = body.get("input", "")
            inputs = inputs if isinstance(inputs, list) else [inputs]
            self._reply(200, {"model": model, "embeddings": [embedding(str(i)) for i in inputs]})
        else:
            self._reply(404, {"error": "not found"})

    def log_message(self, fmt: str, *args: object) -> None:
        print(f"ollama-standin: {self.address_string()} {fmt % args}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=11434)
    args = parser.parse_args()
    print(f"ollama-standin: Ollama-API STAND-IN (not Ollama) listening on :{args.port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
