"""Certificates for tests: a stack CA, server certificates it signs, and the ``Certificate``
a plan takes, made with the same functions the deploy uses (stackdeploy.tls)."""

from __future__ import annotations

import datetime
from functools import cache

from cryptography import x509

from stackdeploy.tls import Certificate, new_ca, new_server_cert

NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)


def ca(label: str = "test") -> tuple[bytes, bytes]:
    """(certificate, key) of a test CA, PEM: one per label and test session."""
    return _ca(label)


@cache
def _ca(label: str) -> tuple[bytes, bytes]:
    return new_ca(label, NOW - datetime.timedelta(days=1))


def server(names: tuple[str, ...] = ("localhost", "127.0.0.1"), now: datetime.datetime = NOW,
           label: str = "test") -> tuple[bytes, bytes]:
    """(certificate, key) for ``names``, signed by ``ca(label)``, valid from ``now``."""
    return new_server_cert(list(names), *ca(label), now)


@cache
def certificate(names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Certificate:
    """What a plan serves in tests: fixed for the session, so plans compare byte for byte."""
    chain, key = server(names)
    cert = x509.load_pem_x509_certificate(chain)
    return Certificate(chain, key, ca()[0], cert.fingerprint(cert.signature_hash_algorithm).hex(),
                       cert.not_valid_after_utc, "")
