"""The listener's TLS certificate: made once on first run, then reused.

Owns the self-signed certificate every local client is asked to trust: SAN
``DNS:<domain>`` and ``IP:127.0.0.1`` (clients connect by either name), an
ECDSA P-256 key written 0600, and the SHA-256 fingerprint the web UI shows so
the person can compare it with what their client displays.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CERT_NAME = "xmpp-cert.pem"
KEY_NAME = "xmpp-key.pem"
_VALIDITY = datetime.timedelta(days=3650)  # a local cert; renewing it means re-trusting


@dataclass(frozen=True, slots=True)
class Certificate:
    cert_path: Path
    key_path: Path
    fingerprint: str  # SHA-256 of the DER certificate, "AB:CD:..." as clients show it


def fingerprint_of(pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(pem)
    digest = cert.fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def ensure_certificate(cert_dir: Path | str, domain: str = "localhost") -> Certificate:
    """Load the certificate in ``cert_dir``, creating it (and the dir, 0700) if absent."""
    directory = Path(cert_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    if not (cert_path.exists() and key_path.exists()):
        _generate(cert_path, key_path, domain)
    return Certificate(cert_path, key_path, fingerprint_of(cert_path.read_bytes()))


def _generate(cert_path: Path, key_path: Path, domain: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.datetime.now(datetime.UTC)
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName(domain),
            x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Create the key file 0600 from the start: a chmod after writing leaves a window.
    tmp_key = key_path.with_suffix(".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    os.replace(tmp_key, key_path)
    tmp_cert = cert_path.with_suffix(".tmp")
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp_cert, cert_path)


def server_context(cert: Certificate) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert.cert_path, cert.key_path)
    return ctx


def tls_failure(exc: BaseException) -> str:
    """Why a TLS handshake failed, for the log: some exceptions have no text at all."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"{exc.reason} ({type(exc).__name__} from {exc.library or 'OpenSSL'})"
    text = str(exc)
    if text:
        return f"{text} ({type(exc).__name__})"
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return f"the client closed the connection during the handshake ({type(exc).__name__})"
    if isinstance(exc, TimeoutError):
        return f"no handshake in time ({type(exc).__name__})"
    return type(exc).__name__
