"""A throwaway PKI for TLS tests: a CA, a server certificate for localhost, a client certificate."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed none of the above
    stranger_cert: Path  # a client certificate signed by other_ca
    stranger_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(subject: str, key, issuer_name: x509.Name, issuer_key, *, ca: bool, usage=None, sans=()):
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert=None, key=None) -> Path:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return path


def make_pki(directory: Path) -> Pki:
    """Writes the PEM files into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    cas = {}
    for label in ("ca", "other_ca"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(f"vitrine test {label}", key, _name(f"vitrine test {label}"), key, ca=True)
        cas[label] = (cert, key)
        files[label] = _write(directory / f"{label}.pem", cert=cert)
    sans = (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    leaves = {
        "server": ("ca", ExtendedKeyUsageOID.SERVER_AUTH, sans),
        "client": ("ca", ExtendedKeyUsageOID.CLIENT_AUTH, ()),
        "stranger": ("other_ca", ExtendedKeyUsageOID.CLIENT_AUTH, ()),
    }
    for label, (issuer, usage, names) in leaves.items():
        ca_cert, ca_key = cas[issuer]
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(label, key, ca_cert.subject, ca_key, ca=False, usage=usage, sans=names)
        files[f"{label}_cert"] = _write(directory / f"{label}.crt", cert=cert)
        files[f"{label}_key"] = _write(directory / f"{label}.key", key=key)
    return Pki(**files)
