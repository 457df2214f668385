"""An agent whose NATS node died reconnects to another node of the cluster."""

from __future__ import annotations

from urllib.parse import urlparse

from nats.aio.client import Server

from dragonfly.agent.agent import ConnectPacer


def server(port: int, reconnects: int = 0) -> Server:
    s = Server(urlparse(f"nats://127.0.0.1:{port}"))
    s.reconnects = reconnects
    return s


def test_after_a_failed_attempt_the_next_node_is_tried() -> None:
    pacer = ConnectPacer(jitter_s=0.0)
    # nats-py's pool after its one shuffle, the dead node first; it asks again after each failure
    # (the failed server's `reconnects` counted up).
    pool = [server(4222), server(4223), server(4224)]
    tried = []
    for _ in range(3):
        pick, _delay = pacer.reconnect_handler([server(s.uri.port or 0, s.reconnects) for s in pool], {})
        assert pick is not None
        tried.append(pick.uri.port)
        if pick.uri.port == 4222:
            pool[0].reconnects += 1  # the dead one refused
        else:
            break
    assert tried == [4222, 4223]


def test_no_server_no_pick() -> None:
    pick, delay = ConnectPacer(jitter_s=0.0).reconnect_handler([], {})
    assert pick is None and delay >= 0
