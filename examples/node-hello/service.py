"""hello-node's entry for ``services`` (and its route), for a stack that adds the example.

Not part of the default stack: tests/integration/test_examples.py adds it to the test stack,
and a stack of your own can do the same in its group_data:

    SERVICE, ROUTE = ...               # copy the entries below
    services["hello-node"] = SERVICE
    services["api-gateway"]["routes"].update(ROUTE)
"""

SERVICE = {
    "role": "app",
    "build": {"dockerfile": "Dockerfile", "context": "examples/node-hello"},
    "port": 8080,
    "health": {"http": "/health"},
    "stop_grace": 10,
}
ROUTE = {"/api/hello/": "hello-node"}
