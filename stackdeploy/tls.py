"""The gateway's certificate, decided on the control machine before any host is touched.

Three sources (``tls.source`` in group_data):

- ``self-signed`` (default): a stack CA and a server certificate it signs, generated once
  and kept in ``.deploy/tls/<stack>-<environment>/`` (keys 0600, git-ignored) like the
  secrets, and reused by every later deploy. The server certificate is issued again when
  fewer than ``RENEW_BEFORE`` are left or when it no longer covers ``server_names``; the CA
  likewise before it expires. Clients verify the gateway with ``ca.pem`` from there
  (``curl --cacert``, the smoke test).
- ``files``: the user's own certificate (PEM, chain after it) and key, checked here: the key
  matches, the certificate is valid now, and it covers every server name. A refusal is one
  line naming the setting.
- ``acme``: the gateway starts on a stack-CA certificate like ``self-signed`` (nginx needs one
  to start) until certbot replaces it on the host (``stackdeploy/acme.py``).

Every host keeps the CA certificate, the server certificate and its key in ``.tls.json``
(0600), so a control machine that has no copy adopts them, as it adopts the secrets, instead
of starting a new CA that every client would have to be given again. The CA's key is not
in it: renewing from such a machine is refused in one line until the key is copied there.

Like ``secrets``, deciding writes nothing: what a run generated is written by the ``kept``
operation, so ``--dry`` and ``verify.py`` leave ``.deploy/`` as it was.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyinfra import host
from pyinfra.api import operation

from stackdeploy import PROJECT_ROOT, STATE_DIR
from stackdeploy.callback import callback
from stackdeploy.model import Stack, StackError, TlsSettings

RENEW_BEFORE = datetime.timedelta(days=30)
SERVER_VALIDITY = datetime.timedelta(days=365)
CA_VALIDITY = datetime.timedelta(days=3650)
# The store's files: the CA's key never leaves the control machine.
CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY = "ca.pem", "ca-key.pem", "server.pem", "server-key.pem"
PRIVATE = (CA_KEY, SERVER_KEY)
HOST_COPY = (CA_CERT, SERVER_CERT, SERVER_KEY)  # what every host keeps in .tls.json: never the CA's key

# store -> the files this run decided for it: every host of a run shares one certificate.
_this_run: dict[Path, dict[str, bytes]] = {}


@dataclass(frozen=True)
class Certificate:
    """What the gateway serves: the certificate chain and its key (PEM), and what a client
    verifies it with (the stack CA's certificate; None for source "files")."""

    chain_pem: bytes
    key_pem: bytes
    ca_pem: bytes | None
    fingerprint: str  # sha256 of the leaf certificate (DER), hex
    not_after: datetime.datetime
    issued: str  # "" when reused as it was; else why this run issued it ("new", "renewed", ...)

    def summary(self) -> str:
        """One line for logs and nginx.conf: never the key."""
        return f"sha256 {self.fingerprint[:16]}, valid until {self.not_after:%Y-%m-%d}"


def store_of(stack: Stack, state_dir: Path = STATE_DIR) -> Path:
    """The control machine's copy: ``.deploy/tls/<stack>-<environment>/`` (``ca.pem`` for clients)."""
    return state_dir / "tls" / f"{stack.name}-{stack.environment}"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _alt_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def new_ca(stack_label: str, now: datetime.datetime) -> tuple[bytes, bytes]:
    """(certificate, key) of a new stack CA, PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{stack_label} stack CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return _pem_cert(cert), _pem_key(key)


def new_server_cert(names: Sequence[str], ca_pem: bytes, ca_key_pem: bytes,
                    now: datetime.datetime) -> tuple[bytes, bytes]:
    """(certificate, key) of a server certificate for ``names``, signed by the CA, PEM."""
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(min(now + SERVER_VALIDITY, ca.not_valid_after_utc))
            .add_extension(x509.SubjectAlternativeName([_alt_name(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return _pem_cert(cert), _pem_key(key)


def uncovered(cert: x509.Certificate, names: Iterable[str]) -> list[str]:
    """The names a client would not accept ``cert`` for: an IP address must be one of its IP
    addresses, a DNS name one of its DNS names or under a wildcard one label deep."""
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return list(names)
    dns = {n.lower() for n in alt.get_values_for_type(x509.DNSName)}
    ips = set(alt.get_values_for_type(x509.IPAddress))
    missing = []
    for name in names:
        try:
            covered = ipaddress.ip_address(name) in ips
        except ValueError:
            name = name.lower()
            parent = name.split(".", 1)[1] if "." in name else ""
            covered = name in dns or (not name.startswith("*.") and bool(parent) and f"*.{parent}" in dns)
        if not covered:
            missing.append(name)
    return missing


def key_matches(cert: x509.Certificate, key_pem: bytes) -> bool:
    key = serialization.load_pem_private_key(key_pem, None)
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*der) == cert.public_key().public_bytes(*der)


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _read_store(store: Path) -> dict[str, bytes]:
    return {name: (store / name).read_bytes() for name in (CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY)
            if (store / name).exists()}


def _why_issue(files: dict[str, bytes], names: Sequence[str], now: datetime.datetime) -> str:
    """Why the server certificate in ``files`` cannot be served as it is ("" when it can)."""
    if SERVER_CERT not in files or SERVER_KEY not in files:
        return "new"
    cert = x509.load_pem_x509_certificate(files[SERVER_CERT])
    if not _signed_by(cert, x509.load_pem_x509_certificate(files[CA_CERT])):
        return "issued by another CA"
    if not key_matches(cert, files[SERVER_KEY]):
        return "its key does not match"
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return "renewed"
    missing = uncovered(cert, names)
    return f"now also for {', '.join(missing)}" if missing else ""


def self_signed(stack: Stack, names: Sequence[str], store: Path, now: datetime.datetime | None = None,
                on_host: dict[str, bytes] | None = None) -> Certificate:
    """The stack CA's server certificate for ``names``: the kept one when it is still good,
    else a new one (and a new CA when there is none or it is near its end). With no CA kept
    here, a host's copy (``on_host``, see ``parse_host_copy``) is adopted. Writes nothing
    (see ``kept``); every host of a run gets the same one."""
    now = now or _now()
    files = {**_read_store(store), **_this_run.get(store, {})}
    if CA_CERT not in files and on_host and set(HOST_COPY) <= on_host.keys():
        files = {name: on_host[name] for name in HOST_COPY}
    if CA_CERT not in files or (
            x509.load_pem_x509_certificate(files[CA_CERT]).not_valid_after_utc - now < RENEW_BEFORE):
        files = dict(zip((CA_CERT, CA_KEY), new_ca(f"{stack.name}-{stack.environment}", now), strict=True))
    issued = _why_issue(files, names, now)
    if issued and CA_KEY not in files:
        raise StackError("tls", f"the gateway's certificate must be issued again ({issued}), but the stack CA's "
                                f"key is not in {store}: copy it there from the control machine that created the CA")
    if issued:
        files[SERVER_CERT], files[SERVER_KEY] = new_server_cert(names, files[CA_CERT], files[CA_KEY], now)
    elif _read_store(store).get(SERVER_CERT) != files[SERVER_CERT]:
        # By this run, for another host, or adopted from a host's copy: not kept here yet.
        issued = "new" if CA_KEY in files else "adopted from a host"
    _this_run[store] = files
    cert = x509.load_pem_x509_certificate(files[SERVER_CERT])
    return Certificate(files[SERVER_CERT], files[SERVER_KEY], files[CA_CERT], _fingerprint(cert),
                       cert.not_valid_after_utc, issued)


def _user_path(path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else PROJECT_ROOT / path


def from_files(tls: TlsSettings, now: datetime.datetime | None = None) -> Certificate:
    """The user's certificate and key (source "files"), refused with one line when the key does
    not match, it is not valid now, or it does not cover every server name."""
    now = now or _now()
    assert tls.cert_file and tls.key_file
    cert_path, key_path = _user_path(tls.cert_file), _user_path(tls.key_file)
    try:
        chain_pem = cert_path.read_bytes()
        certs = x509.load_pem_x509_certificates(chain_pem)
    except OSError as exc:
        raise StackError("tls.cert_file", f"cannot read {cert_path}: {exc.strerror}") from None
    except ValueError:
        raise StackError("tls.cert_file", f"{cert_path} holds no PEM certificate") from None
    try:
        key_pem = key_path.read_bytes()
        matches = key_matches(certs[0], key_pem)
    except OSError as exc:
        raise StackError("tls.key_file", f"cannot read {key_path}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise StackError("tls.key_file", f"{key_path} holds no unencrypted PEM private key") from None
    leaf = certs[0]
    if not matches:
        raise StackError("tls.key_file", f"{key_path} is not the key of the certificate in {cert_path}")
    if leaf.not_valid_after_utc <= now:
        raise StackError("tls.cert_file", f"the certificate in {cert_path} expired on "
                                          f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if leaf.not_valid_before_utc > now:
        raise StackError("tls.cert_file", f"the certificate in {cert_path} is not valid before "
                                          f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    missing = uncovered(leaf, tls.server_names)
    if missing:
        raise StackError("tls.server_names", f"the certificate in {cert_path} does not cover "
                                             f"{', '.join(missing)}")
    for cert, issuer in zip(certs, certs[1:], strict=False):
        if not _signed_by(cert, issuer):
            raise StackError("tls.cert_file", f"{cert_path}: each certificate after the first must be the "
                                              "issuer of the one before it")
    return Certificate(chain_pem, key_pem, None, _fingerprint(leaf), leaf.not_valid_after_utc, "")


def client_context(ca_file: str | None) -> ssl.SSLContext:
    """What a client verifies the gateway with: the system's CAs, and the stack CA when given
    (the smoke test, the load clients, the tests)."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def gateway_address(stack: Stack, host_name: str, private_address: str | None) -> str:
    """Where the control machine reaches a host's gateway: loopback for @local, the bind
    address when it is one routable address, else the host's private address or name."""
    bind = stack.gateway_bind
    if host_name == "@local":
        return "127.0.0.1" if bind in ("0.0.0.0", "::") else bind
    if bind not in ("0.0.0.0", "::", "127.0.0.1", "::1"):
        return bind
    return private_address or host_name


def resolve(stack: Stack, store: Path, addresses: Iterable[str] = (),
            now: datetime.datetime | None = None, on_host: dict[str, bytes] | None = None) -> Certificate:
    """The certificate the gateway serves, from ``tls.source`` (see the module's docstring).
    A stack-CA certificate also covers ``addresses``, where the gateways are reached (the
    smoke test's way in), so that it verifies there too."""
    if stack.tls.source == "files":
        return from_files(stack.tls, now)
    names = list(dict.fromkeys([*stack.tls.server_names, *addresses]))
    return self_signed(stack, names, store, now, on_host)


def host_copy(certificate: Certificate) -> bytes | None:
    """``.tls.json`` for every host: what another control machine adopts (None for source
    "files", whose certificate is the user's own, on the control machine)."""
    if certificate.ca_pem is None:
        return None
    pems = (certificate.ca_pem, certificate.chain_pem, certificate.key_pem)
    return (json.dumps(dict(zip(HOST_COPY, (pem.decode() for pem in pems), strict=True)), indent=2,
                       sort_keys=True) + "\n").encode()


def parse_host_copy(text: str) -> dict[str, bytes] | None:
    """A host's ``.tls.json`` as read by a fact (None when it has none, or not a whole one)."""
    try:
        found = json.loads(text) if text.strip() else {}
    except ValueError:
        return None  # not adopted: a new CA is safer than a half-read one
    return {name: found[name].encode() for name in HOST_COPY} if set(HOST_COPY) <= found.keys() else None


def _write(store: Path, files: dict[str, bytes]) -> None:
    store.mkdir(parents=True, exist_ok=True)
    os.chmod(store, 0o700)
    for name, content in files.items():
        tmp = store / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if name in PRIVATE else 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(tmp, store / name)


def changed_files(store: Path) -> list[str]:
    """The store's files that this run decided differently from what is kept."""
    kept_now = _read_store(store)
    return [name for name, content in sorted(_this_run.get(store, {}).items()) if kept_now.get(name) != content]


@operation(is_idempotent=True)
def kept(store: Path):
    """Keep the stack CA and the server certificate this run decided in ``store`` on the
    control machine (keys 0600), when they are new or renewed."""
    changed = changed_files(store)
    if not changed:
        host.noop(f"certificates already kept in {store}")
        return
    files = _this_run[store]
    yield callback(_write, store, {name: files[name] for name in changed})
