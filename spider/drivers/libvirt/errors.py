"""libvirt errors classified for spider: the domain error, the retry flag, the cloud code.

The cloud code is libvirt's own error name (`VIR_ERR_NO_DOMAIN`), so the call log and
the gRPC message keep libvirt's words. A broken connection carries no cloud code on
purpose: spider treats an error without one as "no answer came back", looks for what
the call may have made, and the client reconnects on the next attempt.
"""

from __future__ import annotations

import libvirt

from services import errors
from spider.drivers.base import CloudError

# Error levels share the VIR_ERR_ prefix but are not error codes.
_LEVELS = {"VIR_ERR_NONE", "VIR_ERR_WARNING", "VIR_ERR_ERROR"}
NAMES: dict[int, str] = {
    getattr(libvirt, n): n for n in dir(libvirt) if n.startswith("VIR_ERR_") and n not in _LEVELS
}

BY_NAME: dict[str, type[errors.DomainError]] = {
    **dict.fromkeys(("VIR_ERR_NO_DOMAIN", "VIR_ERR_NO_NETWORK", "VIR_ERR_NO_STORAGE_POOL", "VIR_ERR_NO_STORAGE_VOL",
                     "VIR_ERR_NO_NWFILTER", "VIR_ERR_NO_SECRET", "VIR_ERR_NO_DOMAIN_METADATA",
                     "VIR_ERR_NO_DOMAIN_SNAPSHOT", "VIR_ERR_NO_INTERFACE", "VIR_ERR_NO_NODE_DEVICE"), errors.NotFound),
    **dict.fromkeys(("VIR_ERR_DOM_EXIST", "VIR_ERR_STORAGE_VOL_EXIST", "VIR_ERR_NETWORK_EXIST"), errors.AlreadyExists),
    **dict.fromkeys(("VIR_ERR_OPERATION_INVALID", "VIR_ERR_OPERATION_FAILED", "VIR_ERR_NO_SUPPORT",
                     "VIR_ERR_OPERATION_UNSUPPORTED", "VIR_ERR_RESOURCE_BUSY", "VIR_ERR_STORAGE_POOL_BUILT",
                     "VIR_ERR_MIGRATE_UNSAFE", "VIR_ERR_BLOCK_COPY_ACTIVE"), errors.FailedPrecondition),
    **dict.fromkeys(("VIR_ERR_INVALID_ARG", "VIR_ERR_XML_ERROR", "VIR_ERR_XML_DETAIL", "VIR_ERR_XML_INVALID_SCHEMA",
                     "VIR_ERR_CONFIG_UNSUPPORTED", "VIR_ERR_INVALID_MAC", "VIR_ERR_NO_NAME", "VIR_ERR_NO_SOURCE",
                     "VIR_ERR_NO_TARGET", "VIR_ERR_NO_OS", "VIR_ERR_NO_DEVICE", "VIR_ERR_INVALID_STORAGE_VOL",
                     "VIR_ERR_INVALID_NETWORK", "VIR_ERR_INVALID_NWFILTER", "VIR_ERR_BUILD_FIREWALL"),
                    errors.InvalidArgument),
    **dict.fromkeys(("VIR_ERR_OPERATION_DENIED", "VIR_ERR_AUTH_FAILED", "VIR_ERR_AUTH_CANCELLED",
                     "VIR_ERR_AUTH_UNAVAILABLE", "VIR_ERR_ACCESS_DENIED"), errors.PermissionDenied),
    "VIR_ERR_OPERATION_TIMEOUT": errors.DeadlineExceeded,
    "VIR_ERR_AGENT_UNRESPONSIVE": errors.Unavailable,
}

# The connection itself failed: no answer, reconnect and try again.
TRANSPORT = {"VIR_ERR_SYSTEM_ERROR", "VIR_ERR_RPC", "VIR_ERR_NO_CONNECT", "VIR_ERR_INVALID_CONN",
             "VIR_ERR_UNKNOWN_HOST"}
# The host answered but is busy (a state-change lock, an agent): worth another try.
BUSY = {"VIR_ERR_OPERATION_TIMEOUT", "VIR_ERR_AGENT_UNRESPONSIVE"}


def code_name(err: libvirt.libvirtError) -> str:
    code = err.get_error_code()
    return NAMES.get(code, f"VIR_ERR_{code}")


def classify(err: libvirt.libvirtError) -> CloudError:
    """A libvirt error as a CloudError with the right domain error and retry flag."""
    name = code_name(err)
    message = err.get_error_message() or str(err)
    if name in TRANSPORT:
        return CloudError(errors.Unavailable, f"libvirt connection failed ({name}): {message}", "", retryable=True,
                          transport=True)
    return CloudError(BY_NAME.get(name, errors.Internal), message, name, retryable=name in BUSY)


def is_transport(err: libvirt.libvirtError) -> bool:
    return code_name(err) in TRANSPORT


def not_found(name: str, message: str) -> CloudError:
    """A NotFound in libvirt's words, for lookups the driver answers without asking libvirt."""
    return CloudError(errors.NotFound, message, name)
