"""The gateway's request ids and JSON access log (templates/nginx.conf.j2); nginx -t on the
whole rendered file is in test_tls.py."""

from __future__ import annotations

import json
import re

import pytest

from stackdeploy import SERVICES_DIR
from stackdeploy.model import load
from stackdeploy.plan import build_plan
from tests.certs import certificate

SECRETS = {"POSTGRES_PASSWORD": "p", "REDIS_PASSWORD": "r", "JWT_SECRET": "j", "GRAFANA_ADMIN_PASSWORD": "g"}


@pytest.fixture
def conf(data) -> str:
    return build_plan(load(data, SERVICES_DIR), "local", SECRETS, certificate=certificate()).files["nginx/nginx.conf"]


def log_format(conf: str) -> str:
    """The stack_json format's text, its quoted pieces joined."""
    statement = conf.split("log_format stack_json escape=json")[1].split(";\n")[0]
    return "".join(re.findall(r"'([^']*)'", statement))


def test_the_access_log_is_json_with_the_request_id(conf):
    assert "access_log /dev/stdout stack_json;" in conf
    sample = log_format(conf)
    for variable in ("$time_iso8601", "$stack_request_id", "$request_method", "$stack_request_path", "$status",
                     "$request_time", "$upstream_addr"):
        assert variable in sample
    # Every variable replaced by a value, the line is JSON with the fields logs.py reads.
    entry = json.loads(re.sub(r"\$[a-z_0-9]+", "1", sample))
    assert {"time", "level", "service", "request_id", "method", "path", "status", "duration_s",
            "upstream"} <= set(entry)


def test_no_query_string_or_header_can_reach_the_log(conf):
    sample = log_format(conf)
    for leaky in ("$request\"", "$request_uri", "$args", "$query_string", "$arg_", "$http_", "$is_args",
                  "$uri"):
        assert leaky not in sample
    assert re.search(r"\$request[^_a-z]", sample) is None
    # The logged path is $request_uri cut at the first "?".
    path_map = conf.split("map $request_uri $stack_request_path {")[1].split("}")[0]
    assert '"~^(?<stack_path>[^?]*)" $stack_path;' in path_map


def test_a_request_id_is_made_when_missing_or_malformed_and_sent_everywhere(conf):
    id_map = conf.split("map $http_x_request_id $stack_request_id {")[1].split("\n    }")[0]
    assert "default $request_id;" in id_map
    assert '"~^[A-Za-z0-9._:-]{1,64}$" $http_x_request_id;' in id_map
    assert "add_header X-Request-ID $stack_request_id always;" in conf
    # Each proxied location (the four routes, the two login paths, the token check, readiness)
    # passes it on.
    proxied = conf.count("proxy_pass http://")
    assert conf.count("proxy_set_header X-Request-ID $stack_request_id;") == proxied == 8


def test_logins_and_sign_ups_are_limited_per_client_address_and_answer_json_429(conf):
    assert "limit_req_zone $binary_remote_addr zone=stack_login:10m rate=10r/s;" in conf
    for path, passed_on in (("/api/auth/login", "/login"), ("/api/auth/register", "/register")):
        location = conf.split(f"location = {path} {{\n")[1].split("\n        }")[0]
        assert "limit_req zone=stack_login burst=20 nodelay;" in location
        assert "rewrite ^/api/auth/(.*)$ /$1 break;" in location  # to auth-service as /login, /register
        assert "set $upstream auth-service-live:8001;" in location, passed_on
    assert conf.count("limit_req zone=") == 2  # no other route is limited
    error = conf.split("location = /__gateway_error/429 {\n")[1].split("}")[0]
    assert "add_header Retry-After 1 always;" in error and '"status": 429' in error
