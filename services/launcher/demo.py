"""The demo clouds: CloudTwin providers and regions registered as spider connections, a
tumblebug namespace to start in, and an application document to deploy on the demo MCIS."""

from __future__ import annotations

from pathlib import Path

import grpc

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as tw_grpc
from cbapi.spider.v1 import spider_pb2 as pb
from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as tb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services.rpc.client import channel

NAMESPACE = "demo"


async def _create(call: object, request: object) -> None:
    try:
        await call(request)  # type: ignore[operator]
    except grpc.aio.AioRpcError as err:
        if err.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise


async def register(spider_addr: str, twin_addr: str, providers: int = 3, regions: int = 3) -> list[str]:
    """Register `providers` × up to `regions` twin regions as connections; returns their names.

    Safe to run again: what exists already is left as it is."""
    async with channel(twin_addr) as ch:
        catalog = await tw_grpc.CloudTwinStub(ch).ListProviders(tw.ListProvidersRequest())
    names: list[str] = []
    async with channel(spider_addr) as ch:
        spider = spider_pb2_grpc.SpiderStub(ch)
        for provider in list(catalog.providers)[:providers]:
            cred = f"{provider.name}-demo"
            await _create(spider.CreateCredential, pb.CreateCredentialRequest(credential=pb.Credential(
                name=cred, driver="mock", values={"access_key": "demo", "secret_key": "demo-secret"})))
            for region in list(provider.regions)[:regions]:
                name = f"{provider.name}-{region}"
                await _create(spider.CreateRegion, pb.CreateRegionRequest(region=pb.Region(
                    name=name, driver="mock", region=region,
                    settings={"endpoint": twin_addr, "provider": provider.name})))
                await _create(spider.CreateConnection, pb.CreateConnectionRequest(connection=pb.Connection(
                    name=name, driver="mock", credential=cred, region=name)))
                names.append(name)
    return names


async def namespace(tumblebug_addr: str, name: str = NAMESPACE) -> str:
    """The demo namespace, made if missing (safe to run again)."""
    async with channel(tumblebug_addr) as ch:
        await _create(tumblebug_pb2_grpc.TumblebugStub(ch).CreateNamespace, tb.CreateNamespaceRequest(
            namespace=tb.Namespace(name=name, description="Made by the local suite to start in")))
    return name


async def mcis_example(tumblebug_addr: str, connections: list[str], groups: int = 2) -> str:
    """A `cbctl create mcis` line over the cheapest x86_64 spec of `groups` demo connections on
    different providers, with real catalog IDs; "" when the catalog has none."""
    picks: list[tuple[tb.CatalogSpec, tb.CatalogImage]] = []
    async with channel(tumblebug_addr) as ch:
        stub = tumblebug_pb2_grpc.TumblebugStub(ch)
        providers: set[str] = set()
        for conn in connections:
            specs = (await stub.ListCatalogSpecs(tb.ListCatalogSpecsRequest(
                connection=conn, architecture="x86_64", page_size=1000))).specs
            images = (await stub.ListCatalogImages(tb.ListCatalogImagesRequest(
                connection=conn, architecture="x86_64", page_size=1))).images
            if not specs or not images or specs[0].provider in providers:
                continue
            providers.add(specs[0].provider)
            picks.append((min(specs, key=lambda s: s.price_per_hour), images[0]))
            if len(picks) == groups:
                break
    if not picks:
        return ""
    subgroups = ", ".join(f"{{name: g{i + 1}, specId: {spec.id}, imageId: {image.id}, size: 2}}"
                          for i, (spec, image) in enumerate(picks))
    return f"cbctl create mcis hello -n {NAMESPACE} --set 'subgroups=[{subgroups}]' --wait"


# Python's own web server: nothing to upload, and it answers `/` (its health check) on the VM's IP,
# with a page of its own rather than a listing of the instance's working directory.
APP_DOCUMENT = f"""\
kind: app
name: hello
namespace: {NAMESPACE}
spec:
  mcis: hello
  artifact:
    command: >-
      mkdir -p www && echo "hello from $HOST:$PORT" > www/index.html &&
      exec python3 -m http.server "$PORT" --bind "$HOST" --directory www
  ports: [{{name: http, port: 8080}}]
  instances: 4
  maxPerVm: 2
  healthCheck: {{httpPath: /, intervalS: 1}}
  update: {{type: ROLLING, maxParallel: 2, minHealthyTimeS: 2}}
"""


def app_example(run_dir: Path) -> str:
    """A `cbctl apply` line for an app on the `hello` MCIS of the MCIS example (its document is
    written to the run directory)."""
    path = run_dir / "hello-app.yaml"
    path.write_text(APP_DOCUMENT)
    return f"cbctl apply -f {path} --wait"
