"""What cbctl knows about an MCIS beyond a plain resource: the create request a document becomes,
and how far each VM group is, from the MCIS record and its VMs.

An MCIS document (`cbctl apply -f`) is dynamic when its subgroups name catalog IDs:

    kind: mcis
    name: web
    namespace: demo            # optional: --namespace, the config, else the default
    spec:
      description: two clouds
      policy: continue         # continue | rollback | refine
      subgroups:
        - name: a              # optional: g1, g2, … by position
          spec_id: aws-seoul+t3.small
          image_id: ubuntu-22.04
          size: 2              # optional: 1

A subgroup that names `connection`, `spec` and `image` instead (namespace resources) makes the
document an explicit MCIS, sent as it is. Applied again to an MCIS that exists, the document adds
the groups it has that the MCIS has not, and scales those whose size differs; groups it leaves out
are left as they are (removing them is a `scale … --size 0`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from services.cli.client import ApiError

POLICIES = ("continue", "rollback", "refine")
# Statuses a VM passes through on its way to another.
MOVING = frozenset({"CREATING", "SUSPENDING", "RESUMING", "REBOOTING", "TERMINATING"})
_DYNAMIC = {"spec_id", "specId", "image_id", "imageId"}
_EXPLICIT = {"connection", "spec", "image"}


def _policy(value: Any) -> str:
    text = str(value).strip().lower().removeprefix("policy_")
    if text not in POLICIES:
        raise ApiError(f"spec.policy: {value!r} is not one of {', '.join(POLICIES)}")
    return f"POLICY_{text.upper()}"


def create_request(name: str, spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(path suffix, body) of the create an MCIS document asks for: `:dynamic` from catalog IDs,
    else the explicit create."""
    body = dict(spec)
    if "placement" in body and not body.get("subgroups"):
        # Placed by request (`cbctl plan -f` shows where): tumblebug solves it and makes the groups.
        if "policy" in body:
            body["policy"] = _policy(body["policy"])
        return ":dynamic", {**body, "name": name, "subgroups": []}
    groups = body.get("subgroups")
    if not isinstance(groups, list) or not groups or not all(isinstance(g, dict) for g in groups):
        raise ApiError("spec.subgroups: give a list of VM groups, each with spec_id, image_id and size")
    groups = [dict(g) for g in groups]
    for i, group in enumerate(groups, 1):
        group.setdefault("name", f"g{i}")
        group.setdefault("size", 1)
    body["subgroups"] = groups
    if "policy" in body:
        body["policy"] = _policy(body["policy"])
    keys = {k for g in groups for k in g}
    if keys & _DYNAMIC:
        if keys & _EXPLICIT:
            raise ApiError("spec.subgroups: use catalog IDs (spec_id, image_id) or namespace resources "
                           "(connection, spec, image), not both")
        return ":dynamic", {**body, "name": name}
    return "", {"mcis": {**body, "name": name}}


def changes(existing: dict[str, Any], suffix: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """What applying a document (its create request: `suffix`, `body`) to an existing MCIS asks:
    (path under the MCIS, request body) for each group to add or scale, in the document's order."""
    groups = body["subgroups"] if suffix else body["mcis"]["subgroups"]
    # A placed MCIS (no groups in the document) keeps the groups its plan and failovers made.
    have = {str(g.get("name")): number(g.get("size")) for g in existing.get("subgroups") or []}
    out: list[tuple[str, dict[str, Any]]] = []
    for group in groups:
        name = str(group["name"])
        if name not in have:
            out.append(("/subgroups", {"dynamic": group} if suffix else {"subgroup": group}))
        elif number(group.get("size")) != have[name]:
            out.append((f"/subgroups/{name}:scale", {"size": number(group.get("size"))}))
    return out


def number(value: Any) -> int:
    """An int64 of the JSON mapping (a string) or a plain number."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def settled(mcis: dict[str, Any], generation: int) -> bool:
    """The reconciler has acted on `generation` and nothing is in progress."""
    return number(mcis.get("observedGeneration")) >= generation and mcis.get("targetAction") in (
        "ACTION_NONE", "ACTION_UNSPECIFIED", None)


@dataclass
class Group:
    """How far one VM group is."""

    name: str
    connection: str
    done: int
    total: int
    counts: Counter[str] = field(default_factory=Counter)

    def words(self) -> str:
        """`2 Running, 1 Creating` (`leaving` for VMs on their way out of the MCIS)."""
        if not self.counts:
            return "no VMs yet"
        return ", ".join(f"{n} {s}" for s, n in self.counts.most_common())


# An agent's status on a VM record (tumblebug reads it from dragonfly's heartbeats) that says it is
# not serving yet. "None" (no agent wanted, or no monitoring) and "Unknown" (dragonfly could not be
# asked) do not hold a wait: there is nothing to wait for, or no way to know.
AGENT_COMING = frozenset({"Pending", "Unhealthy"})


def agent_coming(vm: dict[str, Any]) -> bool:
    """A running VM whose agent is not healthy yet: commands to it would fail."""
    return vm.get("status") == "RUNNING" and not vm.get("removing") and vm.get("agentStatus") in AGENT_COMING


def agents_waited(vms: list[dict[str, Any]]) -> int:
    """How many VMs in `vms` still wait for their agent."""
    return sum(1 for v in vms if agent_coming(v))


def _word(status: Any) -> str:
    text = str(status or "UNDEFINED")
    return "Undefined" if text == "VM_STATUS_UNSPECIFIED" else text.replace("_", "-").capitalize()


def groups(mcis: dict[str, Any], vms: list[dict[str, Any]], want: str, only: str = "",
           initial: dict[str, int] | None = None) -> list[Group]:
    """Each subgroup's progress toward `want` (a VM status; "" = anything settled).

    A group outside `only` (when given) is done when its VMs are settled. With `initial` (VMs per
    group when a delete began), a group is done as its VMs go or terminate."""
    out: list[Group] = []
    for sg in mcis.get("subgroups") or []:
        name = str(sg.get("name", ""))
        mine = [v for v in vms if v.get("subgroup") == name]
        # A Running VM whose agent is not up yet is not done when Running is wanted: say so.
        coming = want == "RUNNING"
        counts: Counter[str] = Counter(
            "leaving" if v.get("removing") else "Running, agent starting" if coming and agent_coming(v)
            else _word(v.get("status")) for v in mine)
        staying = [v for v in mine if not v.get("removing")]
        leaving = len(mine) - len(staying)
        if initial is not None:
            total = max(initial.get(name, 0), len(mine))
            done = total - sum(1 for v in mine if v.get("status") != "TERMINATED")
        elif only and only != name:
            total = len(staying)
            done = sum(1 for v in staying if v.get("status") not in MOVING)
        else:
            total = number(sg.get("size")) + leaving
            done = sum(1 for v in staying if v.get("status") == "FAILED"
                       or (v.get("status") == want and not (coming and agent_coming(v)) if want
                           else v.get("status") not in MOVING))
        out.append(Group(name, str(sg.get("connection", "")), done, total, counts))
    return out


def failures(vms: list[dict[str, Any]], limit: int = 3) -> str:
    """The failed VMs in words, for the one-line error: `g1-2: <the cloud's words>; …`."""
    failed = [v for v in vms if v.get("status") == "FAILED" and not v.get("removing")]
    shown = "; ".join(f"{v.get('name')}: {v.get('error') or 'failed'}" for v in failed[:limit])
    return shown + (f"; and {len(failed) - limit} more" if len(failed) > limit else "")
