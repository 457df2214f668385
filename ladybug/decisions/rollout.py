"""One step of an application's convergence: rollout, replacement and the quality loop.

Given what the controller wants now (instances with their VMs and ports), what the agents report
and the VMs' health, `step` returns the next wanted set and what it means. It is called again on
every sync (level-triggered), so each call only moves things one step:

- every slot (0 … count-1) gets an instance of the desired revision; a replacement is started
  beside the old instance (surge) and the old one is drained once the new one has been healthy
  for min_healthy_time, then stopped drain_s later: capacity never dips during a rollout;
- ALL_AT_ONCE starts every replacement at once; ROLLING at most max_parallel slots in flight;
  CANARY the first `canaries` slots, keeps the old ones serving beside them, then waits for the
  analysis and for promotion (by hand or auto_promote) before going on as ROLLING;
- a new instance that the agent gave up on (crash loop, cannot start), or that is not healthy
  healthy_deadline after it was placed, fails the rollout, as do the progress deadline and a
  failing analysis; the controller then reverts to the stable revision;
- outside a rollout (the quality loop) an instance the agent gave up on, or on a VM that is not
  usable, is moved (same ID) to another VM; slots beyond the count are drained (scale in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from cbapi.dragonfly.v1 import workloads_pb2 as wpb
from ladybug.decisions.model import Event, Observed, Strategy, Verdict, Vm, Want
from ladybug.decisions.placement import choose_vm, free_port
from ladybug.ids import instance_id

NOTHING = Observed()


@dataclass(frozen=True)
class Situation:
    """Everything one step decides from."""

    app: str
    revision: int  # the revision to run
    stable: int  # the last revision that became available (0: none yet)
    count: int  # instances wanted
    strategy: Strategy
    max_per_vm: int
    base_port: int
    vms: Sequence[Vm]
    wanted: Sequence[Want]
    observed: Mapping[str, Observed]
    now: float
    rollout_start: float = 0.0
    promoted: bool = False
    analysis: Verdict = Verdict.NONE
    analysis_note: str = ""
    drain_s: float = 2.0
    # The revision failed already and there is nothing to revert to: hold still.
    hold: bool = False
    # Draining instances that still have requests in flight at the endpoint: not stopped before
    # drain_max_s, so a slow request finishes on the instance that took it.
    in_flight: frozenset[str] = frozenset()
    drain_max_s: float = 30.0


@dataclass
class Step:
    """The next wanted set, and what it means."""

    wanted: list[Want]
    events: list[Event] = field(default_factory=list)
    # PROGRESSING | AVAILABLE | DEGRADED | PAUSED | ROLLOUT_FAILED
    phase: str = "PROGRESSING"
    note: str = ""
    # Why the rollout failed ("" if it did not).
    failed: str = ""
    # Every slot runs the desired revision, healthy for min_healthy_time, nothing old left.
    complete: bool = False
    promote: bool = False
    # Instances that found no VM with room.
    no_room: int = 0
    updated: int = 0
    healthy: int = 0
    running: int = 0
    given_up: int = 0

    @property
    def busy(self) -> bool:
        """Something is on its way (a rollout or a drain): look again soon."""
        return self.phase in ("PROGRESSING", "PAUSED") or any(w.draining for w in self.wanted)


def _ready(s: Situation, w: Want) -> bool:
    """Healthy for at least min_healthy_time."""
    obs = s.observed.get(w.id, NOTHING)
    return obs.healthy and obs.healthy_since is not None and s.now - obs.healthy_since >= s.strategy.min_healthy_time


def _late(s: Situation, w: Want) -> bool:
    obs = s.observed.get(w.id, NOTHING)
    return not obs.healthy and s.now - w.placed_at > s.strategy.healthy_deadline


def canaries_ready(s: Situation) -> bool:
    """Every canary slot holds an instance of the new revision, healthy for min_healthy_time."""
    slots = range(min(s.strategy.canaries, s.count))
    mine = {w.slot: w for w in s.wanted if not w.draining and w.revision == s.revision}
    return bool(slots) and all(slot in mine and _ready(s, mine[slot]) for slot in slots)


def step(s: Situation) -> Step:
    usable = {vm.name for vm in s.vms if vm.usable}
    out = Step(wanted=[])
    kept: list[Want] = []
    # 1. Drained long enough: stop (drop from the wanted set).
    for w in s.wanted:
        if w.drain_at is not None and s.now - w.drain_at >= s.drain_s and (
                w.id not in s.in_flight or s.now - w.drain_at >= s.drain_max_s):
            out.events.append(Event("Stop", "Drained", f"stopped after {s.drain_s:g} s of draining", w.id))
        else:
            kept.append(w)
    rolling = s.revision != s.stable and not s.hold
    # 2. Scale in: slots beyond the count drain.
    for i, w in enumerate(kept):
        if not w.draining and w.slot >= s.count:
            kept[i] = w.drained(s.now)
            out.events.append(Event("ScaleIn", "Scaled", f"slot {w.slot} is beyond {s.count} instances", w.id))
    # 3. Failures of the new revision fail the rollout; elsewhere they are moved (quality loop).
    if rolling:
        for w in kept:
            if w.draining or w.revision != s.revision:
                continue
            obs = s.observed.get(w.id, NOTHING)
            if obs.given_up:
                out.failed = f"instance {w.id} failed on {w.vm}: {obs.message or wpb.WorkloadState.Name(obs.state)}"
            elif _late(s, w):
                out.failed = (f"instance {w.id} was not healthy within {s.strategy.healthy_deadline:g} s "
                              f"of its start on {w.vm}")
            if out.failed:
                break
        if not out.failed and s.rollout_start and s.now - s.rollout_start > s.strategy.progress_deadline:
            out.failed = f"the rollout did not finish within its progress deadline of {s.strategy.progress_deadline:g} s"
        if not out.failed and s.analysis is Verdict.FAIL:
            out.failed = f"the canary analysis failed: {s.analysis_note}"
        if out.failed:
            out.wanted = kept
            out.phase = "ROLLOUT_FAILED"
            out.note = out.failed
            _count(s, out)
            return out
    if not s.hold:
        for i, w in enumerate(kept):
            if w.draining or w.revision != s.revision:
                continue
            obs = s.observed.get(w.id, NOTHING)
            why = ""
            if w.vm not in usable:
                why = f"VM {w.vm} is not usable (stopped, failed or its agent is unhealthy)"
            elif obs.given_up and not rolling:
                why = f"it crash-looped on {w.vm} ({obs.restarts} restarts)"
            if not why:
                continue
            others = kept[:i] + kept[i + 1:]
            vm = choose_vm(s.vms, others, s.revision, s.max_per_vm, avoid=frozenset({w.vm}))
            if vm is None:
                out.no_room += 1
                continue
            if obs.given_up:
                out.events.append(Event("Failed", "CrashLoop", why, w.id))
            kept[i] = replace(w, vm=vm.name, port=free_port(others, vm.name, s.base_port), placed_at=s.now)
            out.events.append(Event("Move", "Unhealthy" if w.vm not in usable else "CrashLoop",
                                    f"moved from {w.vm} to {vm.name}: {why}", w.id))
    # 4. Slots: start replacements within the strategy's budget; drain what they replace.
    st = s.strategy
    canary = st.type == "CANARY" and rolling and not s.promoted
    by_slot: dict[int, list[Want]] = {}
    for w in kept:
        if not w.draining:
            by_slot.setdefault(w.slot, []).append(w)
    in_flight = sum(1 for slot in range(s.count) for w in by_slot.get(slot, [])
                    if w.revision == s.revision and not _ready(s, w))
    budget = {"ALL_AT_ONCE": s.count, "ROLLING": max(st.max_parallel, 1),
              "CANARY": max(st.max_parallel, 1)}.get(st.type, s.count) if rolling else s.count
    all_ready = True
    for slot in range(s.count):
        mine = by_slot.get(slot, [])
        new = next((w for w in mine if w.revision == s.revision), None)
        old = [w for w in mine if w.revision != s.revision]
        if new is None:
            all_ready = False
            if s.hold or (canary and slot >= st.canaries) or (rolling and not canary and in_flight >= budget):
                continue
            prefer = next((w.vm for w in old if w.vm in usable), "")
            vm = choose_vm(s.vms, kept, s.revision, s.max_per_vm, prefer=prefer)
            if vm is None:
                out.no_room += 1
                continue
            new = Want(instance_id(s.app, s.revision, slot), s.revision, slot, vm.name,
                       free_port(kept, vm.name, s.base_port), canary=canary, placed_at=s.now)
            kept.append(new)
            in_flight += 1
            out.events.append(Event("Start", "Rollout" if rolling else "Place",
                                    f"revision {s.revision} slot {slot} on {vm.name}:{new.port}", new.id))
            continue
        if not _ready(s, new):
            all_ready = False
            continue
        if canary:
            continue  # canaries serve beside the old instances until promotion
        for w in old:
            kept[kept.index(w)] = w.drained(s.now)
            out.events.append(Event("Drain", "Replaced", f"replaced by {new.id}", w.id))
    out.wanted = kept
    leftovers = any(not w.draining and w.revision != s.revision for w in kept)
    # 5. Where the rollout stands.
    if s.hold:
        out.phase, out.note = "ROLLOUT_FAILED", f"revision {s.revision} failed; nothing stable to go back to"
    elif canary and canaries_ready(replace(s, wanted=kept)):
        if s.analysis is Verdict.WAIT:
            out.note = s.analysis_note
        elif st.auto_promote:
            out.promote = True
            out.events.append(Event("Promote", "AutoPromote", "canaries healthy"
                                    + (f"; {s.analysis_note}" if s.analysis is not Verdict.NONE else "")))
            out.note = "canaries promoted"
        else:
            out.phase = "PAUSED"
            out.note = "canaries healthy, waiting for promotion" + (
                f" ({s.analysis_note})" if s.analysis is not Verdict.NONE else "")
    elif all_ready and not leftovers:
        out.complete = True
        out.phase = "AVAILABLE"
        out.note = f"{s.count}/{s.count} instances of revision {s.revision} healthy"
    else:
        out.phase = "PROGRESSING" if rolling else "DEGRADED"
        done = sum(1 for slot in range(s.count) for w in by_slot.get(slot, [])
                   if w.revision == s.revision and _ready(s, w))
        out.note = f"{done}/{s.count} instances of revision {s.revision} healthy"
        if out.no_room:
            out.note += f"; {out.no_room} found no VM with room"
    _count(s, out)
    return out


def _count(s: Situation, out: Step) -> None:
    for w in out.wanted:
        obs = s.observed.get(w.id, NOTHING)
        if w.draining:
            continue
        out.updated += w.revision == s.revision
        out.healthy += obs.healthy
        out.running += obs.state == wpb.WORKLOAD_RUNNING
        out.given_up += obs.given_up
