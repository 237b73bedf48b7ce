"""Validation: each bad input gives one clear line led by the key path of the setting."""

from __future__ import annotations

import re

import pytest

from stackdeploy import SERVICES_DIR
from stackdeploy.model import RegistrySettings, StackError, SwarmSettings, load


def error_of(data: dict) -> str:
    with pytest.raises(StackError) as info:
        load(data, SERVICES_DIR)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_shipped_stack_is_valid(data):
    stack = load(data, SERVICES_DIR)
    assert len(stack.services) == 18
    assert stack.services["auth-service"].workers == 2
    assert stack.services["channel-service"].depends_on == ("postgres", "redis", "auth-service", "ai-engine")
    assert stack.services["ai-engine"].wait_timeout == 180


def test_unknown_dependency_names_service_and_suggests(data):
    data["services"]["creator-hub"]["depends_on"] = ["postgres", "auth-servce"]
    assert error_of(data) == (
        "services.creator-hub.depends_on: unknown service 'auth-servce' (did you mean 'auth-service'?)"
    )


def test_dependency_cycle_is_printed(data):
    data["services"]["postgres"]["depends_on"] = ["channel-service"]
    where, _, cycle = error_of(data).partition(": dependency cycle: ")
    assert where in ("services.postgres.depends_on", "services.channel-service.depends_on")
    path = cycle.split(" -> ")
    assert path[0] == path[-1]
    assert {"postgres", "channel-service"} <= set(path)


def test_unknown_service_in_placement(data):
    data["placement"] = {"data": ["postgres", "rediss"]}
    assert error_of(data) == "placement.data: unknown service 'rediss' (did you mean 'redis'?)"


def test_unknown_service_key_suggests_closest(data):
    data["services"]["ai-engine"]["wokers"] = 2
    assert error_of(data) == "services.ai-engine.wokers: unknown key (did you mean 'workers'?)"


def test_unknown_top_level_setting_suggests_closest(data):
    data["image_sorce"] = "local"
    assert error_of(data) == "image_sorce: unknown setting (did you mean 'image_source'?)"


def test_connector_data_is_not_a_typo(data):
    data["ssh_user"] = "deploy"
    data["_sudo"] = True
    load(data, SERVICES_DIR)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("workers", 0, "services.auth-service.workers: must be an integer of at least 1, got 0"),
        ("workers", "2", "services.auth-service.workers: must be an integer of at least 1, got '2'"),
        ("port", 70000, "services.auth-service.port: must be an integer from 1 to 65535, got 70000"),
        ("port", 0, "services.auth-service.port: must be an integer from 1 to 65535, got 0"),
        ("wait_timeout", 0, "services.auth-service.wait_timeout: must be a number of seconds above 0, got 0"),
        ("wait_timeout", -5, "services.auth-service.wait_timeout: must be a number of seconds above 0, got -5"),
        ("role", "java",
         "services.auth-service.role: must be one of app, worker, stateful, gateway, monitor, logstore, got 'java'"),
    ],
)
def test_wrong_type_or_range(data, key, value, expected):
    data["services"]["auth-service"][key] = value
    assert error_of(data) == expected


def test_missing_source_folder(data):
    data["services"]["billing"] = {"role": "app", "build": {"template": "python"}, "port": 8005,
                                   "health": {"http": "/health"}}
    message = error_of(data)
    assert re.fullmatch(r"services\.billing: source folder .*files/services/billing does not exist", message)


def test_missing_secret(data):
    data["services"]["auth-service"]["secrets"].append("STRIPE_KEY")
    assert error_of(data) == "services.auth-service.secrets: secret 'STRIPE_KEY' is not declared in 'secrets'"


def test_unknown_image_source(data):
    data["image_source"] = "dockerhub"
    assert error_of(data) == "image_source: must be one of registry, local, auto, got 'dockerhub'"


def test_override_of_unknown_service(data):
    data["service_overrides"] = {"auth-servise": {"workers": 4}}
    assert error_of(data) == "service_overrides.auth-servise: unknown service (did you mean 'auth-service'?)"


def test_overrides_apply_without_touching_the_base(data):
    data["service_overrides"] = {"auth-service": {"workers": 4}}
    stack = load(data, SERVICES_DIR)
    assert stack.services["auth-service"].workers == 4
    assert data["services"]["auth-service"]["workers"] == 2


def test_health_key_typo(data):
    data["services"]["redis"]["health"] = {"tpc": True}
    assert error_of(data) == "services.redis.health.tpc: unknown key (did you mean 'tcp'?)"


def test_infra_needs_a_registry_image(data):
    data["services"]["redis"]["image"] = {"local": "redis"}
    assert error_of(data) == ("services.redis.image: must name a 'registry' image, and a 'local' recipe unless the "
                              "service runs in registry mode only (or give 'build' instead)")


@pytest.mark.parametrize(
    ("where", "change"),
    [("services.auth-service.depends_on", lambda d: d["services"]["redis"].update(image={"registry": "redis:7"})),
     ("services.prometheus.scrapes", lambda d: d["services"]["prometheus"]["scrapes"].append("grafana"))],
    ids=["depends_on", "scrapes"],
)
def test_nothing_that_runs_offline_may_need_a_registry_only_service(data, where, change):
    change(data)  # an image with no local recipe (redis here, grafana as shipped): registry mode only
    name = "redis" if where.endswith("depends_on") else "grafana"
    assert error_of(data) == (f"{where}: names '{name}', which runs in registry mode only (its image has no 'local' "
                              "recipe): a service that also runs offline cannot need it")


def test_the_gateway_routes_to_apps_only(data):
    data["services"]["api-gateway"]["routes"]["/db/"] = "postgres"
    assert error_of(data) == ("services.api-gateway.routes./db/: routes to postgres, whose role is 'stateful': "
                              "the gateway routes to apps only")


def test_a_registry_only_service_may_need_another(data):
    data["services"]["grafana-renderer"] = {"role": "stateful", "port": 8081, "image": {"registry": "renderer:1"}}
    data["services"]["grafana"]["depends_on"] = ["prometheus", "grafana-renderer"]
    data["placement"]["monitoring"].append("grafana-renderer")
    assert load(data, SERVICES_DIR).services["grafana-renderer"].registry_only


def test_the_platforms_own_roles_may_not_run_in_registry_mode_only(data):
    data["services"]["api-gateway"]["image"] = {"registry": "nginx:stable"}
    assert error_of(data) == "services.api-gateway.image: needs a 'local' recipe: role 'gateway' must run offline too"


def test_an_unknown_image_key_is_refused(data):
    data["services"]["grafana"]["image"]["lcoal"] = "grafana"
    assert error_of(data) == ("services.grafana.image: must name a 'registry' image, and a 'local' recipe unless the "
                              "service runs in registry mode only (or give 'build' instead)")


def test_user_is_a_numeric_uid(data):
    data["services"]["grafana"]["user"] = "grafana"
    assert error_of(data) == "services.grafana.user: must be a numeric uid or uid:gid, got 'grafana'"


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        (("services", "creator-hub", "role"), "ap",
         "services.creator-hub.role: must be one of app, worker, stateful, gateway, monitor, logstore, got 'ap' "
         "(did you mean 'app'?)"),
        (("image_source",), "locl",
         "image_source: must be one of registry, local, auto, got 'locl' (did you mean 'local'?)"),
        (("image_distribution",), "build-onse",
         "image_distribution: must be one of build-everywhere, build-once, registry, got 'build-onse' "
         "(did you mean 'build-once'?)"),
        (("services", "postgres", "image", "local"), "postgress",
         "services.postgres.image.local: must be one of alertmanager, chromadb, nginx, nginx-exporter, "
         "node-exporter, ollama-standin, postgres, postgres-exporter, prometheus, redis, redis-exporter, rsyslog, "
         "got 'postgress' (did you mean 'postgres'?)"),
    ],
    ids=["role", "image_source", "image_distribution", "local-recipe"],
)
def test_a_mistyped_choice_suggests_the_closest_value(data, setting, value, expected):
    *parents, key = setting
    target = data
    for parent in parents:
        target = target[parent]
    target[key] = value
    assert error_of(data) == expected


def test_a_setting_given_by_an_override_is_named_under_service_overrides(data):
    data["service_overrides"] = {"auth-service": {"workers": 0, "wokers": 1}}
    assert error_of(data) == "service_overrides.auth-service.wokers: unknown key (did you mean 'workers'?)"
    del data["service_overrides"]["auth-service"]["wokers"]
    assert error_of(data) == "service_overrides.auth-service.workers: must be an integer of at least 1, got 0"
    data["services"]["auth-service"]["port"] = 0  # the base definition stays under services
    assert error_of(data) == "services.auth-service.port: must be an integer from 1 to 65535, got 0"


def test_a_cycle_an_override_closes_is_named_at_the_override(data):
    data["service_overrides"] = {"postgres": {"depends_on": ["creator-hub"]}}
    assert error_of(data) == ("service_overrides.postgres.depends_on: dependency cycle: "
                              "postgres -> creator-hub -> postgres")


@pytest.mark.parametrize(("change", "expected"), [
    ({"auth_routes": ["/api/creator/"]}, "auth_routes: names /api/creator/, which is not one of the routes (did"),
    ({"websocket_routes": ["/api/chanels/"]}, "websocket_routes: names /api/chanels/"),
    ({"auth_verify": None}, "auth_routes: needs auth_verify"),
    ({"auth_verify": "/verify"}, "auth_verify: /verify is not under any of the routes"),
    ({"auth_verify": "api/auth/verify"}, "must be a path starting with '/'"),
    ({"login_paths": ["/api/auht/login"]}, "login_paths: /api/auht/login is not under any of the routes"),
])
def test_gateway_auth_and_websocket_routes_must_name_its_routes(data, change, expected):
    data["services"]["api-gateway"].update(change)
    assert expected in error_of(data)


def test_the_swarm_settings_default_to_compose_and_one_replica(data):
    stack = load(data, SERVICES_DIR)
    assert stack.engine == "compose"
    assert stack.swarm == SwarmSettings(endpoint_mode="dnsrr", publish_mode="host", managers_group="managers")
    assert {service.replicas for service in stack.services.values()} == {1}


def test_the_swarm_settings_are_read(data):
    data["engine"] = "swarm"
    data["swarm"] = {"endpoint_mode": "vip", "publish_mode": "ingress", "managers_group": "swarm_managers"}
    data["service_overrides"] = {"auth-service": {"replicas": 3}}
    stack = load(data, SERVICES_DIR)
    assert stack.engine == "swarm"
    assert stack.swarm == SwarmSettings(endpoint_mode="vip", publish_mode="ingress", managers_group="swarm_managers")
    assert stack.services["auth-service"].replicas == 3
    assert stack.services["creator-hub"].replicas == 1


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"engine": "swram"}, "engine: must be one of compose, swarm, got 'swram' (did you mean 'swarm'?)"),
        ({"swarm": {"endpoint_mode": "vipp"}},
         "swarm.endpoint_mode: must be one of dnsrr, vip, got 'vipp' (did you mean 'vip'?)"),
        ({"swarm": {"publish_mode": "ingres"}},
         "swarm.publish_mode: must be one of host, ingress, got 'ingres' (did you mean 'ingress'?)"),
        ({"swarm": {"endpoint_mod": "vip"}}, "swarm.endpoint_mod: unknown key (did you mean 'endpoint_mode'?)"),
        ({"swarm": {"managers_group": ""}}, "swarm.managers_group: must be the name of an inventory group, got ''"),
        ({"swarm": "vip"}, "swarm: must be a mapping of settings, got str"),
        ({"swarn": {}}, "swarn: unknown setting (did you mean 'swarm'?)"),
    ],
    ids=["engine", "endpoint_mode", "publish_mode", "swarm-key", "managers_group", "swarm-shape", "swarm-typo"],
)
def test_a_bad_swarm_setting_is_refused_in_one_line(data, settings, expected):
    data.update(settings)
    assert error_of(data) == expected


@pytest.mark.parametrize(
    ("engine", "service", "replicas", "expected"),
    [
        ("swarm", "auth-service", 0, "services.auth-service.replicas: must be an integer of at least 1, got 0"),
        ("swarm", "auth-service", 2.0, "services.auth-service.replicas: must be an integer of at least 1, got 2.0"),
        ("compose", "auth-service", 2, 'services.auth-service.replicas: more than 1 replica needs engine = "swarm"'),
        ("swarm", "postgres", 2,
         "services.postgres.replicas: more than 1 replica is only for apps and workers, not role 'stateful'"),
        ("swarm", "stack-monitor", 2,
         "services.stack-monitor.replicas: more than 1 replica is only for apps and workers, not role 'monitor'"),
    ],
    ids=["zero", "float", "compose", "infra", "monitor"],
)
def test_more_than_one_replica_needs_swarm_and_an_app(data, engine, service, replicas, expected):
    data["engine"] = engine
    data["services"][service]["replicas"] = replicas
    assert error_of(data) == expected


def test_replicas_given_by_an_override_are_named_under_service_overrides(data):
    data["service_overrides"] = {"creator-hub": {"replicas": 2}}
    assert error_of(data) == ('service_overrides.creator-hub.replicas: more than 1 replica needs '
                              'engine = "swarm"')


def test_a_missing_required_setting_is_named_in_its_service(data):
    del data["services"]["redis"]["role"]
    assert error_of(data) == "services.redis: role is required"


def test_a_key_that_is_not_a_string_is_an_unknown_key(data):
    data["services"]["redis"]["health"] = {2: True}
    assert error_of(data) == "services.redis.health.2: unknown key"


REGISTRY = {"image_distribution": "registry", "registry": {"address": "10.77.0.1:5000", "insecure": True}}


@pytest.mark.parametrize("address", ["10.77.0.1:5000", "registry.example.com", "registry.example.com/team/ci",
                                     "localhost:5000/a_b", "localhost", "[::1]:5000"])
def test_a_registry_address_is_host_port_and_path(data, address):
    data.update(image_distribution="registry", registry={"address": address})
    stack = load(data, SERVICES_DIR)
    assert stack.registry == RegistrySettings(address=address, insecure=False)
    assert stack.registry.host == address.split("/")[0]


def test_the_registry_settings_are_read_and_absent_by_default(data):
    assert load(data, SERVICES_DIR).registry is None
    data.update(REGISTRY)
    assert load(data, SERVICES_DIR).registry == RegistrySettings("10.77.0.1:5000", insecure=True)


BARE = "must be host[:port][/path], with a '.' or a port in host, or localhost (Docker reads a bare name as a " \
       "Docker Hub account), got"


@pytest.mark.parametrize(
    ("settings", "expected", "setting"),
    [
        ({"image_distribution": "registry"},
         'registry.address: required when image_distribution is "registry"', "image_distribution"),
        ({"image_distribution": "registry", "registry": {"insecure": True}},
         'registry.address: required when image_distribution is "registry"', "registry"),
        ({"registry": {"address": "registry.example.com"}},
         'registry: is used only with image_distribution = "registry" (it is "build-once"): set both, or neither',
         "registry"),
        ({**REGISTRY, "registry": {"address": "http://10.77.0.1:5000"}},
         "registry.address: must be host[:port][/path] without a scheme, got 'http://10.77.0.1:5000'", "registry"),
        ({**REGISTRY, "registry": {"address": "myregistry/images"}}, f"registry.address: {BARE} 'myregistry/images'",
         "registry"),
        ({**REGISTRY, "registry": {"address": "10.77.0.1:70000"}}, f"registry.address: {BARE} '10.77.0.1:70000'",
         "registry"),
        ({**REGISTRY, "registry": {"address": "r.example.com/Team"}}, f"registry.address: {BARE} 'r.example.com/Team'",
         "registry"),
        ({**REGISTRY, "registry": {"address": 5000}}, f"registry.address: {BARE} 5000", "registry"),
        ({**REGISTRY, "registry": {"address": "r.example.com", "insecure": "yes"}},
         "registry.insecure: must be True or False, got 'yes'", "registry"),
        ({**REGISTRY, "registry": {"adress": "r.example.com"}},
         "registry.adress: unknown key (did you mean 'address'?)", "registry"),
        ({**REGISTRY, "registry": "r.example.com"}, "registry: must be a mapping of settings, got str", "registry"),
        ({**REGISTRY, "images_from": "deploy@staging"},
         'images_from: ships images over SSH, which image_distribution = "registry" replaces: use one or the other',
         "images_from"),
    ],
    ids=["no-registry", "no-address", "no-distribution", "scheme", "bare-name", "port", "uppercase-path",
         "not-text", "insecure", "typo", "shape", "images_from"],
)
def test_a_bad_registry_setting_is_refused_in_one_line_naming_its_file(data, settings, expected, setting):
    data.update(settings)
    with pytest.raises(StackError) as info:
        load(data, SERVICES_DIR)
    assert str(info.value) == expected
    assert info.value.setting == setting  # the setting whose file the refusal names
