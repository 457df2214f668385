"""Dragonfly's etcd keys."""

from __future__ import annotations

from dragonfly.subjects import VmId

ROOT = "/cb/dragonfly"


def agent(vm: VmId) -> str:
    return f"{ROOT}/ns/{vm.ns}/agents/{vm.mcis}/{vm.vm}"


def agents(ns: str, mcis: str = "") -> str:
    return f"{ROOT}/ns/{ns}/agents/{mcis + '/' if mcis else ''}"


def mcis_config(ns: str, mcis: str) -> str:
    return f"{ROOT}/ns/{ns}/mcis/{mcis}/config"
