"""Property tests of the group_data parser: whatever a user writes, the answer is a valid
stack or one StackError line, never a TypeError or KeyError from deep inside the tool."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackdeploy import SERVICES_DIR
from stackdeploy.model import SERVICE_KEYS, StackError, load
from tests.conftest import group_data

BASE = group_data()
# Any value a Python group_data file could plausibly hold, nested a little.
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-70000, 70000) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def accepted_or_one_line(data: dict[str, Any]) -> None:
    try:
        load(data, SERVICES_DIR)
    except StackError as exc:
        assert str(exc) and "\n" not in str(exc)


@PROPERTY
@given(service=st.sampled_from(sorted(BASE["services"])), key=st.sampled_from(sorted(SERVICE_KEYS)), value=VALUES)
def test_any_value_of_any_service_key_is_accepted_or_refused_in_one_line(service, key, value):
    data = copy.deepcopy(BASE)
    data["services"][service][key] = value
    accepted_or_one_line(data)


@PROPERTY
@given(key=st.sampled_from(["stack_name", "deploy_dir", "image_source", "ca_bundle", "gateway_port", "secrets",
                            "services", "service_overrides", "placement", "keep_releases", "rollout_batch",
                            "image_distribution", "shared_env"]),
       value=VALUES)
def test_any_value_of_a_top_level_setting_is_accepted_or_refused_in_one_line(key, value):
    data = copy.deepcopy(BASE)
    data[key] = value
    accepted_or_one_line(data)


@PROPERTY
@given(name=st.text(max_size=20), depends_on=st.lists(st.text(max_size=15), max_size=3))
def test_any_new_service_name_and_dependencies_are_accepted_or_refused_in_one_line(name, depends_on):
    data = copy.deepcopy(BASE)
    data["services"][name] = {"role": "stateful", "port": 9000, "depends_on": depends_on,
                              "image": {"registry": "x:1", "local": "redis"}}
    accepted_or_one_line(data)


@PROPERTY
@given(engine=VALUES | st.sampled_from(["compose", "swarm"]),
       swarm=VALUES | st.fixed_dictionaries({}, optional={"endpoint_mode": VALUES | st.sampled_from(["dnsrr", "vip"]),
                                                          "publish_mode": VALUES | st.sampled_from(["host", "ingress"]),
                                                          "managers_group": VALUES}),
       replicas=VALUES | st.integers(1, 3), service=st.sampled_from(sorted(BASE["services"])))
def test_any_swarm_setting_is_accepted_or_refused_in_one_line(engine, swarm, replicas, service):
    data = copy.deepcopy(BASE)
    data.update(engine=engine, swarm=swarm)
    data["services"][service]["replicas"] = replicas
    accepted_or_one_line(data)
