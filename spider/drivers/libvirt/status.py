"""libvirt domain states on spider's one status set."""

from __future__ import annotations

import libvirt

from cbapi.common.v1 import common_pb2 as common

_BY_STATE = {
    libvirt.VIR_DOMAIN_NOSTATE: common.CREATING,
    libvirt.VIR_DOMAIN_RUNNING: common.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: common.RUNNING,  # running, waiting on I/O
    libvirt.VIR_DOMAIN_PAUSED: common.SUSPENDED,
    libvirt.VIR_DOMAIN_SHUTDOWN: common.SUSPENDING,  # the guest is shutting down
    libvirt.VIR_DOMAIN_SHUTOFF: common.SUSPENDED,  # a stopped instance; resume starts it again
    libvirt.VIR_DOMAIN_CRASHED: common.FAILED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: common.SUSPENDED,
}

# A shut-off domain that failed to start or crashed is Failed, not Suspended.
_FAILED_SHUTOFF = {libvirt.VIR_DOMAIN_SHUTOFF_CRASHED, libvirt.VIR_DOMAIN_SHUTOFF_FAILED}
_STARTING = {libvirt.VIR_DOMAIN_PAUSED_STARTING_UP}


def vm_status(state: int, reason: int) -> common.VmStatus:
    if state == libvirt.VIR_DOMAIN_SHUTOFF and reason in _FAILED_SHUTOFF:
        return common.FAILED
    if state == libvirt.VIR_DOMAIN_PAUSED and reason in _STARTING:
        return common.CREATING
    return _BY_STATE.get(state, common.FAILED)
