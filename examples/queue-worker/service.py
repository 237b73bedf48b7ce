"""queue-worker's entry for ``services``, for a stack that adds the example (it is not part of
the default stack; tests/integration/test_examples.py adds it to the test stack)."""

SERVICE = {
    "role": "worker",
    "build": {"dockerfile": "Dockerfile", "context": "examples/queue-worker"},
    "depends_on": ["redis"],
    "secrets": ["REDIS_PASSWORD"],
    "health": {"command": ["python3", "/app/worker.py", "--check"]},
    "stop_grace": 10,
}
