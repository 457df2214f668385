"""Handlers are looked up by type, and a driver's capabilities are checked against its handlers."""

from __future__ import annotations

from typing import Any

import pytest

from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from spider.connections import OpenConnection
from spider.drivers import base
from spider.drivers.aws import AwsDriver
from spider.drivers.libvirt import LibvirtDriver
from spider.drivers.mock import MockDriver
from spider.drivers.mock import handlers as h

TWIN: Any = None  # the handlers only keep it; nothing here calls the cloud


def _mock_cloud(**changes: object) -> base.CloudConnection:
    specs = h.TwinSpecs(TWIN)
    cloud = base.CloudConnection(
        provider="p", region="r", image=h.TwinImages(TWIN), spec=specs, region_zone=h.TwinRegionZones(TWIN),
        price=specs, vpc=h.TwinVpcs(TWIN), security_group=h.TwinSecurityGroups(TWIN), key_pair=h.TwinKeyPairs(TWIN),
        vm=h.TwinVms(TWIN), disk=h.TwinDisks(TWIN))
    for attr, value in changes.items():
        setattr(cloud, attr, value)
    return cloud


def test_lookup_by_type_returns_that_handler() -> None:
    cloud = _mock_cloud()
    conn = OpenConnection(pb.Connection(name="c", driver="mock"), MockDriver(), cloud, None, 0.0)  # type: ignore[arg-type]
    assert isinstance(conn.handler(base.DiskHandler), h.TwinDisks)
    assert conn.handler(base.PriceHandler) is conn.handler(base.SpecHandler)  # one object may serve two slots
    cloud.disk = None
    with pytest.raises(errors.FailedPrecondition, match="does not support disks"):
        conn.handler(base.DiskHandler)


def test_a_handler_in_the_wrong_slot_is_not_handed_out() -> None:
    cloud = _mock_cloud(disk=h.TwinVms(TWIN))
    assert cloud.get(base.DiskHandler) is None
    assert "disk is a TwinVms, not a DiskHandler" in base.capability_mismatches(MockDriver().capabilities(), cloud)


def test_the_real_mock_driver_matches_its_capabilities() -> None:
    assert base.capability_mismatches(MockDriver().capabilities(), _mock_cloud()) == []


def test_an_undeclared_handler_is_a_mismatch() -> None:
    # aws declares no prices: a connection that had a price handler would contradict ListDrivers.
    wrong = base.capability_mismatches(AwsDriver().capabilities(), _mock_cloud())
    assert wrong == ["it has a PriceHandler but does not declare prices"]


def test_a_declared_handler_may_be_missing_only_with_a_note() -> None:
    caps = MockDriver().capabilities()
    assert base.capability_mismatches(caps, _mock_cloud(disk=None)) == [
        "it declares disk but has no DiskHandler, and no note says why"]
    # libvirt without nwfilters has no security groups, and its notes say so.
    libvirt = LibvirtDriver().capabilities()
    assert base.capability_mismatches(libvirt, _mock_cloud(price=None, security_group=None)) == []
