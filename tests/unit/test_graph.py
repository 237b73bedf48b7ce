"""Dependency waves and cycle detection."""

from __future__ import annotations

import pytest

from stackdeploy import SERVICES_DIR
from stackdeploy.graph import find_cycle, waves
from stackdeploy.model import load


def test_waves_of_the_shipped_stack(data):
    stack = load(data, SERVICES_DIR)
    assert waves({n: s.depends_on for n, s in stack.services.items()}) == [
        ["alertmanager", "chromadb", "log-store", "node-exporter", "ollama", "postgres", "redis", "stack-monitor"],
        ["auth-service", "postgres-exporter", "prometheus", "redis-exporter"],
        ["ai-engine", "creator-hub", "grafana"],
        ["channel-service"],
        ["api-gateway"],
        ["nginx-exporter"],
    ]


def test_every_dependency_is_in_an_earlier_wave(data):
    stack = load(data, SERVICES_DIR)
    order = {name: i for i, wave in enumerate(waves({n: s.depends_on for n, s in stack.services.items()}))
             for name in wave}
    for name, service in stack.services.items():
        assert all(order[dep] < order[name] for dep in service.depends_on)


def test_independent_services_share_a_wave():
    assert waves({"a": [], "b": [], "c": ["a", "b"]}) == [["a", "b"], ["c"]]


def test_cycle_found_with_its_path():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle({"a": ["b"], "b": []}) is None


def test_unknown_and_repeated_dependencies_are_ignored():
    deps = {"a": ["not-a-service"], "b": ["a", "a"]}
    assert find_cycle(deps) is None
    assert waves(deps) == [["a"], ["b"]]
    assert find_cycle({**deps, "c": ["b", "c"]}) == ["c", "c"]  # a service that depends on itself


def test_waves_refuse_a_cycle():
    with pytest.raises(ValueError, match="dependency cycle: a -> b -> a"):
        waves({"a": ["b"], "b": ["a"]})
