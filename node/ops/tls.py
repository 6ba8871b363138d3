"""TLS for peer links between hosts: self-signed certificates bound to the validator key.

The peer-link certificate is NOT what authenticates a validator: the Ed25519
handshake of ``node.net.transport`` does. TLS adds confidentiality, and the binding
between the two is the certificate's SHA-256 fingerprint, which both sides sign in
the handshake (``PeerProof.channel``): the dialer signs the fingerprint of the
certificate it was actually served, the acceptor signs the fingerprint of its own.
A man in the middle that terminates TLS with its own certificate makes the two
fingerprints differ, so one of the two signatures fails and the link is refused.
Hence no CA is needed: every node makes its own certificate (``ensure_self_signed``),
may replace it at any time, and peers need no copy of it. A consortium that wants a
CA as well sets ``tls_ca``; the binding still applies.

Certificates use ECDSA P-256 (what every TLS stack accepts), 10 years, the node's
name as subject and its host names / addresses as SANs (informative only).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CERT_FILE = "tls_cert.pem"
KEY_FILE = "tls_key.pem"
VALID_DAYS = 3650


def fingerprint(der: bytes) -> bytes:
    """The channel binding value of a certificate: SHA-256 of its DER encoding."""
    return hashlib.sha256(der).digest()


def cert_file_fingerprint(path: Path | str) -> bytes:
    """Fingerprint of the first certificate in a PEM file."""
    cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    return fingerprint(cert.public_bytes(serialization.Encoding.DER))


def _san(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def make_self_signed(cert_path: Path, key_path: Path, *, name: str, hosts: list[str]) -> None:
    """Write a new key (0600) and a self-signed certificate for ``hosts``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "GridChain validator")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=VALID_DAYS)))
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName(_san(hosts)), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    key_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = key_path.with_name(key_path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, key_path)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure_self_signed(home: Path, *, name: str, hosts: list[str]) -> tuple[Path, Path]:
    """The home's certificate and key, made once; an existing pair is kept as it is."""
    cert_path, key_path = Path(home) / CERT_FILE, Path(home) / KEY_FILE
    if not (cert_path.exists() and key_path.exists()):
        make_self_signed(cert_path, key_path, name=name, hosts=hosts)
    return cert_path, key_path
