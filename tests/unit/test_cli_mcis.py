"""cbctl's view of an MCIS: the describe table fits 80 columns; waiting for Running waits for agents."""

from __future__ import annotations

import io

from rich.console import Console

from services.cli import mcis, output
from services.cli.kinds import find


def _vm(i: int, **fields: object) -> dict[str, object]:
    return {"name": f"frontend-{i}", "subgroup": "frontend", "status": "TERMINATING",
            "targetAction": "ACTION_TERMINATE", "connection": "twin-provider-3-ap-northeast-2-5f2c1a",
            "region": "ap-northeast-2", "publicIp": f"203.0.113.{i}", "privateIp": f"127.0.10.{i}",
            "agentStatus": "Unhealthy", "dataDisks": ["data-1", "logs"],
            "error": "InsufficientInstanceCapacity: there is not enough capacity for the requested type " * 2,
            **fields}


def test_describe_vm_table_fits_80_columns() -> None:
    child = find("mcis").children[0]
    vms = [_vm(i) for i in range(1, 13)]
    buf = io.StringIO()
    output.rows(Console(file=buf, width=80, force_terminal=False), child.columns, vms, "VMs", one_line=True)
    lines = buf.getvalue().rstrip("\n").split("\n")
    assert len(lines) == 1 + len(vms)  # a header and one line per VM: nothing wrapped
    assert all(len(line) <= 80 for line in lines)
    assert lines[0].split()[:3] == ["NAME", "STATUS", "TARGET"]
    assert all(line.startswith(f"frontend-{i} ") for i, line in enumerate(lines[1:], 1))
    assert "127.0.10.12" in lines[-1] and "Unhealthy" in lines[-1] and "terminate" in lines[-1]


def test_running_waits_for_agents() -> None:
    record = {"subgroups": [{"name": "g", "size": 2, "connection": "c"}]}
    vms = [{"name": "g-1", "subgroup": "g", "status": "RUNNING", "agentStatus": "Healthy"},
           {"name": "g-2", "subgroup": "g", "status": "RUNNING", "agentStatus": "Pending"}]
    (group,) = mcis.groups(record, vms, "RUNNING")
    assert (group.done, group.total) == (1, 2) and "agent starting" in group.words()
    assert mcis.agents_waited(vms) == 1
    vms[1]["agentStatus"] = "Healthy"
    assert mcis.groups(record, vms, "RUNNING")[0].done == 2 and mcis.agents_waited(vms) == 0
    # No agent wanted (or no monitoring): nothing to wait for.
    none = [{**v, "agentStatus": "None"} for v in vms]
    assert mcis.agents_waited(none) == 0 and mcis.groups(record, none, "RUNNING")[0].done == 2


def test_a_placement_document_creates_by_request() -> None:
    spec = {"policy": "continue", "placement": {"groups": [{"name": "web", "count": 4}], "failover": "FAILOVER_CLOUD"}}
    suffix, body = mcis.create_request("web", spec)
    assert suffix == ":dynamic" and body["name"] == "web" and body["placement"] == spec["placement"]
    assert mcis.changes({"subgroups": [{"name": "web", "size": "4"}]}, suffix, body) == []  # apply again: no change


def test_cbctl_starts_without_the_servers_settings_stack() -> None:
    """Every cbctl call is a new process: the server-side settings (pydantic-settings, the TLS set-up)
    cost half a second to import and are needed only by `cbctl status` against etcd."""
    import subprocess
    import sys

    probe = "import sys, services.cli; print(sorted(m for m in ('pydantic_settings', 'services.tls') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout
