"""Whether an MCIS's VMs get the monitoring agent (read by the API, the reconciler and commands)."""

from __future__ import annotations

from cbapi.tumblebug.v1 import tumblebug_pb2 as pb


def agent_wanted(mcis: pb.Mcis) -> bool:
    """Agents are installed unless the MCIS asked for none."""
    return not mcis.HasField("install_agent") or mcis.install_agent
