"""The gRPC face of CloudTwin: credentials from metadata, cloud errors as
statuses with the cloud's code in the trailing metadata."""

from __future__ import annotations

import logging
from typing import Any

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as pb
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as pb_grpc

from . import faults
from .cloud import TwinCloud

log = logging.getLogger("cloudtwin")

ACCESS_KEY = "x-twin-access-key"
SECRET_KEY = "x-twin-secret-key"

def keys_of(context: Any) -> tuple[str, str]:
    """The (access key, secret key) a call presents; UNAUTHENTICATED when one is missing."""
    meta = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
    access, secret = meta.get(ACCESS_KEY, ""), meta.get(SECRET_KEY, "")
    if not access or not secret:
        raise faults.unauthenticated(f"send both {ACCESS_KEY} and {SECRET_KEY} metadata")
    return access, secret


class CloudTwinServicer(pb_grpc.CloudTwinServicer):
    """cbapi.cloudtwin.v1.CloudTwin over a TwinCloud.

    Catalog and resource RPCs need an account's keys; ListProviders and the admin
    RPCs (knobs, spec truth, stats) need only the client certificate every caller
    presents (mutual TLS), as they are the emulator's own.
    """

    def __init__(self, cloud: TwinCloud) -> None:
        self.cloud = cloud

    def account_of(self, context: Any) -> str:
        """The calling account, once its secret is checked (see `accounts`)."""
        return self.cloud.accounts.check(*keys_of(context))

    async def ListProviders(self, request: pb.ListProvidersRequest, context: Any) -> pb.ListProvidersResponse:
        """Every provider the emulator plays, with its region names."""
        return pb.ListProvidersResponse(providers=[p.to_proto() for p in self.cloud.catalog.providers.values()])

    async def DescribeRegions(self, request: pb.DescribeRegionsRequest, context: Any
                              ) -> pb.DescribeRegionsResponse:
        """Regions of one provider, with coordinates and zones."""
        self.account_of(context)
        return self.cloud.catalog.provider(request.provider).regions_response

    async def DescribeSpecs(self, request: pb.DescribeSpecsRequest, context: Any) -> pb.DescribeSpecsResponse:
        """Instance specs of one region, with prices."""
        self.account_of(context)
        return self.cloud.catalog.region(request.provider, request.region).specs_response

    async def DescribeImages(self, request: pb.DescribeImagesRequest, context: Any
                             ) -> pb.DescribeImagesResponse:
        """Machine images of one region."""
        self.account_of(context)
        return self.cloud.catalog.region(request.provider, request.region).images_response

    async def CreateResource(self, request: pb.CreateResourceRequest, context: Any) -> pb.Resource:
        """Create a resource; recorded on arrival, answered after the create latency."""
        return await self.cloud.create(self.account_of(context), request)

    async def GetResource(self, request: pb.GetResourceRequest, context: Any) -> pb.Resource:
        """One resource of the caller's account."""
        return self.cloud.get(self.account_of(context), request)

    async def ListResources(self, request: pb.ListResourcesRequest, context: Any) -> pb.ListResourcesResponse:
        """A page of the caller's resources of one kind in one region."""
        return self.cloud.list(self.account_of(context), request)

    async def DeleteResource(self, request: pb.DeleteResourceRequest, context: Any) -> pb.Resource:
        """Start deleting a resource; VMs terminate, others go through deleting."""
        return self.cloud.delete(self.account_of(context), request)

    async def ActOnResource(self, request: pb.ActOnResourceRequest, context: Any) -> pb.Resource:
        """A verb on a VM, a disk or a security group."""
        return self.cloud.act(self.account_of(context), request)

    async def GetKnobs(self, request: pb.GetKnobsRequest, context: Any) -> pb.Knobs:
        """Admin: the knobs in force in a region (the defaults when none is named)."""
        return self.cloud.get_knobs(request.provider, request.region)

    async def SetKnobs(self, request: pb.SetKnobsRequest, context: Any) -> pb.SetKnobsResponse:
        """Admin: change the knobs a request sets, in the regions it names."""
        return pb.SetKnobsResponse(regions_changed=self.cloud.set_knobs(request.provider, request.region,
                                                                        request.knobs))

    async def GetSpecTruth(self, request: pb.GetSpecTruthRequest, context: Any) -> pb.SpecTruth:
        """Admin: the hidden true performance of a spec, for benchmark tests."""
        return self.cloud.catalog.truth(request.provider, request.region, request.spec)

    async def GetStats(self, request: pb.GetStatsRequest, context: Any) -> pb.Stats:
        """Admin: counts of providers, regions and resources."""
        return self.cloud.stats()
