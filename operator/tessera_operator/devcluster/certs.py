"""Certificates and keys for a local control plane, made with the `cryptography` package.

One CA signs the apiserver's serving certificate and a client certificate per identity
(admin, controller-manager, scheduler, kwok, the local node). A separate RSA key pair signs
ServiceAccount tokens. Keys are EC P-256 (fast to make) except the token-signing key.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)
SERVING_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class ClientIdentity:
    """A user the control plane authenticates by client certificate (CN = user, O = groups)."""

    file_stem: str
    user: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class CertPaths:
    """Where a certificate and its key were written."""

    cert: Path
    key: Path


def _write_key(key: PrivateKey, path: Path) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(data)
    path.chmod(0o600)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


class CertificateAuthority:
    """A self-signed CA kept in memory while a cluster's certificates are made."""

    def __init__(self, common_name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        self.cert = (
            _builder(self.name, self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    def write(self, directory: Path) -> CertPaths:
        """Write ca.crt and ca.key into the directory."""
        paths = CertPaths(directory / "ca.crt", directory / "ca.key")
        _write_cert(self.cert, paths.cert)
        _write_key(self.key, paths.key)
        return paths

    def issue(
        self,
        directory: Path,
        file_stem: str,
        common_name: str,
        *,
        organizations: tuple[str, ...] = (),
        server_names: tuple[str, ...] = (),
        server_ips: tuple[str, ...] = (),
    ) -> CertPaths:
        """Issue a leaf certificate (client, or server when names/IPs are given) and write it."""
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        is_server = bool(server_names or server_ips)
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] if is_server else [ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = (
            _builder(x509.Name(attributes), self.name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if is_server:
            alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
            alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        paths = CertPaths(directory / f"{file_stem}.crt", directory / f"{file_stem}.key")
        _write_cert(cert, paths.cert)
        _write_key(key, paths.key)
        return paths


def write_service_account_keys(directory: Path) -> CertPaths:
    """Write the RSA key pair that signs and verifies ServiceAccount tokens (sa.pub, sa.key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    paths = CertPaths(directory / "sa.pub", directory / "sa.key")
    _write_key(key, paths.key)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    paths.cert.write_bytes(public)
    return paths


def make_cluster_pki(
    directory: Path,
    identities: tuple[ClientIdentity, ...],
    service_ip: str,
    extra_servers: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, CertPaths]:
    """Create the CA, the apiserver's serving cert, one client cert per identity and the SA keys.

    `extra_servers` maps a file stem to the IPs of another serving certificate (the local node's
    kubelet-style log endpoint). Returns the written paths keyed by "ca", "apiserver",
    "service-account", each identity's stem and each extra server's stem.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority("tessera-dev-ca")
    written = {"ca": ca.write(directory)}
    written["apiserver"] = ca.issue(
        directory,
        "apiserver",
        "kube-apiserver",
        server_names=SERVING_DNS_NAMES,
        server_ips=("127.0.0.1", service_ip),
    )
    for identity in identities:
        written[identity.file_stem] = ca.issue(
            directory, identity.file_stem, identity.user, organizations=identity.groups
        )
    for stem, ips in (extra_servers or {}).items():
        written[stem] = ca.issue(directory, stem, stem, server_names=("localhost",), server_ips=ips)
    written["service-account"] = write_service_account_keys(directory)
    return written
