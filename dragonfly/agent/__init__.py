"""cb-agent: one program for real VMs and CloudTwin VMs (metrics, on-demand reads, commands).

The agent is a library below both dragonfly and CloudTwin. Dragonfly's service never imports it
(the two share `dragonfly.protocol`); CloudTwin, which hosts agents in its guests and answers
SSH in their sandboxes, uses only the names exported here, never the agent's modules.
"""

from dragonfly.agent.commands import CommandResult, Runner

# CloudTwin starts `python -m GUESTS_MODULE` helpers and gives each its share of the connect
# rate in this variable (see `dragonfly.agent.guests`).
GUESTS_MODULE = "dragonfly.agent.guests"
CONNECT_RATE_ENV = "CB_GUESTS_CONNECT_RATE"

__all__ = ["CONNECT_RATE_ENV", "GUESTS_MODULE", "CommandResult", "Runner"]
