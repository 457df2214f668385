"""The placement RPCs of cbapi.tumblebug.v1.Tumblebug: recommendation, plan, benchmarks, campaigns.

A mixin of `TumblebugServicer`, so these handlers live apart from the MCIS ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import grpc

from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.names import require
from tumblebug.benchmarks import Benchmarker, BenchmarkStore
from tumblebug.campaigns import Campaigns
from tumblebug.placement_service import PlacementService

Ctx: TypeAlias = grpc.aio.ServicerContext


@dataclass
class PlacementParts:
    """What the placement RPCs use."""

    placement: PlacementService
    results: BenchmarkStore
    benchmarker: Benchmarker
    campaigns: Campaigns


class PlacementRpcs:
    """RecommendSpec, PlanMcis, BenchmarkMcis, ListBenchmarks, Start/Get/List/CancelBenchmarkCampaign."""

    parts: PlacementParts | None = None

    def _parts(self) -> PlacementParts:
        if self.parts is None:
            raise errors.FailedPrecondition("placement is not set up in this server")
        return self.parts

    async def RecommendSpec(self, request: pb.RecommendSpecRequest, context: Ctx) -> pb.RecommendSpecResponse:
        """Catalog specs ranked by the request's weighers; figures without a benchmark are flagged."""
        return await self._parts().placement.recommend(request)

    async def PlanMcis(self, request: pb.PlanMcisRequest, context: Ctx) -> pb.PlacementPlan:
        """Where each VM of a placement request would go and what it would cost (nothing is made)."""
        require(request.namespace, "namespace")
        return await self._parts().placement.plan(request.placement)

    async def BenchmarkMcis(self, request: pb.BenchmarkMcisRequest, context: Ctx) -> pb.BenchmarkMcisResponse:
        """Benchmark every running VM of the MCIS and the RTT between its regions; results are stored."""
        require(request.namespace, "namespace")
        require(request.name, "name")
        return await self._parts().benchmarker.run(request)

    async def ListBenchmarks(self, request: pb.ListBenchmarksRequest, context: Ctx) -> pb.ListBenchmarksResponse:
        """Stored results per spec and metric (filtered), and the RTT matrix."""
        return await self._parts().results.list(request)

    async def StartBenchmarkCampaign(self, request: pb.StartBenchmarkCampaignRequest,
                                     context: Ctx) -> pb.BenchmarkCampaign:
        """Record a campaign over the specs without fresh results; the leader runs it."""
        return await self._parts().campaigns.start(request.campaign)

    async def GetBenchmarkCampaign(self, request: pb.GetBenchmarkCampaignRequest,
                                   context: Ctx) -> pb.BenchmarkCampaign:
        """A campaign's progress: every step's state, VMs made and money reserved."""
        return await self._parts().campaigns.get(require(request.name, "name"))

    async def ListBenchmarkCampaigns(self, request: pb.ListBenchmarkCampaignsRequest,
                                     context: Ctx) -> pb.ListBenchmarkCampaignsResponse:
        """Every campaign, by name, a page at a time."""
        items, token = await self._parts().campaigns.list(request.page_size, request.page_token)
        return pb.ListBenchmarkCampaignsResponse(campaigns=items, next_page_token=token)

    async def CancelBenchmarkCampaign(self, request: pb.CancelBenchmarkCampaignRequest,
                                      context: Ctx) -> pb.BenchmarkCampaign:
        """Skip what is pending, delete what was made; FAILED_PRECONDITION once it has ended."""
        return await self._parts().campaigns.cancel(require(request.name, "name"))
