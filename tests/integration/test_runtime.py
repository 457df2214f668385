"""The shared server runtime as a service runs it: request IDs cross services,
errors carry google.rpc details, /metrics is served, SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from pathlib import Path

import grpc

from cbapi.spider.v1 import spider_pb2 as pb
from cbapi.spider.v1 import spider_pb2_grpc
from services.processes import free_port
from services.rpc.client import channel
from tests import servers
from tests.helpers import expect_error


async def test_request_id_metrics_and_graceful_stop(tmp_path: Path, etcd_process: servers.Server,
                                                    cloudtwin_process: servers.Server) -> None:
    metrics_port = free_port()
    spider = await servers.start_spider(tmp_path, etcd_process, CB_SPIDER_METRICS_PORT=str(metrics_port))
    rid = f"rid-{uuid.uuid4().hex}"
    async with channel(spider.address) as ch:
        stub = spider_pb2_grpc.SpiderStub(ch)
        provider, region = (await servers.twin_regions(cloudtwin_process))[0]
        conn = await servers.make_connection(stub, cloudtwin_process, provider, region)
        await stub.ListSpecs(pb.ListSpecsRequest(connection=conn.name), metadata=(("x-request-id", rid),))
        await expect_error(grpc.StatusCode.INVALID_ARGUMENT, stub.CreateRegion(pb.CreateRegionRequest(
            region=pb.Region(name="Nope", driver="mock", region="x"))), "region.name")
    # The ID is in spider's own log line and in CloudTwin's, which spider called.
    assert rid in spider.proc.log_path.read_text()
    assert rid in cloudtwin_process.proc.log_path.read_text()
    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    text = await asyncio.to_thread(scrape)
    assert 'cb_rpc_total{code="OK",method="/cbapi.spider.v1.Spider/ListSpecs"}' in text
    assert 'code="INVALID_ARGUMENT"' in text
    spider.proc.signal(15)
    assert spider.proc.popen is not None and spider.proc.popen.wait(15) == 0
    assert '"msg": "stopped"' in spider.proc.log_path.read_text()
