"""Failover: where a VM goes when its cloud says "no capacity" or "over quota" (SkyPilot's idea).

Pure decisions over the placement library, so the reconciler only calls `decide` on its
create-failure path and records what it returns (see docs/ARCHITECTURE.md, Placement: the hook).

The VM is placed again by re-solving the MCIS's own placement request with everything that is
already placed pinned (`keep`) and the failed connection's other specs, plus every spec tried
before, excluded. So the new spec is the best one that still keeps every constraint of the request
(budget, spread, share, RTT, distance, capacities) — not merely the next in a list. `region` keeps
the VM's provider, `cloud` may leave it. After `max_moves` moves of one VM, it stays Failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from services import errors
from tumblebug.placement import CandidateTable, PlacementError, RttMatrix
from tumblebug.placement.plan import plan
from tumblebug.placement.request import Keep, PlanRequest

# Clouds' own words for "not here, not now" (capacity) and "not for you" (quota). A rate limit
# (RequestLimitExceeded, Throttling) is neither: the same place works a moment later.
CAPACITY_CODES = frozenset({"InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity",
                            "InstanceLimitExceeded", "VcpuLimitExceeded", "QuotaExceeded", "ZONE_RESOURCE_POOL_EXHAUSTED"})
DEFAULT_MAX_MOVES = 3
MODES = ("none", "region", "cloud")


def is_capacity_error(err: errors.DomainError) -> bool:
    """Whether a failed create is the cloud's capacity or quota refusal (worth placing elsewhere)."""
    return err.upstream_code in CAPACITY_CODES


@dataclass(frozen=True)
class Move:
    """Place the failed VM on `spec_id` instead; `kind` says whether it left its provider."""

    from_spec: str
    spec_id: str
    kind: str  # region | cloud
    reason: str

    def note(self) -> str:
        """What the VM record keeps (`McisVm.failovers`) and the MCIS event says."""
        return f"{self.from_spec} -> {self.spec_id} ({self.kind}): {self.reason}"


@dataclass(frozen=True)
class Stay:
    """No move: why (mode none, moves used up, or no candidate keeps the constraints)."""

    reason: str


def decide(table: CandidateTable, req: PlanRequest, mode: str, group: str, failed_spec: str, reason: str,
           placed: Sequence[Keep], tried: Sequence[str] = (), max_moves: int = DEFAULT_MAX_MOVES,
           rtt: RttMatrix | None = None) -> Move | Stay:
    """Where the VM of `group` whose create on `failed_spec` failed (`reason`) goes next.

    placed: the request's other VMs as they stand (pinned). tried: specs this VM failed on before
    (their count is the moves made so far).
    """
    if mode not in MODES:
        raise PlacementError("failover", f"is one of {', '.join(MODES)}")
    if mode == "none":
        return Stay("failover is none")
    if len(tried) >= max_moves:
        return Stay(f"moved {len(tried)} times already (at most {max_moves})")
    row = table.row_of.get(failed_spec)
    if row is None:
        return Stay(f"{failed_spec} is not in the catalog")
    failed = table.candidates[row]
    pinned = {k.spec_id for k in placed}
    # The whole connection said no (capacity and quota are per region), except where VMs already run.
    gone = {sid for sid, c in zip(table.ids, table.candidates, strict=True)
            if c.connection == failed.connection and sid not in pinned}
    gone |= set(tried) | {failed_spec}
    if mode == "region":  # other providers are out too, except where the request's VMs already run
        gone |= {sid for sid, c in zip(table.ids, table.candidates, strict=True)
                 if c.provider != failed.provider and sid not in pinned}
    again = replace(req, exclude=tuple(sorted(set(req.exclude) | gone)), keep=tuple(placed))
    result = plan(table, again, rtt, explain=False)
    if not result.feasible:
        return Stay(f"no candidate keeps the request's constraints ({result.status}: {result.message})"
                    if result.message else f"no candidate keeps the request's constraints ({result.status})")
    kept = {(k.group, k.spec_id): k.count for k in placed}
    for p in result.placements:
        extra = p.count - kept.get((p.group, p.candidate.id), 0)
        if p.group == group and extra > 0:
            kind = "region" if p.candidate.provider == failed.provider else "cloud"
            if mode == "region" and kind == "cloud":
                # Only a spec where another VM of the request runs can take it off its provider here.
                return Stay(f"no spec of {failed.provider} keeps the request's constraints")
            return Move(failed_spec, p.candidate.id, kind, reason)
    return Stay("the new plan places no VM of the group anywhere new")
