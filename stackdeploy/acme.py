"""tls source "acme": certbot, from Debian, with HTTP-01 through the gateway.

The deploy renders two scripts into ``<deploy_dir>/acme/`` on the gateway's host, and the
gateway serves certbot's webroot (``gateway/acme/``) at ``/.well-known/acme-challenge/``
over plain HTTP (port ``gateway_port``, which must be reachable as port 80 from the
internet: Let's Encrypt's HTTP-01 asks there). Until certbot has run, the gateway serves a
stack-CA certificate, so nginx can start.

- ``issue.sh`` (run once by the operator, as root, after the first deploy): installs
  Debian's ``certbot`` and asks for a certificate for ``tls.server_names``, with the deploy
  hook below. Debian's package also installs ``certbot.timer``, which renews it (twice a day
  it renews what has less than 30 days left) and runs the same hook.
- ``deploy-hook.sh`` (run by certbot after each issue or renewal): copies the certificate
  and key into ``gateway/tls/acme/`` (the key 0600, owned by the gateway's nginx user),
  checks the config with ``nginx -t`` and reloads the gateway.

Neither can run from a machine that Let's Encrypt cannot reach, so the deploy never runs
them: it renders them, and the unit tests check what they hold.
"""

from __future__ import annotations

import posixpath
import shlex

from stackdeploy import contract
from stackdeploy.model import Stack

ACME_DIR = "acme"  # <deploy_dir>/acme/: the scripts (outside the releases: certbot keeps the hook's path)
ISSUE_SCRIPT, HOOK_SCRIPT = contract.ACME_SCRIPTS
CERTBOT_PACKAGE = "certbot"


def certbot_issue(stack: Stack) -> list[str]:
    """certbot's argv: one certificate (named after the stack) for every server name, HTTP-01
    answered from the gateway's webroot."""
    assert stack.tls.acme_email
    gateway = posixpath.join(stack.deploy_dir, contract.GATEWAY_DIR)
    argv = ["certbot", "certonly", "--webroot", "--webroot-path", posixpath.join(gateway, contract.ACME_WEBROOT),
            "--cert-name", stack.name, "--email", stack.tls.acme_email, "--agree-tos", "--non-interactive",
            "--keep-until-expiring", "--deploy-hook", f"sh {posixpath.join(stack.deploy_dir, HOOK_SCRIPT)}"]
    for name in stack.tls.server_names:
        argv += ["-d", name]
    return argv


def issue_script(stack: Stack) -> str:
    lines = ["#!/bin/sh",
             f"# {stack.name}: rendered by stackdeploy (stackdeploy/acme.py). Run once, as root, on the",
             "# gateway's host after the first deploy; certbot.timer renews the certificate after that.",
             "set -eu",
             f"command -v certbot >/dev/null || {{ apt-get update && apt-get install -y {CERTBOT_PACKAGE}; }}",
             shlex.join(certbot_issue(stack))]
    return "\n".join(lines) + "\n"


def hook_script(stack: Stack, gateway_service: str) -> str:
    """Run by certbot with ``RENEWED_LINEAGE`` (its live/<name>/ directory): the new certificate
    and key into gateway/tls/acme/, then the gateway reloaded once ``nginx -t`` accepts it."""
    tls = posixpath.join(stack.deploy_dir, contract.GATEWAY_DIR)
    uid = str(contract.GATEWAY_UID)
    conf = f"{contract.GATEWAY_CONF_MOUNT}/nginx.conf"
    find = ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={stack.name}",
            "--filter", f"label=com.docker.compose.service={gateway_service}"]
    lines = ["#!/bin/sh",
             f"# {stack.name}: rendered by stackdeploy (stackdeploy/acme.py): certbot's deploy hook.",
             "set -eu",
             'lineage="${RENEWED_LINEAGE:?run by certbot}"',
             f"cd {shlex.quote(tls)}",
             f"install -D -m 644 \"$lineage/fullchain.pem\" {shlex.quote(contract.ACME_CERT)}.new",
             f"install -D -m 600 -o {uid} -g {uid} \"$lineage/privkey.pem\" {shlex.quote(contract.ACME_KEY)}.new",
             f"mv {shlex.quote(contract.ACME_CERT)}.new {shlex.quote(contract.ACME_CERT)}",
             f"mv {shlex.quote(contract.ACME_KEY)}.new {shlex.quote(contract.ACME_KEY)}",
             f"gateway=$({shlex.join(find)})",
             'if [ -n "$gateway" ]; then',
             f"    docker exec \"$gateway\" nginx -t -q -c {shlex.quote(conf)}",
             '    docker kill --signal HUP "$gateway"',
             "fi"]
    return "\n".join(lines) + "\n"


def acme_files(stack: Stack) -> dict[str, bytes]:
    """The scripts of the gateway's host (``<deploy_dir>/acme/``); none unless tls source is "acme"."""
    gateway = next((s for s in stack.services.values() if s.role == "gateway"), None)
    if stack.tls.source != "acme" or gateway is None:
        return {}
    return {ISSUE_SCRIPT: issue_script(stack).encode(), HOOK_SCRIPT: hook_script(stack, gateway.name).encode()}
