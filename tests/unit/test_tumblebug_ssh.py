"""SSH pieces of tumblebug that need no server: key material, login users, access points."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services import errors
from tumblebug import keyring, ssh
from tumblebug.ssh_users import check_user, default_user


def test_generated_keys_derive_their_public_half_and_never_show_the_private_one() -> None:
    pair = keyring.generate()
    assert pair.public_key.startswith("ssh-ed25519 ") and "PRIVATE KEY" in pair.private_key
    assert keyring.public_of(pair.private_key, "f") == pair.public_key
    assert pair.private_key not in repr(pair)
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    assert keyring.public_of(pem.decode(), "f").startswith("ssh-rsa ")
    assert keyring.same_key(pair.public_key + " comment", pair.public_key)
    with pytest.raises(errors.InvalidArgument):
        keyring.public_of("not a key", "resource.ssh_key.private_key")


def test_the_login_user_follows_the_image() -> None:
    assert default_user("ubuntu", "ubuntu-22.04-x86_64-1") == "ubuntu"
    assert default_user("", "debian-12-amd64") == "admin"
    assert default_user("Linux/UNIX", "amzn2-ami-hvm-2.0") == "ec2-user"
    assert default_user("rocky", "") == "rocky"
    assert default_user("windows", "") == "cb-user"
    check_user("ec2-user", "f")
    with pytest.raises(errors.InvalidArgument):
        check_user("Root; rm", "ssh_user")


def test_access_points_parse_as_host_and_port() -> None:
    assert ssh.access_point("127.0.1.4:2222") == ("127.0.1.4", 2222)
    assert ssh.access_point("[fd00::1]:22") == ("fd00::1", 22)
    for bad in ("127.0.1.4", ":22", "host:ssh"):
        with pytest.raises(ValueError):
            ssh.access_point(bad)
