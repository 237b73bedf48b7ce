"""TLS at the gateway: the setting, the certificate's sources (generated once, reused, renewed;
the user's files checked before any host), the rendered nginx.conf, the key's way to the
gateway on both engines, and certbot's scripts for source "acme"."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from stackdeploy import SERVICES_DIR, acme, contract, tls
from stackdeploy.model import StackError, load
from stackdeploy.plan import build_plan
from stackdeploy.swarmstack import STACK_FILE, render_stack
from tests import certs
from tests.unit.test_plan import SECRETS

NOW = certs.NOW
DAY = datetime.timedelta(days=1)


def stack_with(data, **tls_setting):
    return load({**data, "tls": tls_setting}, SERVICES_DIR)


@pytest.fixture(autouse=True)
def fresh_run(monkeypatch):
    """Each test is a run of its own (the module keeps what one run decided)."""
    monkeypatch.setattr(tls, "_this_run", {})


def next_run():
    tls._this_run.clear()


def conf_of(data, **tls_setting) -> str:
    return build_plan(stack_with(data, **tls_setting), "local", SECRETS, certificate=certs.certificate()
                      ).files["nginx/nginx.conf"]


# ---------------------------------------------------------------- the setting

@pytest.mark.parametrize(("setting", "expected"), [
    ({"source": "self-sigend"}, "tls.source: must be one of self-signed, files, acme, got 'self-sigend' "
                                "(did you mean 'self-signed'?)"),
    ({"prot": 8443}, "tls.prot: unknown key (did you mean 'port'?)"),
    ({"port": 8080}, "tls.port: must differ from gateway_port (8080), which answers plain HTTP with a redirect to it"),
    ({"port": 70000}, "tls.port: must be an integer from 1 to 65535, got 70000"),
    ({"server_names": "example.com"}, "tls.server_names: must be a non-empty list of lowercase DNS names or IP "
                                      "addresses, got 'example.com'"),
    ({"server_names": ["Example.com"]}, "tls.server_names: must be a non-empty list of lowercase DNS names or IP "
                                        "addresses, got ['Example.com']"),
    ({"source": "files", "cert_file": "c.pem"}, 'tls: source "files" needs key_file, the path of the PEM file '
                                                "on this machine"),
    ({"cert_file": "c.pem"}, 'tls.cert_file: is only read with source "files"'),
    ({"source": "acme", "server_names": ["api.example.com"]}, 'tls: source "acme" needs acme_email'),
    ({"source": "acme", "acme_email": "ops@example.com", "server_names": ["10.0.0.1"]},
     "tls.server_names: '10.0.0.1': source \"acme\" (HTTP-01) needs public DNS names, no wildcard or IP address"),
    ({"source": "acme", "acme_email": "not an address"}, "tls.acme_email: must be an e-mail address"),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else None)
def test_a_bad_tls_setting_is_one_line_naming_its_key(data, setting, expected):
    with pytest.raises(StackError) as refused:
        stack_with(data, **setting)
    assert str(refused.value).startswith(expected)


def test_acme_needs_the_compose_engine(data):
    with pytest.raises(StackError, match='tls.source: source "acme" needs engine = "compose"'):
        load({**data, "engine": "swarm",
              "tls": {"source": "acme", "acme_email": "a@example.com", "server_names": ["api.example.com"]}},
             SERVICES_DIR)


def test_defaults_and_the_example_setting(data):
    del data["tls"]
    assert load(data, SERVICES_DIR).tls == stack_with(data).tls
    assert (stack_with(data).tls.source, stack_with(data).tls.port) == ("self-signed", 443)
    assert stack_with(data, server_names=["*.example.com", "127.0.0.1", "::1"]).tls.server_names == (
        "*.example.com", "127.0.0.1", "::1")


# ---------------------------------------------------------------- self-signed: once, reused, renewed

def test_generated_once_written_only_when_kept_then_reused(data, tmp_path):
    stack, store = stack_with(data), tmp_path / "tls" / "s-e"
    first = tls.resolve(stack, store, ["127.0.0.1"], NOW)
    assert first.issued == "new" and not store.exists()  # deciding writes nothing (--dry, verify.py)
    assert set(tls.changed_files(store)) == {tls.CA_CERT, tls.CA_KEY, tls.SERVER_CERT, tls.SERVER_KEY}
    tls._write(store, tls._this_run[store])
    assert stat.S_IMODE(os.stat(store / tls.SERVER_KEY).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store / tls.CA_KEY).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store / tls.CA_CERT).st_mode) == 0o644
    next_run()
    again = tls.resolve(stack, store, ["127.0.0.1"], NOW + 100 * DAY)
    assert (again.issued, again.chain_pem, again.key_pem) == ("", first.chain_pem, first.key_pem)
    assert tls.changed_files(store) == []
    cert = x509.load_pem_x509_certificate(first.chain_pem)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((store / tls.CA_CERT).read_bytes()))
    assert tls.uncovered(cert, ["localhost", "127.0.0.1"]) == []


def test_every_host_of_a_run_gets_the_same_certificate(data, tmp_path):
    stack, store = stack_with(data), tmp_path / "store"
    first = tls.resolve(stack, store, ["10.0.0.3"], NOW)
    second = tls.resolve(stack, store, ["10.0.0.3"], NOW)
    assert second.chain_pem == first.chain_pem and second.issued == "new"  # not kept yet: still new


def test_renewed_before_expiry_by_the_same_ca(data, tmp_path):
    stack, store = stack_with(data), tmp_path / "store"
    first = tls.resolve(stack, store, [], NOW)
    tls._write(store, tls._this_run[store])
    next_run()
    near_end = first.not_after - 29 * DAY
    renewed = tls.resolve(stack, store, [], near_end)
    assert renewed.issued == "renewed" and renewed.not_after > first.not_after
    assert set(tls.changed_files(store)) == {tls.SERVER_CERT, tls.SERVER_KEY}  # the CA stays: clients keep trusting


def test_reissued_when_the_names_change_and_a_new_ca_near_its_end(data, tmp_path):
    stack, store = stack_with(data), tmp_path / "store"
    tls.resolve(stack, store, ["10.0.0.3"], NOW)
    tls._write(store, tls._this_run[store])
    next_run()
    assert tls.resolve(stack, store, ["10.0.0.3", "10.0.0.4"], NOW).issued == "now also for 10.0.0.4"
    next_run()
    ca_end = x509.load_pem_x509_certificate((store / tls.CA_CERT).read_bytes()).not_valid_after_utc
    tls.resolve(stack, store, ["10.0.0.3"], ca_end - 10 * DAY)
    assert tls.CA_CERT in tls.changed_files(store)


def test_a_control_machine_without_the_ca_adopts_the_hosts_copy(data, tmp_path):
    """Another operator's machine (no .deploy/tls/) serves what the hosts serve instead of starting
    a new CA that every client would have to be given again; the CA's key is never in the copy."""
    stack = stack_with(data)
    first = tls.resolve(stack, tmp_path / "creator", ["10.0.0.3"], NOW)
    copy = json.loads(tls.host_copy(first))
    assert set(copy) == {tls.CA_CERT, tls.SERVER_CERT, tls.SERVER_KEY}
    next_run()
    other = tmp_path / "another-machine"
    adopted = tls.resolve(stack, other, ["10.0.0.3"], NOW + DAY, on_host=tls.parse_host_copy(json.dumps(copy)))
    assert (adopted.chain_pem, adopted.key_pem, adopted.ca_pem) == (first.chain_pem, first.key_pem, first.ca_pem)
    assert adopted.issued == "adopted from a host"
    assert set(tls.changed_files(other)) == {tls.CA_CERT, tls.SERVER_CERT, tls.SERVER_KEY}  # kept here from now on


def test_a_machine_without_the_cas_key_refuses_to_issue_in_one_line(data, tmp_path):
    stack = stack_with(data)
    on_host = tls.parse_host_copy(tls.host_copy(tls.resolve(stack, tmp_path / "creator", ["10.0.0.3"], NOW)).decode())
    next_run()
    with pytest.raises(StackError, match=r"^tls: the gateway's certificate must be issued again \(now also for "
                                         r"10.0.0.4\), but the stack CA's key is not in .*another: copy it there"):
        tls.resolve(stack, tmp_path / "another", ["10.0.0.3", "10.0.0.4"], NOW, on_host=on_host)


def test_a_machine_that_keeps_a_ca_ignores_the_hosts_copy(data, tmp_path):
    stack, store = stack_with(data), tmp_path / "store"
    mine = tls.resolve(stack, store, [], NOW)
    tls._write(store, tls._this_run[store])
    next_run()
    theirs = tls.parse_host_copy(tls.host_copy(tls.resolve(stack, tmp_path / "other", [], NOW)).decode())
    next_run()
    assert tls.resolve(stack, store, [], NOW, on_host=theirs).chain_pem == mine.chain_pem


@pytest.mark.parametrize("text", ["", "not json", '{"ca.pem": "only one"}'])
def test_no_whole_host_copy_is_no_copy(text):
    assert tls.parse_host_copy(text) is None


# ---------------------------------------------------------------- files: checked before any host

def user_files(tmp_path, names=("api.example.com",), now=NOW, key_of=None):
    chain, key = certs.server(names, now)
    if key_of is not None:
        key = certs.server(key_of, now)[1]
    (tmp_path / "cert.pem").write_bytes(chain + certs.ca()[0])  # the chain after the certificate
    (tmp_path / "key.pem").write_bytes(key)
    return {"source": "files", "cert_file": str(tmp_path / "cert.pem"), "key_file": str(tmp_path / "key.pem"),
            "server_names": ["api.example.com"]}


def test_the_users_files_are_served_as_they_are(data, tmp_path):
    setting = user_files(tmp_path, names=("api.example.com", "www.example.com"))
    certificate = tls.resolve(stack_with(data, **setting), tmp_path / "store", ["10.0.0.3"], NOW)
    assert certificate.chain_pem == (tmp_path / "cert.pem").read_bytes()
    assert certificate.ca_pem is None and not (tmp_path / "store").exists()


@pytest.mark.parametrize(("files", "setting", "now", "expected"), [
    ({"key_of": ("other.example.com",)}, {}, NOW, "tls.key_file: {tmp}/key.pem is not the key of the certificate "
                                                  "in {tmp}/cert.pem"),
    ({}, {}, NOW + 400 * DAY, "tls.cert_file: the certificate in {tmp}/cert.pem expired on 2027-11-26"),
    ({}, {}, NOW - 2 * DAY, "tls.cert_file: the certificate in {tmp}/cert.pem is not valid before 2026-11-26"),
    ({}, {"server_names": ["api.example.com", "www.example.com"]}, NOW,
     "tls.server_names: the certificate in {tmp}/cert.pem does not cover www.example.com"),
], ids=["wrong-key", "expired", "not-yet-valid", "wrong-names"])
def test_bad_files_are_refused_with_one_line(data, tmp_path, files, setting, now, expected):
    stack = stack_with(data, **{**user_files(tmp_path, **files), **setting})
    with pytest.raises(StackError) as refused:
        tls.resolve(stack, tmp_path / "store", [], now)
    assert str(refused.value).startswith(expected.format(tmp=tmp_path))
    assert "\n" not in str(refused.value)


def test_files_that_are_no_pem_are_refused(data, tmp_path):
    setting = user_files(tmp_path)
    (tmp_path / "key.pem").write_text("not a key")
    with pytest.raises(StackError, match="tls.key_file: .* holds no unencrypted PEM private key"):
        tls.resolve(stack_with(data, **setting), tmp_path, [], NOW)
    (tmp_path / "cert.pem").write_text("not a certificate")
    with pytest.raises(StackError, match="tls.cert_file: .* holds no PEM certificate"):
        tls.resolve(stack_with(data, **setting), tmp_path, [], NOW)


def test_a_wildcard_covers_one_label():
    cert = x509.load_pem_x509_certificate(certs.server(("*.example.com", "10.0.0.1"))[0])
    assert tls.uncovered(cert, ["api.example.com", "10.0.0.1", "a.b.example.com", "example.com", "10.0.0.2"]) == [
        "a.b.example.com", "example.com", "10.0.0.2"]


# ---------------------------------------------------------------- nginx.conf

def server_block(conf: str, listen: str) -> str:
    return conf.split(f"listen {listen}")[1].split("\n    }\n")[0]


def test_https_server_is_modern_and_plain_http_only_redirects(data):
    conf = conf_of(data, source="self-signed", port=8443, server_names=["localhost"])
    https = server_block(conf, "8443 ssl http2;")
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in https
    ciphers = https.split("ssl_ciphers ")[1].split(";")[0].split(":")
    assert ciphers[:2] == ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"] and len(ciphers) == 9
    assert not any(weak in c for c in ciphers for weak in ("CBC", "SHA1", "RC4", "3DES", "NULL", "EXPORT"))
    assert 'add_header Strict-Transport-Security "max-age=63072000" always;' in https
    # HSTS stops the http block's add_header from being inherited: the request id is repeated.
    assert "add_header X-Request-ID $stack_request_id always;" in https
    assert "ssl_certificate /etc/nginx/stack/tls/server.crt;" in https
    assert "ssl_certificate_key /etc/nginx/stack/tls/server.key;" in https
    assert "location /api/channels/ {" in https and "proxy_set_header Upgrade $http_upgrade;" in https
    assert f"# Certificate: {certs.certificate().summary()}" in conf  # a renewal changes it: the gateway reloads
    plain = server_block(conf, "8080;")
    assert "location = /health {" in plain  # Docker's own healthcheck stays on plain HTTP
    assert "return 308 https://$host:8443$request_uri;" in plain
    assert "proxy_pass" not in plain and "acme-challenge" not in plain


def test_the_redirect_to_port_443_names_no_port(data):
    assert "return 308 https://$host$request_uri;" in conf_of(data, port=443)


# nginx to check the rendered file with: scripts/test.sh installs Debian's (NGINX=/path overrides).
NGINX = os.environ.get("NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"


def test_nginx_accepts_the_rendered_config(data, tmp_path):
    """nginx -t on the rendered config (TLS, request ids, JSON access log), with its paths
    moved under tmp_path and its route targets stubbed as the helper writes them."""
    plan = build_plan(stack_with(data, port=8443), "local", SECRETS, certificate=certs.certificate())
    root = tmp_path / "stack"
    for rel in (contract.TLS_CERT, contract.TLS_KEY):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(plan.files[f"nginx/{rel}"])
    (root / "targets").mkdir()
    for service in ("auth-service", "creator-hub", "ai-engine", "channel-service"):
        (root / "targets" / f"{service}.conf").write_text("set $upstream 127.0.0.1:9;\n")
    conf = plan.files["nginx/nginx.conf"].replace("/tmp/", f"{tmp_path}/")  # pid and temp paths first
    (root / "nginx.conf").write_text(conf.replace(contract.GATEWAY_CONF_MOUNT, str(root)))
    (tmp_path / "logs").mkdir()
    # Not NGINX in its environment: nginx reads that variable as sockets to inherit.
    env = {name: value for name, value in os.environ.items() if name != "NGINX"}
    result = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(root / "nginx.conf")], capture_output=True,
                            text=True, timeout=30, check=False, env=env)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- the key's way to the gateway

def test_the_key_is_a_0600_release_file_and_in_no_other(data):
    plan = build_plan(stack_with(data), "local", SECRETS, certificate=certs.certificate())
    assert "nginx/tls/server.key" in plan.secret_files
    assert plan.files["nginx/tls/server.key"] == certs.certificate().key_pem.decode()
    key = certs.certificate().key_pem.decode()
    assert [rel for rel, text in plan.files.items() if key in text] == ["nginx/tls/server.key"]
    assert not any(rel.startswith("images/") and "PRIVATE KEY" in text for rel, text in plan.files.items())


def gateway_release(helpers_dir: Path, plan, release: str = "R1") -> None:
    root = helpers_dir / "releases" / release
    for rel, text in plan.files.items():
        if rel.startswith("nginx/") or rel == contract.RELEASE_FILE:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)


SYNC = """
import json, sys
sys.path.insert(0, sys.argv[1])
import stackctl
stackctl.serving = lambda *args, **kwargs: None  # no engine here: targets by their DNS names
stackctl.live_container = lambda *args, **kwargs: "live"  # and every routed app already has its alias
release = sys.argv[2]
print(stackctl.sync_gateway(release, stackctl.manifest(release)))
"""


def sync(helpers_dir: Path, release: str = "R1") -> str:
    result = subprocess.run([os.sys.executable, "-c", SYNC, str(helpers_dir), release], capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_helper_gives_the_gateway_its_key_0600(data, helpers_dir):
    plan = build_plan(stack_with(data), "local", SECRETS, certificate=certs.certificate())
    gateway_release(helpers_dir, plan)
    assert sync(helpers_dir) == "True"
    key = helpers_dir / contract.GATEWAY_DIR / contract.TLS_KEY
    assert key.read_text() == certs.certificate().key_pem.decode()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    if os.geteuid() == 0:  # the offline image's nginx (www-data) reads it; root's master does anyway
        assert key.stat().st_uid == contract.GATEWAY_UID
    assert (helpers_dir / contract.GATEWAY_DIR / contract.TLS_CERT).read_text() == plan.files["nginx/tls/server.crt"]
    assert sync(helpers_dir) == "False"  # nothing changed: no reload


def test_acme_seeds_certbots_files_once_and_never_overwrites_them(data, helpers_dir):
    setting = {"source": "acme", "acme_email": "ops@example.com", "server_names": ["api.example.com"], "port": 8443}
    plan = build_plan(stack_with(data, **setting), "local", SECRETS, certificate=certs.certificate())
    conf = plan.files["nginx/nginx.conf"]
    assert "ssl_certificate /etc/nginx/stack/tls/acme/fullchain.pem;" in conf
    assert "location ^~ /.well-known/acme-challenge/ {\n            root /etc/nginx/stack/acme;" in conf
    gateway_release(helpers_dir, plan)
    sync(helpers_dir)
    live = helpers_dir / contract.GATEWAY_DIR
    assert (live / contract.ACME_KEY).read_text() == certs.certificate().key_pem.decode()
    assert stat.S_IMODE((live / contract.ACME_KEY).stat().st_mode) == 0o600
    assert not (live / contract.TLS_KEY).exists()
    (live / contract.ACME_CERT).write_text("certbot's")  # what the deploy hook put there
    (live / contract.ACME_KEY).write_text("certbot's key")
    gateway_release(helpers_dir, plan, "R2")
    sync(helpers_dir, "R2")
    assert (live / contract.ACME_CERT).read_text() == "certbot's"
    assert (live / contract.ACME_KEY).read_text() == "certbot's key"


def test_swarm_gets_the_key_as_a_secret_and_the_certificate_as_a_config(data):
    stack = load({**data, "engine": "swarm"}, SERVICES_DIR)
    files, _ = render_stack(stack, {n: f"img/{n}:1" for n in stack.services}, "events {}\n", certs.certificate())
    doc = yaml.safe_load(files[STACK_FILE])
    gateway = doc["services"]["api-gateway"]
    short = certs.certificate().fingerprint[:12]
    assert gateway["secrets"] == [{"source": f"gateway-key-{short}", "target": "gateway_tls_key", "uid": "33",
                                   "gid": "33", "mode": 0o600}]
    assert {"source": f"gateway-cert-{short}", "target": "/etc/nginx/stack/tls/server.crt"} in gateway["configs"]
    assert doc["secrets"][f"gateway-key-{short}"] == {"file": "./nginx/tls/server.key"}
    assert doc["configs"][f"gateway-cert-{short}"] == {"file": "./nginx/tls/server.crt"}
    assert certs.certificate().key_pem.decode() not in files[STACK_FILE]
    assert files["nginx/tls/server.key"] == certs.certificate().key_pem.decode()


def test_swarm_nginx_reads_the_key_from_its_secret(data):
    from stackdeploy.swarmstack import swarm_release
    stack = load({**data, "engine": "swarm"}, SERVICES_DIR)
    plan = swarm_release(build_plan(stack, "local", SECRETS, certificate=certs.certificate()), True,
                         certs.certificate())
    assert "ssl_certificate_key /run/secrets/gateway_tls_key;" in plan.files["nginx/nginx.conf"]
    assert plan.secret_files == {"nginx/tls/server.key"}


# ---------------------------------------------------------------- acme: rendered, not run

ACME = {"source": "acme", "acme_email": "ops@example.com", "server_names": ["api.example.com", "www.example.com"],
        "port": 443}


def test_certbot_asks_for_every_name_through_the_gateways_webroot(data):
    stack = stack_with({**data, "gateway_port": 80}, **ACME)
    assert acme.certbot_issue(stack) == [
        "certbot", "certonly", "--webroot", "--webroot-path", "/opt/creatorstack/gateway/acme",
        "--cert-name", "creatorstack", "--email", "ops@example.com", "--agree-tos", "--non-interactive",
        "--keep-until-expiring", "--deploy-hook", "sh /opt/creatorstack/acme/deploy-hook.sh",
        "-d", "api.example.com", "-d", "www.example.com"]


def test_acme_scripts_are_valid_shell_and_install_the_key_0600(data, tmp_path):
    stack = stack_with({**data, "gateway_port": 80}, **ACME)
    files = acme.acme_files(stack)
    assert set(files) == {"acme/issue.sh", "acme/deploy-hook.sh"}
    for rel, content in files.items():
        (tmp_path / Path(rel).name).write_bytes(content)
        assert subprocess.run(["sh", "-n", str(tmp_path / Path(rel).name)], check=False).returncode == 0, rel
    issue = files["acme/issue.sh"].decode()
    assert "apt-get install -y certbot" in issue
    assert "certbot certonly --webroot --webroot-path /opt/creatorstack/gateway/acme" in issue
    assert "'sh /opt/creatorstack/acme/deploy-hook.sh'" in issue
    hook = files["acme/deploy-hook.sh"].decode()
    assert 'install -D -m 600 -o 33 -g 33 "$lineage/privkey.pem" tls/acme/privkey.pem.new' in hook
    assert "cd /opt/creatorstack/gateway" in hook
    assert hook.index("nginx -t") < hook.index("docker kill --signal HUP")


def test_acme_scripts_only_where_the_gateway_runs_with_source_acme(data):
    assert acme.acme_files(stack_with(data)) == {}
    stack = stack_with({**data, "gateway_port": 80}, **ACME)
    # No gateway, and so no exporter of its stub_status either (nor Prometheus's target for it).
    gone = {k for k, v in data["services"].items()
            if v["role"] == "gateway" or "api-gateway" in v.get("depends_on", ())}
    services = {k: {**v, "scrapes": [t for t in v["scrapes"] if t not in gone]} if "scrapes" in v else v
                for k, v in data["services"].items() if k not in gone}
    without_gateway = load({**data, "gateway_port": 80, "tls": ACME, "placement": {}, "services": services},
                           SERVICES_DIR)
    assert acme.acme_files(without_gateway) == {} and acme.acme_files(stack)
