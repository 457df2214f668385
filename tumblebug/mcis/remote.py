"""Remote commands on an MCIS's VMs: through a VM's agent when it has a healthy one, over SSH otherwise.

The path is chosen per VM at the moment of the command: a VM whose agent
dragonfly reports Healthy is asked through it (NATS request/reply); every other
running VM — an MCIS made without agents, VMs brought in by RegisterVms, an agent
that is down or not yet registered — is reached over SSH at the address its
cloud gave, as its SSH key's user, with the private key tumblebug holds for that
key. Every VM gets its own result saying which path was taken; one VM that
cannot be reached is an error on that VM, never a failed call. The host key a
VM shows at its first SSH login is pinned on its record; later logins must match.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import asyncssh

from cbapi.common.v1 import common_pb2 as common
from cbapi.dragonfly.v1 import dragonfly_pb2 as dpb
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.store import Store
from tumblebug import keyspace, ssh
from tumblebug.keyring import Keyring
from tumblebug.mcis import status
from tumblebug.mcis.agents import agent_wanted
from tumblebug.monitoring import Monitoring, health_word
from tumblebug.ssh_users import DEFAULT_USER

log = logging.getLogger("tumblebug.remote")

AGENT, SSH = "agent", "ssh"
HEALTHY = "Healthy"
# A VM whose agent is still coming up (none registered yet, or registered and not heard from
# since) is waited for, at most this long and at most half the command's timeout, so the
# command keeps the other half: right after an MCIS reports Running its agents need a few
# seconds to boot, connect and register, and SSH is no way in for a VM made to have an agent.
AGENT_WAIT_MAX_S = 30.0
AGENT_POLL_S = 0.25


@dataclass(frozen=True)
class SshLimits:
    """How long a login may take, and how many SSH commands run at once (per request)."""

    connect_timeout_s: float = 10.0
    parallel: int = 64


@dataclass(frozen=True)
class _Login:
    """The SSH key and user a VM is reached with (its own, else its subgroup's)."""

    key: str
    user: str


class RemoteCommands:
    """Runs one command on many VMs, each by the path it can take."""

    def __init__(self, store: Store, keyring: Keyring, monitoring: Monitoring, limits: SshLimits) -> None:
        self.store = store
        self.keyring = keyring
        self.monitoring = monitoring
        self.limits = limits

    async def run(self, ns: str, mcis: pb.Mcis, vms: list[pb.McisVm], command: str,
                  timeout_s: float) -> list[pb.VmCommandResult]:
        """One result per VM of `vms`, in their order; VMs that are not running are not asked."""
        running = [v for v in vms if v.status == common.RUNNING]
        agents = await self._agents(ns, mcis)
        coming = [v.name for v in running if agents.coming_up(v.name)]
        if coming:
            started = asyncio.get_running_loop().time()
            agents = await self._await_agents(ns, mcis, agents, coming, min(AGENT_WAIT_MAX_S, timeout_s / 2))
            timeout_s -= asyncio.get_running_loop().time() - started
        by_agent = [v.name for v in running if agents.healthy(v.name)]
        by_ssh = [v for v in running if not agents.healthy(v.name)]
        agent_results, ssh_results = await asyncio.gather(
            self._through_agents(ns, mcis.name, by_agent, command, timeout_s),
            self._over_ssh(ns, mcis, by_ssh, command, timeout_s))
        out = []
        for vm in vms:
            if vm.name in agent_results:
                out.append(_result(vm.name, AGENT, agent_results[vm.name]))
            elif vm.name in ssh_results:
                got = ssh_results[vm.name]
                why = agents.why_not(vm.name)
                out.append(_result(vm.name, SSH, f"{why}; {got}" if isinstance(got, str) and why else got))
            else:
                out.append(pb.VmCommandResult(vm=vm.name, error=f"VM is {status.word(vm.status)}"))
        return out

    async def _agents(self, ns: str, mcis: pb.Mcis) -> _Agents:
        if not agent_wanted(mcis) or not self.monitoring.enabled:
            return _Agents(expected=False, health={})
        try:
            records = await self.monitoring.agents(ns, mcis.name)
        except errors.DomainError as err:
            # Dragonfly cannot say: SSH is still a way in.
            return _Agents(expected=True, health={}, unknown=f"agent status unknown ({err.message})")
        return _Agents(expected=True, health={vm: health_word(a) for vm, a in records.items()},
                       silent={vm for vm, a in records.items() if not a.HasField("last_heartbeat_time")})

    async def _await_agents(self, ns: str, mcis: pb.Mcis, agents: _Agents, vms: list[str],
                            budget_s: float) -> _Agents:
        """Agents again, once every one of `vms` is healthy or `budget_s` has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget_s
        while loop.time() < deadline and not all(agents.healthy(vm) for vm in vms):
            await asyncio.sleep(min(AGENT_POLL_S, max(0.0, deadline - loop.time())))
            agents = await self._agents(ns, mcis)
            if agents.unknown:
                break
        return agents

    async def _through_agents(self, ns: str, mcis: str, vms: list[str], command: str,
                              timeout_s: float) -> dict[str, dpb.CommandResult | str]:
        if not vms:
            return {}
        results = await self.monitoring.run(ns, mcis, vms, command, timeout_s)
        return {vm: got.message if isinstance(got, errors.DomainError) else got for vm, got in results.items()}

    async def _over_ssh(self, ns: str, mcis: pb.Mcis, vms: list[pb.McisVm], command: str,
                        timeout_s: float) -> dict[str, dpb.CommandResult | str]:
        if not vms:
            return {}
        groups = {sg.name: sg for sg in mcis.subgroups}
        logins = {vm.name: _login(vm, groups.get(vm.subgroup)) for vm in vms}
        keys = await self._keys(ns, {lg.key for lg in logins.values() if lg.key})
        gate = asyncio.Semaphore(self.limits.parallel)

        async def one(vm: pb.McisVm) -> dpb.CommandResult | str:
            login = logins[vm.name]
            try:
                target = _target(vm, login, keys)
                async with gate:
                    done = await ssh.run(target, command, timeout_s, self.limits.connect_timeout_s)
            except ssh.SshError as err:
                return f"ssh: {err.message}"
            if not vm.ssh_host_key and done.host_key:
                await self._pin(ns, mcis.name, vm.name, done.host_key)
            return done.result

        results = await asyncio.gather(*(one(vm) for vm in vms))
        return {vm.name: r for vm, r in zip(vms, results, strict=True)}

    async def _pin(self, ns: str, mcis: str, vm: str, host_key: str) -> None:
        """Keep the host key of a VM's first login on its record (a key pinned meanwhile stays)."""
        def change(record: pb.McisVm) -> pb.McisVm | None:
            if record.ssh_host_key:
                return None
            record.ssh_host_key = host_key
            return record

        # The command has run: a record gone or busy only means the pin waits for the next login.
        with contextlib.suppress(errors.NotFound, errors.Aborted):
            await self.store.modify(keyspace.vm(ns, mcis, vm), pb.McisVm, change, f"VM {vm!r}")
            log.info("pinned the SSH host key of a VM", extra={"ns": ns, "mcis": mcis, "vm": vm})

    async def _keys(self, ns: str, names: set[str]) -> dict[str, asyncssh.SSHKey | ssh.SshError]:
        """Each SSH key's private key, read and opened once per request (or why it cannot be used)."""
        async def one(name: str) -> asyncssh.SSHKey | ssh.SshError:
            try:
                private = await self.keyring.private_key(ns, name)
            except errors.DomainError as err:
                return ssh.SshError(err.message)
            if private is None:
                return ssh.SshError(f"tumblebug holds no private key for SSH key {name!r} (it was imported "
                                    "with its public key only, or deleted)")
            try:
                return ssh.load_key(private)
            except ssh.SshError as err:
                return err

        ordered = sorted(names)
        return dict(zip(ordered, await asyncio.gather(*(one(n) for n in ordered)), strict=True))


@dataclass(frozen=True)
class _Agents:
    """What dragonfly says of an MCIS's agents: their health by VM name (if they were wanted)."""

    expected: bool
    health: dict[str, str]
    unknown: str = ""
    # Registered agents this dragonfly has heard no heartbeat from (just registered, or it restarted).
    silent: frozenset[str] | set[str] = frozenset()

    def healthy(self, vm: str) -> bool:
        return self.health.get(vm) == HEALTHY

    def coming_up(self, vm: str) -> bool:
        """An agent is expected and has not spoken yet: none registered, or registered and silent.
        (One that was heard and fell silent is down, not coming up: waiting would not help.)"""
        return self.expected and not self.unknown and (vm not in self.health or vm in self.silent)

    def why_not(self, vm: str) -> str:
        """Why a VM went over SSH though it was meant to have an agent ("" when it was not)."""
        if not self.expected:
            return ""
        return self.unknown or f"no healthy agent ({self.health.get(vm, 'none registered')})"


def _login(vm: pb.McisVm, group: pb.Subgroup | None) -> _Login:
    return _Login(key=vm.ssh_key or (group.ssh_key if group else ""),
                  user=vm.ssh_user or (group.ssh_user if group else "") or DEFAULT_USER)


def _target(vm: pb.McisVm, login: _Login, keys: dict[str, asyncssh.SSHKey | ssh.SshError]) -> ssh.SshTarget:
    if not vm.ssh_access_point:
        raise ssh.SshError("its cloud gives no SSH address for this VM")
    if not login.key:
        raise ssh.SshError("no SSH key: its subgroup names none (RegisterVms takes ssh_key)")
    key = keys[login.key]
    if isinstance(key, ssh.SshError):
        raise key
    try:
        host, port = ssh.access_point(vm.ssh_access_point)
    except ValueError as err:
        raise ssh.SshError(str(err)) from None
    return ssh.SshTarget(host, port, login.user, key, vm.ssh_host_key)


def _result(vm: str, via: str, got: dpb.CommandResult | str) -> pb.VmCommandResult:
    if isinstance(got, str):
        return pb.VmCommandResult(vm=vm, via=via, error=got)
    return pb.VmCommandResult(vm=vm, via=via, result=got)
