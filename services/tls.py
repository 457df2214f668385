"""The suite's private certificate authority and the certificate each process presents.

Every gRPC hop and etcd use mutual TLS. A process is configured with three files
(`CB_TLS_CA_FILE`, `CB_TLS_CERT_FILE`, `CB_TLS_KEY_FILE`): the CA it trusts, its own
certificate and its key. Its identity is the name in the certificate: the CN, and the
SAN URI `spiffe://cb/<name>`.

`Authority` is the private CA that the launcher (in `.run/tls/`) and the test fixtures
(a session CA) keep in one directory: `ca.crt`, `ca.key` and `<name>.crt` / `<name>.key`
per identity, keys mode 0600, reused when present and still valid. An operator who brings
their own CA puts its `ca.crt` and `ca.key` there before the first start (certificates are
then issued by it), or issues the certificates elsewhere and points each process at its
files with the three settings.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.settings import TlsSettings

SPIFFE_PREFIX = "spiffe://cb/"
CA_NAME = "cb-suite private CA"
# Certificates are renewed on start when they have less than this left.
RENEW_BEFORE = dt.timedelta(days=30)
CA_LIFETIME = dt.timedelta(days=3650)
LEAF_LIFETIME = dt.timedelta(days=365)


@dataclass(frozen=True)
class Identity:
    """The files one process presents and trusts: the CA bundle, its certificate, its key."""

    name: str
    ca_file: Path
    cert_file: Path
    key_file: Path

    def env(self) -> dict[str, str]:
        """The settings that make a child process this identity."""
        return {"CB_TLS_CA_FILE": str(self.ca_file), "CB_TLS_CERT_FILE": str(self.cert_file),
                "CB_TLS_KEY_FILE": str(self.key_file)}

    def install(self) -> None:
        """Make this process (and the children it starts without other settings) this identity."""
        os.environ.update(self.env())

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(CA bundle, certificate chain, private key) as PEM bytes."""
        return self.ca_file.read_bytes(), self.cert_file.read_bytes(), self.key_file.read_bytes()


def configured() -> Identity:
    """The identity this process's settings name (defaults: `admin` of `.run/tls/`)."""
    s = TlsSettings()
    ca, cert, key = s.files()
    name = name_of(x509.load_pem_x509_certificate(cert.read_bytes())) if cert.exists() else ""
    return Identity(name, ca, cert, key)


def name_of(cert: x509.Certificate) -> str:
    """The identity a certificate carries: its `spiffe://cb/` SAN URI, else its CN."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
            if uri.startswith(SPIFFE_PREFIX):
                return uri.removeprefix(SPIFFE_PREFIX)
    except x509.ExtensionNotFound:
        pass
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else ""


def _write_private(path: Path, data: bytes) -> None:
    """Write a key: created 0600 (never readable by others, not even for an instant), then renamed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Authority:
    """A private CA kept in one directory, issuing one certificate per identity."""

    def __init__(self, directory: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.directory = directory
        self.cert = cert
        self.key = key

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    @classmethod
    def ensure(cls, directory: Path) -> Authority:
        """The CA in `directory`, created (0700 directory, 0600 key) when there is none."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        cert_path, key_path = directory / "ca.crt", directory / "ca.key"
        if cert_path.exists() and key_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_path}: the CA key must be an EC key")
            return cls(directory, x509.load_pem_x509_certificate(cert_path.read_bytes()), key)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
        now = _now()
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + CA_LIFETIME)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                                             key_cert_sign=True, crl_sign=True, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        _write_private(key_path, _key_pem(key))
        _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return cls(directory, cert, key)

    def identity(self, name: str, dns_names: Sequence[str] = ()) -> Identity:
        """`name`'s certificate and key (issued now unless a valid one by this CA is there).

        It is both a server and a client certificate: CN `name`, SAN URI `spiffe://cb/<name>`,
        DNS `name`, `localhost` and `dns_names` (a compose or Kubernetes service name),
        IP 127.0.0.1 and ::1.
        """
        cert_path, key_path = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        if not self._still_good(cert_path, key_path):
            self._issue(name, dns_names, cert_path, key_path)
        return Identity(name, self.ca_file, cert_path, key_path)

    def _still_good(self, cert_path: Path, key_path: Path) -> bool:
        if not (cert_path.exists() and key_path.exists()):
            return False
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if cert.issuer != self.cert.subject or cert.not_valid_after_utc - _now() < RENEW_BEFORE:
            return False
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):  # signed by another CA of the same name
            return False
        return True

    def _issue(self, name: str, dns_names: Sequence[str], cert_path: Path, key_path: Path) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(SPIFFE_PREFIX + name)]
        sans += [x509.DNSName(d) for d in dict.fromkeys([name, "localhost", *dns_names])]
        sans += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + LEAF_LIFETIME)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        _write_private(key_path, _key_pem(key))
        _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def authority_of_this_process() -> Authority:
    """The CA beside this process's own `CB_TLS_CA_FILE` (the launcher's, or the test session's):
    the one that issues the certificates of the children it starts."""
    ca = configured().ca_file
    if not (ca.parent / "ca.key").exists():
        raise FileNotFoundError(f"no CA key beside {ca}: this process cannot issue certificates")
    return Authority.ensure(ca.parent)
