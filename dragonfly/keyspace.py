"""Dragonfly's etcd keys."""

from __future__ import annotations

from dragonfly.protocol.subjects import VmId

ROOT = "/cb/dragonfly"


def agent(vm: VmId) -> str:
    return f"{ROOT}/ns/{vm.ns}/agents/{vm.mcis}/{vm.vm}"


def agents(ns: str, mcis: str = "") -> str:
    return f"{ROOT}/ns/{ns}/agents/{mcis + '/' if mcis else ''}"


def workloads(vm: VmId) -> str:
    """The latest workload statuses its agent reported (one VmWorkloads)."""
    return f"{ROOT}/ns/{vm.ns}/workloads/{vm.mcis}/{vm.vm}"


def workloads_of(ns: str, mcis: str) -> str:
    return f"{ROOT}/ns/{ns}/workloads/{mcis}/"


def mcis_config(ns: str, mcis: str) -> str:
    return f"{ROOT}/ns/{ns}/mcis/{mcis}/config"


# Credentials issued to agents: `{ns}/{mcis}/{vm}/{user}` (one watch follows them all).
CREDENTIALS = f"{ROOT}/credentials/"


def credentials(vm: VmId) -> str:
    return f"{CREDENTIALS}{vm.ns}/{vm.mcis}/{vm.vm}/"


def credential(vm: VmId, user: str) -> str:
    return f"{credentials(vm)}{user}"


ALERTS = f"{ROOT}/alerts"


def alert_rules(ns: str = "") -> str:
    return f"{ALERTS}/rules/{ns + '/' if ns else ''}"


def alert_rule(ns: str, name: str) -> str:
    return f"{ALERTS}/rules/{ns}/{name}"


def alert_firing(ns: str = "", rule: str = "", vm_key: str = "") -> str:
    """What fires now: one key per (rule, VM), holding the firing event; prefixes without the tail."""
    parts = [p for p in (ns, rule, vm_key) if p]
    tail = "/".join(parts)
    return f"{ALERTS}/firing/{tail}" if vm_key else f"{ALERTS}/firing/{tail + '/' if tail else ''}"


def alert_events(ns: str) -> str:
    return f"{ALERTS}/events/{ns}/"
