"""Who SSH logs in as on a VM: the default user its image makes for the key pair.

Clouds put the key pair's public key on the image's default user (cloud-init's
`default_user`), whose name depends on the distribution. Spider's drivers add no
user of their own, so tumblebug guesses from the image's OS and name, and a
subgroup (or RegisterVms) may name the user outright.
"""

from __future__ import annotations

import re

from services import errors

DEFAULT_USER = "cb-user"
# (word in the image's OS or name, its default user); the first match wins.
BY_IMAGE: tuple[tuple[str, str], ...] = (
    ("ubuntu", "ubuntu"), ("debian", "admin"), ("amzn", "ec2-user"), ("amazon", "ec2-user"),
    ("rhel", "ec2-user"), ("red hat", "ec2-user"), ("suse", "ec2-user"), ("sles", "ec2-user"),
    ("rocky", "rocky"), ("centos", "centos"), ("fedora", "fedora"), ("alma", "almalinux"),
)
# POSIX portable user names, as useradd accepts them.
_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


def default_user(*image_words: str) -> str:
    """The login user of an image described by its OS and names (any may be "")."""
    text = " ".join(image_words).lower()
    return next((user for word, user in BY_IMAGE if word in text), DEFAULT_USER)


def check_user(user: str, field: str) -> None:
    if user and not _USER.match(user):
        raise errors.InvalidArgument.field(field, f"{user!r} is not a user name (lower case, digits, _ . -)")
