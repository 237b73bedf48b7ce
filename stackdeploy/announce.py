"""What a run announces, while preparing, before it changes anything: the images, the starts
and how, the release, the certificate and the stand-ins. It reads the decisions and asks the
engine how it starts each service, so it sits above both."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyinfra import host, logger

from stackdeploy.engines import engine_for

if TYPE_CHECKING:
    from stackdeploy.desired import HostDecisions


def announce(decisions: HostDecisions) -> None:
    """Say, while preparing, exactly what this run will change on this host (--dry too)."""
    plan = decisions.plan
    engine = engine_for(plan.stack)
    builds = (["base image"] if decisions.base_to_build else []) + decisions.to_build
    retagged = [name for name in decisions.to_tag if name not in decisions.to_push]
    moves = (("ship", decisions.to_ship), ("push", decisions.to_push), ("tag", retagged), ("pull", decisions.to_pull),
             ("load", list(decisions.to_load)))
    moved = "".join(f"; {verb}: {', '.join(images)}" for verb, images in moves if images)
    reload = [n for n in decisions.changed_services if n not in decisions.to_start]
    reloads = f"; reload: {', '.join(reload)}" if reload else ""
    if decisions.unrouted:
        reloads += f"; live alias given back: {', '.join(decisions.unrouted)}"
    starts = ", ".join(engine.describe_start(plan, n) for n in decisions.to_start) or "nothing"
    new_secrets = f"; new secrets: {', '.join(decisions.new_secrets)}" if decisions.new_secrets else ""
    logger.info(f"{host.print_prefix}image source: {plan.image_source}; build: {', '.join(builds) or 'nothing'}"
                f"{moved}; (re)start: {starts}{reloads}; "
                f"release: {decisions.release} ({'new' if decisions.new_release else 'current'}){new_secrets}")
    if any(plan.stack.services[name].role == "gateway" for name in plan.services):
        cert, tls = decisions.certificate, plan.stack.tls
        logger.info(f"{host.print_prefix}gateway certificate ({tls.source}): "
                    f"{f'issued ({cert.issued})' if cert.issued else 'kept'}, {cert.summary()}; "
                    f"HTTPS on port {tls.port}, HTTP {plan.stack.gateway_port} redirects")
        if tls.source == "acme":
            logger.warning(f"{host.print_prefix}tls source acme: until `sh {plan.stack.deploy_dir}/acme/issue.sh` "
                           "has run on this host (as root), the gateway serves a stack-CA certificate")
    # What `stackdeploy plan` reads: the very decision that gates the lock, the release and the audit.
    logger.info(f"{host.print_prefix}plan: {'changes' if decisions.changes_anything else 'no changes'}")
    for name in plan.services:
        if plan.is_standin(name):
            logger.warning(f"{host.print_prefix}{name}: Ollama-API STAND-IN (offline mode, not Ollama)")
