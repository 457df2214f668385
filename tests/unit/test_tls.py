"""The suite's private CA: certificates with the right names, keys 0600, reused when present."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509

from services import tls


def _sans(path: Path) -> x509.SubjectAlternativeName:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_an_identity_carries_its_name_loopback_and_service_dns(tmp_path: Path) -> None:
    authority = tls.Authority.ensure(tmp_path / "tls")
    spider = authority.identity("spider", dns_names=["spider.cb.svc"])
    sans = _sans(spider.cert_file)
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://cb/spider"]
    assert set(sans.get_values_for_type(x509.DNSName)) == {"spider", "localhost", "spider.cb.svc"}
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert tls.name_of(x509.load_pem_x509_certificate(spider.cert_file.read_bytes())) == "spider"
    assert spider.env() == {"CB_TLS_CA_FILE": str(authority.ca_file), "CB_TLS_CERT_FILE": str(spider.cert_file),
                            "CB_TLS_KEY_FILE": str(spider.key_file)}


def test_keys_are_private_and_reused(tmp_path: Path) -> None:
    authority = tls.Authority.ensure(tmp_path / "tls")
    first = authority.identity("tumblebug")
    for key in (tmp_path / "tls" / "ca.key", first.key_file):
        assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "tls").stat().st_mode & 0o777 == 0o700
    cert = first.cert_file.read_bytes()
    again = tls.Authority.ensure(tmp_path / "tls")  # as on the next `make run`
    assert again.identity("tumblebug").cert_file.read_bytes() == cert
    assert again.ca_file.read_bytes() == authority.ca_file.read_bytes()


def test_a_certificate_of_another_ca_is_issued_anew(tmp_path: Path) -> None:
    ours = tls.Authority.ensure(tmp_path / "ours")
    theirs = tls.Authority.ensure(tmp_path / "theirs")
    planted = theirs.identity("gateway")
    (tmp_path / "ours" / "gateway.crt").write_bytes(planted.cert_file.read_bytes())
    (tmp_path / "ours" / "gateway.key").write_bytes(planted.key_file.read_bytes())
    issued = ours.identity("gateway")
    cert = x509.load_pem_x509_certificate(issued.cert_file.read_bytes())
    cert.verify_directly_issued_by(ours.cert)  # raises when it is still the planted one
