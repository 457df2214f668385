"""The gRPC face of spider: each RPC checks its input and hands over to the connections,
the shared resource lifecycle, or the kind's own operations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc
from google.protobuf import empty_pb2

from cbapi.spider.v1 import spider_pb2 as pb
from cbapi.spider.v1 import spider_pb2_grpc
from services import errors
from services.names import require
from services.paging import page_size as clamp_page
from spider.calllog import CallLog
from spider.connections import Connections, OpenConnection
from spider.drivers import registry as drivers
from spider.drivers.base import ImageHandler, PriceHandler, RegionZoneHandler, SpecHandler
from spider.kinds import DISK, KEY_PAIR, SECURITY_GROUP, VPC
from spider.ops import disks, keypairs, register, security_groups, vms, vpcs
from spider.resources import Resources, kind_of

Ctx: TypeAlias = grpc.aio.ServicerContext
EMPTY = empty_pb2.Empty()


class SpiderServicer(spider_pb2_grpc.SpiderServicer):
    """cbapi.spider.v1.Spider: one API over every cloud driver."""

    def __init__(self, connections: Connections, resources: Resources, call_log: CallLog) -> None:
        self.connections = connections
        self.res = resources
        self.call_log = call_log

    async def _conn(self, name: str) -> OpenConnection:
        return await self.connections.open(require(name, "connection"))

    # ------------------------------------------------------------ drivers

    async def ListDrivers(self, request: pb.ListDriversRequest, context: Ctx) -> pb.ListDriversResponse:
        """Every installed driver, with its capabilities and whether it can run here."""
        return pb.ListDriversResponse(drivers=[d.describe() for _, d in sorted(drivers.drivers().items())])

    # ------------------------------------------------ credentials, regions, connections

    async def CreateCredential(self, request: pb.CreateCredentialRequest, context: Ctx) -> pb.Credential:
        """Store a credential sealed with AES-GCM; the reply names its keys, never its values."""
        return await self.connections.create_credential(request.credential)

    async def GetCredential(self, request: pb.GetCredentialRequest, context: Ctx) -> pb.Credential:
        return await self.connections.get_credential(require(request.name, "name"))

    async def ListCredentials(self, request: pb.ListCredentialsRequest, context: Ctx) -> pb.ListCredentialsResponse:
        items, token = await self.connections.list_credentials(request.page_size, request.page_token)
        return pb.ListCredentialsResponse(credentials=items, next_page_token=token)

    async def DeleteCredential(self, request: pb.DeleteCredentialRequest, context: Ctx) -> empty_pb2.Empty:
        await self.connections.delete_credential(require(request.name, "name"))
        return EMPTY

    async def CreateRegion(self, request: pb.CreateRegionRequest, context: Ctx) -> pb.Region:
        return await self.connections.create_region(request.region)

    async def GetRegion(self, request: pb.GetRegionRequest, context: Ctx) -> pb.Region:
        return await self.connections.get_region(require(request.name, "name"))

    async def ListRegions(self, request: pb.ListRegionsRequest, context: Ctx) -> pb.ListRegionsResponse:
        items, token = await self.connections.list_regions(request.page_size, request.page_token)
        return pb.ListRegionsResponse(regions=items, next_page_token=token)

    async def DeleteRegion(self, request: pb.DeleteRegionRequest, context: Ctx) -> empty_pb2.Empty:
        await self.connections.delete_region(require(request.name, "name"))
        return EMPTY

    async def CreateConnection(self, request: pb.CreateConnectionRequest, context: Ctx) -> pb.Connection:
        """Bind driver, credential and region; the driver proves it can reach the cloud first."""
        return await self.connections.create_connection(request.connection)

    async def GetConnection(self, request: pb.GetConnectionRequest, context: Ctx) -> pb.Connection:
        return await self.connections.get_connection(require(request.name, "name"))

    async def ListConnections(self, request: pb.ListConnectionsRequest, context: Ctx) -> pb.ListConnectionsResponse:
        items, token = await self.connections.list_connections(request.page_size, request.page_token)
        return pb.ListConnectionsResponse(connections=items, next_page_token=token)

    async def DeleteConnection(self, request: pb.DeleteConnectionRequest, context: Ctx) -> empty_pb2.Empty:
        await self.connections.delete_connection(require(request.name, "name"), request.force)
        return EMPTY

    # ------------------------------------------------------------ catalog

    async def ListImages(self, request: pb.ListImagesRequest, context: Ctx) -> pb.ListImagesResponse:
        """Images of the connection's region, filtered and paged (clouds have thousands)."""
        conn = await self._conn(request.connection)
        images: list[pb.Image] = await conn.handler(ImageHandler).list_images()
        if request.filter:
            f = request.filter.lower()
            images = [i for i in images if f in i.name.lower() or f in i.os.lower() or f in i.display_name.lower()]
        page, token = _paginate(images, request.page_size, request.page_token)
        return pb.ListImagesResponse(images=page, next_page_token=token)

    async def GetImage(self, request: pb.GetImageRequest, context: Ctx) -> pb.Image:
        conn = await self._conn(request.connection)
        return await conn.handler(ImageHandler).get_image(require(request.name, "name"))

    async def ListSpecs(self, request: pb.ListSpecsRequest, context: Ctx) -> pb.ListSpecsResponse:
        conn = await self._conn(request.connection)
        specs = await conn.handler(SpecHandler).list_specs()
        page, token = _paginate(specs, request.page_size, request.page_token)
        return pb.ListSpecsResponse(specs=page, next_page_token=token)

    async def GetSpec(self, request: pb.GetSpecRequest, context: Ctx) -> pb.Spec:
        conn = await self._conn(request.connection)
        return await conn.handler(SpecHandler).get_spec(require(request.name, "name"))

    async def ListRegionZones(self, request: pb.ListRegionZonesRequest, context: Ctx) -> pb.ListRegionZonesResponse:
        conn = await self._conn(request.connection)
        zones = await conn.handler(RegionZoneHandler).list_region_zones()
        return pb.ListRegionZonesResponse(region_zones=zones)

    async def ListPrices(self, request: pb.ListPricesRequest, context: Ctx) -> pb.ListPricesResponse:
        conn = await self._conn(request.connection)
        prices = await conn.handler(PriceHandler).list_prices()
        page, token = _paginate(prices, request.page_size, request.page_token)
        return pb.ListPricesResponse(prices=page, next_page_token=token)

    # --------------------------------------------------------------- VPCs

    async def CreateVpc(self, request: pb.CreateVpcRequest, context: Ctx) -> pb.Vpc:
        """Create a VPC with the subnets it lists."""
        return await vpcs.create(self.res, await self._conn(request.connection), request)

    async def GetVpc(self, request: pb.GetResourceRequest, context: Ctx) -> pb.Vpc:
        return (await self.res.get(require(request.connection, "connection"), VPC, request.name)).value

    async def ListVpcs(self, request: pb.ListResourcesRequest, context: Ctx) -> pb.ListVpcsResponse:
        items, token = await self.res.page(require(request.connection, "connection"), VPC, request.page_size,
                                           request.page_token)
        return pb.ListVpcsResponse(vpcs=items, next_page_token=token)

    async def DeleteVpc(self, request: pb.DeleteResourceRequest, context: Ctx) -> empty_pb2.Empty:
        await self.res.delete(await self._conn(request.connection), VPC, request.name, request.force)
        return EMPTY

    async def AddSubnet(self, request: pb.AddSubnetRequest, context: Ctx) -> pb.Vpc:
        return await vpcs.add_subnet(self.res, await self._conn(request.connection), request)

    async def RemoveSubnet(self, request: pb.RemoveSubnetRequest, context: Ctx) -> pb.Vpc:
        return await vpcs.remove_subnet(self.res, await self._conn(request.connection), request)

    # ---------------------------------------------------- security groups

    async def CreateSecurityGroup(self, request: pb.CreateSecurityGroupRequest, context: Ctx) -> pb.SecurityGroup:
        return await security_groups.create(self.res, await self._conn(request.connection), request)

    async def GetSecurityGroup(self, request: pb.GetResourceRequest, context: Ctx) -> pb.SecurityGroup:
        return (await self.res.get(require(request.connection, "connection"), SECURITY_GROUP, request.name)).value

    async def ListSecurityGroups(self, request: pb.ListResourcesRequest, context: Ctx) -> pb.ListSecurityGroupsResponse:
        items, token = await self.res.page(require(request.connection, "connection"), SECURITY_GROUP,
                                           request.page_size, request.page_token)
        return pb.ListSecurityGroupsResponse(security_groups=items, next_page_token=token)

    async def DeleteSecurityGroup(self, request: pb.DeleteResourceRequest, context: Ctx) -> empty_pb2.Empty:
        await self.res.delete(await self._conn(request.connection), SECURITY_GROUP, request.name, request.force)
        return EMPTY

    async def AddRules(self, request: pb.RulesRequest, context: Ctx) -> pb.SecurityGroup:
        return await security_groups.change_rules(self.res, await self._conn(request.connection), request, add=True)

    async def RemoveRules(self, request: pb.RulesRequest, context: Ctx) -> pb.SecurityGroup:
        return await security_groups.change_rules(self.res, await self._conn(request.connection), request, add=False)

    # ---------------------------------------------------------- key pairs

    async def CreateKeyPair(self, request: pb.CreateKeyPairRequest, context: Ctx) -> pb.KeyPair:
        """Import a public key, or generate a pair and return its private key this once."""
        return await keypairs.create(self.res, await self._conn(request.connection), request)

    async def GetKeyPair(self, request: pb.GetResourceRequest, context: Ctx) -> pb.KeyPair:
        return (await self.res.get(require(request.connection, "connection"), KEY_PAIR, request.name)).value

    async def ListKeyPairs(self, request: pb.ListResourcesRequest, context: Ctx) -> pb.ListKeyPairsResponse:
        items, token = await self.res.page(require(request.connection, "connection"), KEY_PAIR, request.page_size,
                                           request.page_token)
        return pb.ListKeyPairsResponse(key_pairs=items, next_page_token=token)

    async def DeleteKeyPair(self, request: pb.DeleteResourceRequest, context: Ctx) -> empty_pb2.Empty:
        await self.res.delete(await self._conn(request.connection), KEY_PAIR, request.name, request.force)
        return EMPTY

    # ---------------------------------------------------------------- VMs

    async def CreateVm(self, request: pb.CreateVmRequest, context: Ctx) -> pb.Vm:
        """Start a VM; returns when the cloud accepted it. Same request_id → same VM."""
        return await vms.create(self.res, await self._conn(request.connection), request)

    async def GetVm(self, request: pb.GetResourceRequest, context: Ctx) -> pb.Vm:
        return await vms.get(self.res, await self._conn(request.connection), require(request.name, "name"))

    async def ListVms(self, request: pb.ListResourcesRequest, context: Ctx) -> pb.ListVmsResponse:
        items, token = await vms.list_vms(self.res, await self._conn(request.connection), request.page_size,
                                          request.page_token)
        return pb.ListVmsResponse(vms=items, next_page_token=token)

    async def DeleteVm(self, request: pb.DeleteResourceRequest, context: Ctx) -> pb.VmStatusResponse:
        """Terminate the VM in the cloud and drop its record."""
        return await vms.delete(self.res, await self._conn(request.connection), require(request.name, "name"),
                                request.force)

    async def GetVmStatus(self, request: pb.GetResourceRequest, context: Ctx) -> pb.VmStatusResponse:
        """The VM's status as its cloud reports it now."""
        return await vms.status(self.res, await self._conn(request.connection), require(request.name, "name"))

    async def SuspendVm(self, request: pb.VmActionRequest, context: Ctx) -> pb.VmStatusResponse:
        return await vms.act(self.res, await self._conn(request.connection), require(request.name, "name"), "suspend")

    async def ResumeVm(self, request: pb.VmActionRequest, context: Ctx) -> pb.VmStatusResponse:
        return await vms.act(self.res, await self._conn(request.connection), require(request.name, "name"), "resume")

    async def RebootVm(self, request: pb.VmActionRequest, context: Ctx) -> pb.VmStatusResponse:
        return await vms.act(self.res, await self._conn(request.connection), require(request.name, "name"), "reboot")

    async def WatchVm(self, request: pb.WatchVmRequest, context: Ctx) -> AsyncIterator[pb.Vm]:
        """Stream the VM whenever its status changes; ends when the VM is gone."""
        conn = await self._conn(request.connection)
        interval = max(request.interval_seconds or 1.0, 0.2)
        async for vm in vms.watch(self.res, conn, require(request.name, "name"), interval):
            yield vm

    # -------------------------------------------------------------- disks

    async def CreateDisk(self, request: pb.CreateDiskRequest, context: Ctx) -> pb.Disk:
        return await disks.create(self.res, await self._conn(request.connection), request)

    async def GetDisk(self, request: pb.GetResourceRequest, context: Ctx) -> pb.Disk:
        return await disks.get(self.res, await self._conn(request.connection), require(request.name, "name"))

    async def ListDisks(self, request: pb.ListResourcesRequest, context: Ctx) -> pb.ListDisksResponse:
        items, token = await self.res.page(require(request.connection, "connection"), DISK, request.page_size,
                                           request.page_token)
        return pb.ListDisksResponse(disks=items, next_page_token=token)

    async def DeleteDisk(self, request: pb.DeleteResourceRequest, context: Ctx) -> empty_pb2.Empty:
        await self.res.delete(await self._conn(request.connection), DISK, require(request.name, "name"), request.force)
        return EMPTY

    async def AttachDisk(self, request: pb.AttachDiskRequest, context: Ctx) -> pb.Disk:
        return await disks.attach(self.res, await self._conn(request.connection), request)

    async def DetachDisk(self, request: pb.DetachDiskRequest, context: Ctx) -> pb.Disk:
        return await disks.detach(self.res, await self._conn(request.connection), request)

    async def ResizeDisk(self, request: pb.ResizeDiskRequest, context: Ctx) -> pb.Disk:
        return await disks.resize(self.res, await self._conn(request.connection), request)

    # -------------------------------------------------- register, reconcile

    async def RegisterResource(self, request: pb.RegisterResourceRequest, context: Ctx) -> pb.RegisterResourceResponse:
        """Adopt a resource that already exists in the cloud under a spider name."""
        kind = kind_of(request.collection)
        rec = await self.res.register(await self._conn(request.connection), kind, request.name, request.csp_id)
        return pb.RegisterResourceResponse(collection=kind.collection, iid=rec.iid)

    async def UnregisterResource(self, request: pb.UnregisterResourceRequest,
                                 context: Ctx) -> pb.UnregisterResourceResponse:
        """Forget one resource in spider and leave it in the cloud (the reverse of register)."""
        kind = kind_of(request.collection)
        rec = await register.unregister(self.res, require(request.connection, "connection"), kind,
                                        require(request.name, "name"))
        return pb.UnregisterResourceResponse(collection=kind.collection, iid=rec.iid)

    async def ReconcileResources(self, request: pb.ReconcileResourcesRequest,
                                 context: Ctx) -> pb.ReconcileResourcesResponse:
        """Records vs the cloud: mapped, only in spider, only in the cloud."""
        kind = kind_of(request.collection)
        return await self.res.reconcile(await self._conn(request.connection), kind)

    # ----------------------------------------------------------- call log

    async def ListCallLog(self, request: pb.ListCallLogRequest, context: Ctx) -> pb.ListCallLogResponse:
        """Calls made to clouds, oldest first, filtered by connection and time."""
        entries = self.call_log.entries(request.connection, request.since if request.HasField("since") else None)
        page, token = _paginate(entries, request.page_size, request.page_token)
        return pb.ListCallLogResponse(entries=page, next_page_token=token)

    async def GetCallStats(self, request: pb.GetCallStatsRequest, context: Ctx) -> pb.GetCallStatsResponse:
        """Calls, errors and latency percentiles per connection and cloud API."""
        return pb.GetCallStatsResponse(stats=self.call_log.stats(request.connection))


def _paginate(items: list[Any], page_size: int, token: str) -> tuple[list[Any], str]:
    """Offset pages over a list that the cloud returned whole."""
    size = clamp_page(page_size)
    try:
        start = int(token) if token else 0
    except ValueError as err:
        raise errors.InvalidArgument.field("page_token", "is not a token this server issued") from err
    end = start + size
    return items[start:end], (str(end) if end < len(items) else "")
