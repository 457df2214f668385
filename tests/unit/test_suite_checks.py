"""The local suite's checks before and after it starts: busy ports (launcher), health (cbctl status)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from services.launcher.__main__ import FIRST_VM_ADDRESS, _busy_ports


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A program already listening where CloudTwin's first VM would serve SSH."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((FIRST_VM_ADDRESS, 0))
        s.listen()
        yield s


def test_a_busy_cloudtwin_ssh_port_is_named(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    message = _busy_ports({}, cloudtwin_ssh_port=port)
    assert f"cloudtwin SSH port {port}" in message
    # Every port setting is named, so the user knows which variable to change.
    for setting in ("CB_ETCD_ENDPOINTS", "CB_NATS_URL", "CB_CLOUDTWIN_PORT", "CB_CLOUDTWIN_SSH_PORT", "CB_SPIDER_PORT",
                    "CB_DRAGONFLY_PORT", "CB_TUMBLEBUG_PORT", "CB_GATEWAY_PORT", "CB_VICTORIAMETRICS_PORT"):
        assert setting in message
    assert _busy_ports({}, cloudtwin_ssh_port=0) == ""  # 0: CloudTwin serves no SSH
