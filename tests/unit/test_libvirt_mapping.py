"""The libvirt driver's mappings: errors, states, settings, image names, host facts, SSH keys."""

from __future__ import annotations

import base64
import hashlib

import pytest

from cbapi.common.v1 import common_pb2 as common
from services import errors
from spider.drivers.base import ConnectionInfo

pytest.importorskip("libvirt")

import libvirt

from spider.drivers.libvirt import LibvirtDriver, sshkeys
from spider.drivers.libvirt import settings as S
from spider.drivers.libvirt.catalog import describe_image
from spider.drivers.libvirt.errors import classify
from spider.drivers.libvirt.host import parse_capabilities
from spider.drivers.libvirt.status import vm_status


def _real_error(action: object) -> libvirt.libvirtError:
    """An error libvirt itself raised (from its in-process test driver)."""
    try:
        action(libvirt.open("test:///default"))  # type: ignore[operator]
    except libvirt.libvirtError as err:
        return err
    raise AssertionError("libvirt did not refuse")


def _error(code: int, message: str = "boom") -> libvirt.libvirtError:
    err = libvirt.libvirtError(message)
    err.err = (code, 0, message, 2, None, None, None, -1, -1)
    return err


@pytest.mark.parametrize(("action", "kind", "code"), [
    (lambda c: c.lookupByName("no-such"), errors.NotFound, "VIR_ERR_NO_DOMAIN"),
    (lambda c: c.networkLookupByName("no-such"), errors.NotFound, "VIR_ERR_NO_NETWORK"),
    (lambda c: c.storagePoolLookupByName("default-pool").storageVolLookupByName("no"), errors.NotFound,
     "VIR_ERR_NO_STORAGE_VOL"),
    (lambda c: c.defineXML("<domain"), errors.InvalidArgument, "VIR_ERR_XML_DETAIL"),
    (lambda c: c.defineXML("<domain type='test'><name>x</name></domain>"), errors.InvalidArgument,
     "VIR_ERR_XML_ERROR"),
    (lambda c: c.listAllNWFilters(0), errors.FailedPrecondition, "VIR_ERR_NO_SUPPORT"),
])
def test_real_libvirt_errors_map_to_domain_errors_with_their_names(action: object, kind: type, code: str) -> None:
    cloud = classify(_real_error(action))
    assert cloud.error is kind and cloud.cloud_code == code and not cloud.retryable and cloud.message
    assert cloud.to_domain().upstream_code == code


@pytest.mark.parametrize(("code", "kind", "retryable"), [
    (libvirt.VIR_ERR_AUTH_FAILED, errors.PermissionDenied, False),
    (libvirt.VIR_ERR_OPERATION_DENIED, errors.PermissionDenied, False),
    (libvirt.VIR_ERR_ACCESS_DENIED, errors.PermissionDenied, False),
    (libvirt.VIR_ERR_INVALID_ARG, errors.InvalidArgument, False),
    (libvirt.VIR_ERR_OPERATION_INVALID, errors.FailedPrecondition, False),
    (libvirt.VIR_ERR_DOM_EXIST, errors.AlreadyExists, False),
    (libvirt.VIR_ERR_OPERATION_TIMEOUT, errors.DeadlineExceeded, True),
    (libvirt.VIR_ERR_AGENT_UNRESPONSIVE, errors.Unavailable, True),
    (libvirt.VIR_ERR_INTERNAL_ERROR, errors.Internal, False),
])
def test_error_codes_map_to_domain_errors(code: int, kind: type, retryable: bool) -> None:
    cloud = classify(_error(code))
    assert cloud.error is kind and cloud.retryable is retryable and cloud.cloud_code.startswith("VIR_ERR_")


@pytest.mark.parametrize("code", [libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_RPC, libvirt.VIR_ERR_NO_CONNECT,
                                  libvirt.VIR_ERR_INVALID_CONN])
def test_a_broken_connection_is_retryable_and_carries_no_cloud_code(code: int) -> None:
    # Without a cloud code spider treats the outcome as unknown and looks for what the call made.
    cloud = classify(_error(code, "Cannot recv data: Connection reset by peer"))
    assert cloud.error is errors.Unavailable and cloud.retryable and cloud.cloud_code == ""
    assert "Connection reset" in cloud.message and "VIR_ERR_" in cloud.message


def test_domain_states_map_onto_the_status_set() -> None:
    assert vm_status(libvirt.VIR_DOMAIN_RUNNING, 1) == common.RUNNING
    assert vm_status(libvirt.VIR_DOMAIN_BLOCKED, 0) == common.RUNNING
    assert vm_status(libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER) == common.SUSPENDED
    assert vm_status(libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_STARTING_UP) == common.CREATING
    assert vm_status(libvirt.VIR_DOMAIN_SHUTDOWN, 0) == common.SUSPENDING
    assert vm_status(libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN) == common.SUSPENDED
    assert vm_status(libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_CRASHED) == common.FAILED
    assert vm_status(libvirt.VIR_DOMAIN_CRASHED, 0) == common.FAILED
    assert vm_status(libvirt.VIR_DOMAIN_PMSUSPENDED, 0) == common.SUSPENDED
    assert vm_status(libvirt.VIR_DOMAIN_NOSTATE, 0) == common.CREATING


def _info(region: str = "test:///default", zone: str = "", **settings: str) -> ConnectionInfo:
    return ConnectionInfo(connection="c", driver="libvirt", region=region, zone=zone, settings=settings,
                          credential={"username": "u", "password": "p"})


def test_settings_take_the_uri_from_the_setting_or_the_region() -> None:
    assert S.parse(_info()).uri == "test:///default"
    s = S.parse(_info(region="kvm-1", zone="rack-a", uri="qemu+ssh://admin@kvm-1/system"))
    assert s.uri.startswith("qemu+ssh") and not s.local and s.zones == ("rack-a",)
    assert (s.username, s.password, s.pool, s.image_pool, s.network) == ("u", "p", "default", "default", "default")
    assert S.parse(_info(zones="a, b")).zones == ("a", "b") and S.parse(_info()).local
    with pytest.raises(errors.InvalidArgument) as err:
        S.parse(_info(region="kvm-1"))
    assert "uri" in err.value.message


def test_settings_flavors_and_limits_are_checked() -> None:
    flavors = S.parse(_info(flavors='[{"name": "m1", "vcpu": 2, "memory_gib": 4, "gpu_count": 1}]')).flavors
    assert flavors == (S.Flavor("m1", 2, 4.0, gpu_count=1),)
    assert S.parse(_info()).flavors == S.DEFAULT_FLAVORS
    for bad in ('{"name": 1}', '[{"name": "m"}]', '[{"name": "m", "vcpu": 0, "memory_gib": 1}]', "[]", "nope"):
        with pytest.raises(errors.InvalidArgument):
            S.parse(_info(flavors=bad))
    for key, value in (("threads", "0"), ("threads", "x"), ("forward", "bridge")):
        with pytest.raises(errors.InvalidArgument):
            S.parse(_info(**{key: value}))


def test_image_names_give_os_and_architecture() -> None:
    img = describe_image("ubuntu-22.04-x86_64.qcow2", 2 * 1024**3, "aarch64")
    assert (img.os, img.architecture, img.size_gib, img.display_name) == ("Ubuntu 22.04", "x86_64", 2,
                                                                         "ubuntu-22.04-x86_64")
    assert describe_image("debian_12_arm64.img", 0, "x86_64").architecture == "aarch64"
    assert describe_image("rocky.qcow2", 0, "x86_64").architecture == "x86_64"  # the host's, when the name is silent


def test_host_facts_prefer_kvm_and_fall_back_to_the_host_arch() -> None:
    caps = """<capabilities><host><cpu><arch>x86_64</arch></cpu></host>
      <guest><os_type>hvm</os_type><arch name='x86_64'><domain type='qemu'/><domain type='kvm'/></arch></guest>
      <guest><os_type>hvm</os_type><arch name='aarch64'><domain type='qemu'/></arch></guest>
      <guest><os_type>xen</os_type><arch name='i686'><domain type='xen'/></arch></guest></capabilities>"""
    host = parse_capabilities(caps, nwfilter=True)
    assert host.arch == "x86_64" and host.domain_type("x86_64") == "kvm" and host.domain_type("aarch64") == "qemu"
    assert host.guest_arch("aarch64") == "aarch64" and host.guest_arch("s390x") == "x86_64"
    assert "i686" not in host.domain_types


def test_ssh_keys_are_generated_checked_and_fingerprinted_as_openssh_does() -> None:
    public, private = sshkeys.generate()
    assert public.startswith("ssh-ed25519 ") and "BEGIN OPENSSH PRIVATE KEY" in private
    assert sshkeys.check(public + " user@host") == public
    blob = base64.b64decode(public.split()[1])
    assert sshkeys.fingerprint(public) == "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    with pytest.raises(errors.InvalidArgument):
        sshkeys.check("ssh-ed25519 not-base64!")


def test_driver_describes_itself() -> None:
    driver = LibvirtDriver()
    assert driver.unavailable_reason() == "" and driver.credential_keys == ()
    caps = driver.capabilities()
    assert caps.vm and caps.security_group and caps.disk and not caps.prices and not caps.disk_resize
    assert any(n.startswith("prices:") for n in caps.notes) and any(n.startswith("disk_resize:") for n in caps.notes)
