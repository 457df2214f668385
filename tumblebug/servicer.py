"""The gRPC face of tumblebug."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc
from google.protobuf import empty_pb2

from cbapi.dragonfly.v1 import dragonfly_pb2 as dpb
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services.names import require
from tumblebug.catalog import Catalog
from tumblebug.mcis.service import McisService
from tumblebug.namespaces import Namespaces
from tumblebug.placement_rpcs import PlacementRpcs
from tumblebug.quotas import Quotas
from tumblebug.resources import Resources

Ctx: TypeAlias = grpc.aio.ServicerContext
EMPTY = empty_pb2.Empty()
# How long `wait` may hold a request when the caller set no deadline.
WAIT_DEFAULT_S = 600.0


def _wait_budget(context: Ctx) -> float:
    remaining = context.time_remaining()
    return WAIT_DEFAULT_S if remaining is None else max(remaining - 0.5, 0.1)


class TumblebugServicer(PlacementRpcs, tumblebug_pb2_grpc.TumblebugServicer):  # placement: its RPCs
    """cbapi.tumblebug.v1.Tumblebug: namespaces, their resources, and MCIS."""

    def __init__(self, namespaces: Namespaces, resources: Resources, mcis: McisService, catalog: Catalog,
                 quotas: Quotas) -> None:
        self.ns = namespaces
        self.quotas = quotas
        self.res = resources
        self.mcis = mcis
        self.catalog = catalog

    async def _maybe_wait(self, ns: str, mcis: pb.Mcis, wait: bool, context: Ctx) -> pb.Mcis:
        if not wait:
            return mcis
        return await self.mcis.wait(ns, mcis.name, mcis.generation, _wait_budget(context))

    # --------------------------------------------------------- namespaces

    async def CreateNamespace(self, request: pb.CreateNamespaceRequest, context: Ctx) -> pb.Namespace:
        return await self.ns.create(request.namespace)

    async def GetNamespace(self, request: pb.GetNamespaceRequest, context: Ctx) -> pb.Namespace:
        return await self.ns.get(require(request.name, "name"))

    async def ListNamespaces(self, request: pb.ListNamespacesRequest, context: Ctx) -> pb.ListNamespacesResponse:
        items, token = await self.ns.list(request.page_size, request.page_token)
        return pb.ListNamespacesResponse(namespaces=items, next_page_token=token)

    async def DeleteNamespace(self, request: pb.DeleteNamespaceRequest, context: Ctx) -> empty_pb2.Empty:
        """Refused while the namespace holds resources or MCIS, unless forced."""
        await self.ns.delete(require(request.name, "name"), request.force)
        return EMPTY

    async def GetNamespaceQuota(self, request: pb.GetNamespaceQuotaRequest, context: Ctx) -> pb.NamespaceQuota:
        """The namespace's limits in force (its own, else the defaults) and what its MCIS use."""
        await self.ns.get(require(request.namespace, "namespace"))
        return await self.quotas.get(request.namespace)

    async def UpdateNamespaceQuota(self, request: pb.UpdateNamespaceQuotaRequest,
                                   context: Ctx) -> pb.NamespaceQuota:
        """Set the limits given; the others keep theirs."""
        await self.ns.get(require(request.namespace, "namespace"))
        return await self.quotas.update(request.namespace, request.quota)

    # ---------------------------------------------------------- resources

    async def CreateResource(self, request: pb.CreateResourceRequest, context: Ctx) -> pb.Resource:
        """Make a vNet, security group, SSH key, data disk (or register a spec or image) through spider."""
        return await self.res.create(require(request.namespace, "namespace"), request.collection, request.resource,
                                     request.request_id)

    async def GetResource(self, request: pb.GetResourceRequest, context: Ctx) -> pb.Resource:
        return await self.res.get(request.namespace, request.collection, require(request.name, "name"))

    async def ListResources(self, request: pb.ListResourcesRequest, context: Ctx) -> pb.ListResourcesResponse:
        items, token = await self.res.list(require(request.namespace, "namespace"), request.collection,
                                           request.page_size, request.page_token)
        return pb.ListResourcesResponse(resources=items, next_page_token=token)

    async def DeleteResource(self, request: pb.DeleteResourceRequest, context: Ctx) -> empty_pb2.Empty:
        """Delete through spider; refused while an MCIS uses it, unless forced."""
        await self.res.delete(request.namespace, request.collection, require(request.name, "name"), request.force,
                              self.mcis.user_of)
        return EMPTY

    # ------------------------------------------------------------ catalog

    async def ListCatalogSpecs(self, request: pb.ListCatalogSpecsRequest, context: Ctx) -> pb.ListCatalogSpecsResponse:
        """Specs of every connection, filtered; IDs `{connection}+{spec}`."""
        specs, token = await self.catalog.specs(request)
        return pb.ListCatalogSpecsResponse(specs=specs, next_page_token=token)

    async def ListCatalogImages(self, request: pb.ListCatalogImagesRequest,
                                context: Ctx) -> pb.ListCatalogImagesResponse:
        images, token = await self.catalog.images(request)
        return pb.ListCatalogImagesResponse(images=images, next_page_token=token)

    # --------------------------------------------------------------- MCIS

    async def CreateMcis(self, request: pb.CreateMcisRequest, context: Ctx) -> pb.Mcis:
        """Record the MCIS and return (status Creating), or with `wait`, when it settled."""
        made = await self.mcis.create(require(request.namespace, "namespace"), request.mcis, request.request_id)
        return await self._maybe_wait(request.namespace, made, request.wait, context)

    async def CreateMcisDynamic(self, request: pb.CreateMcisDynamicRequest, context: Ctx) -> pb.Mcis:
        """Create from catalog IDs; default vNet, security group and key are made once per connection."""
        if request.placement.groups:  # placement: the plan's placements become the subgroups
            del request.subgroups[:]
            request.subgroups.extend(await self._parts().placement.subgroups(request.placement))
        made = await self.mcis.create_dynamic(request)
        return await self._maybe_wait(request.namespace, made, request.wait, context)

    async def GetMcis(self, request: pb.GetMcisRequest, context: Ctx) -> pb.Mcis:
        """The MCIS as last recorded (no cloud is asked); `vms` adds its VMs."""
        return await self.mcis.get(request.namespace, require(request.name, "name"), request.vms)

    async def ListMcis(self, request: pb.ListMcisRequest, context: Ctx) -> pb.ListMcisResponse:
        items, token = await self.mcis.page(require(request.namespace, "namespace"), request.page_size,
                                            request.page_token)
        return pb.ListMcisResponse(mcis=items, next_page_token=token)

    async def DeleteMcis(self, request: pb.DeleteMcisRequest, context: Ctx) -> pb.Mcis:
        """Mark for deletion: VMs are terminated, then the records removed."""
        marked = await self.mcis.delete(request)
        return await self._maybe_wait(request.namespace, marked, request.wait, context)

    async def _act(self, request: pb.McisActionRequest, action: pb.Action, context: Ctx) -> pb.Mcis:
        require(request.name, "name")
        changed = await self.mcis.act(request, action)
        return await self._maybe_wait(request.namespace, changed, request.wait, context)

    async def SuspendMcis(self, request: pb.McisActionRequest, context: Ctx) -> pb.Mcis:
        return await self._act(request, pb.ACTION_SUSPEND, context)

    async def ResumeMcis(self, request: pb.McisActionRequest, context: Ctx) -> pb.Mcis:
        return await self._act(request, pb.ACTION_RESUME, context)

    async def RebootMcis(self, request: pb.McisActionRequest, context: Ctx) -> pb.Mcis:
        return await self._act(request, pb.ACTION_REBOOT, context)

    async def TerminateMcis(self, request: pb.McisActionRequest, context: Ctx) -> pb.Mcis:
        return await self._act(request, pb.ACTION_TERMINATE, context)

    async def RefineMcis(self, request: pb.McisActionRequest, context: Ctx) -> pb.Mcis:
        return await self._act(request, pb.ACTION_REFINE, context)

    async def ScaleSubgroup(self, request: pb.ScaleSubgroupRequest, context: Ctx) -> pb.Mcis:
        """Set a subgroup's size: new VMs are made, extra ones (failed first) removed."""
        changed = await self.mcis.scale(request)
        return await self._maybe_wait(request.namespace, changed, request.wait, context)

    async def AddSubgroup(self, request: pb.AddSubgroupRequest, context: Ctx) -> pb.Mcis:
        changed = await self.mcis.add_subgroup(request)
        return await self._maybe_wait(request.namespace, changed, request.wait, context)

    async def RegisterVms(self, request: pb.RegisterVmsRequest, context: Ctx) -> pb.Mcis:
        """Adopt VMs that already exist in a cloud as a subgroup."""
        return await self.mcis.register(request)

    async def ListMcisVms(self, request: pb.ListMcisVmsRequest, context: Ctx) -> pb.ListMcisVmsResponse:
        items, token = await self.mcis.list_vms(request.namespace, require(request.mcis, "mcis"), request.page_size,
                                                request.page_token)
        return pb.ListMcisVmsResponse(vms=items, next_page_token=token)

    async def GetMcisVm(self, request: pb.GetMcisVmRequest, context: Ctx) -> pb.McisVm:
        return await self.mcis.get_vm(request.namespace, require(request.mcis, "mcis"), require(request.name, "name"))

    async def DeleteMcisVm(self, request: pb.DeleteMcisVmRequest, context: Ctx) -> pb.Mcis:
        """Take one VM out of its MCIS (its subgroup shrinks by one); deleted in its cloud, then forgotten."""
        require(request.mcis, "mcis")
        require(request.name, "name")
        changed = await self.mcis.delete_vm(request)
        return await self._maybe_wait(request.namespace, changed, request.wait, context)

    async def AttachDataDisk(self, request: pb.VmDataDiskRequest, context: Ctx) -> pb.McisVm:
        """Attach a namespace data disk (same connection) to an MCIS VM."""
        require(request.mcis, "mcis")
        require(request.name, "name")
        return await self.mcis.attach_disk(request, attach=True)

    async def DetachDataDisk(self, request: pb.VmDataDiskRequest, context: Ctx) -> pb.McisVm:
        """Detach a data disk from an MCIS VM."""
        require(request.mcis, "mcis")
        require(request.name, "name")
        return await self.mcis.attach_disk(request, attach=False)

    async def RunMcisCommand(self, request: pb.McisCommandRequest, context: Ctx) -> pb.McisCommandResponse:
        """Run a command on the MCIS's running VMs, through each VM's healthy agent or else over SSH;
        one result per VM, saying which way it went."""
        return await self.mcis.command(request)

    async def GetMcisMetrics(self, request: pb.McisMetricsRequest, context: Ctx) -> dpb.QueryMetricsResponse:
        """Stored metrics of the MCIS's VMs, as dragonfly keeps them."""
        return await self.mcis.metrics(request)

    async def WatchMcis(self, request: pb.WatchMcisRequest, context: Ctx) -> AsyncIterator[pb.Mcis]:
        """The MCIS now, then every change; the stream ends when it is deleted."""
        async for mcis in self.mcis.watch(request.namespace, require(request.name, "name")):
            yield mcis


