"""Several gateway workers on one port (CB_GATEWAY_WORKERS): each serves, and they stop together."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import psutil

from services import processes as procs
from tests import servers
from tests.support.gateway import KEY, start_gateway


def _listening(pid: int, port: int) -> bool:
    try:
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                   for c in psutil.Process(pid).net_connections("tcp"))
    except psutil.NoSuchProcess:
        return False


async def test_workers_share_the_port_and_stop_together(tmp_path: Path, etcd_process: servers.Server,
                                                        spider_process: servers.Server) -> None:
    gw = await start_gateway(tmp_path, {"spider": spider_process.address}, CB_GATEWAY_WORKERS="2",
                             CB_ETCD_ENDPOINTS=etcd_process.address)
    assert gw.proc.popen is not None
    port = int(gw.url.rsplit(":", 1)[1])
    supervisor = psutil.Process(gw.proc.popen.pid)
    try:
        workers = supervisor.children()
        assert len(workers) == 2
        # The supervisor binds nothing; each worker listens on the port itself once its routes are loaded.
        assert not _listening(supervisor.pid, port)

        async def all_listen() -> bool:
            return all(_listening(w.pid, port) for w in workers)

        await procs.wait_until(all_listen, "both workers listening", gw.proc, timeout=60)
        # New connections each time, so the kernel spreads them over both workers; every one is served.
        for _ in range(10):
            async with httpx.AsyncClient(base_url=gw.url, timeout=30,
                                         headers={"Authorization": f"Bearer {KEY}"}) as client:
                response = await client.get("/spider/v1/drivers")
                assert response.status_code == 200 and any(d["name"] == "mock" for d in response.json()["drivers"])
    finally:
        supervisor.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs([supervisor, *workers], timeout=30)
        for proc in alive:
            proc.kill()
    assert not alive, f"still running after SIGTERM: {[p.pid for p in alive]}"
    assert gw.proc.popen.wait(5) == 0
