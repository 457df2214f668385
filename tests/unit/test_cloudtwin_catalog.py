"""CloudTwin's deterministic parts: the catalog, IDs and addresses, knob layers,
and the lazy state machine driven by a fake clock (no process, no gRPC)."""

from __future__ import annotations

import ipaddress
import random
import statistics

import grpc
import pytest

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as pb
from spider.cloudtwin import faults, lifecycle
from spider.cloudtwin.catalog import MAX_REGIONS, MIN_REGIONS, Catalog, provider_names
from spider.cloudtwin.geography import CITIES, SKY_WORDS
from spider.cloudtwin.ids import IP_CAPACITY, loopback_ip, make_id, seq_of
from spider.cloudtwin.index import Bucket
from spider.cloudtwin.knobs import KnobTable, LatencyDist, parse_entries
from spider.cloudtwin.store import Store


def fingerprint(cat: Catalog) -> bytes:
    """Everything a client can see of a catalog, as bytes."""
    out = bytearray()
    for prov in cat.providers.values():
        out += prov.to_proto().SerializeToString()
        out += prov.regions_response.SerializeToString()
        for reg in prov.regions.values():
            out += reg.specs_response.SerializeToString() + reg.images_response.SerializeToString()
    return bytes(out)


# -- catalog -------------------------------------------------------------------


def test_same_seed_same_catalog() -> None:
    assert fingerprint(Catalog(42, 8)) == fingerprint(Catalog(42, 8))
    a, b = Catalog(42, 8), Catalog(42, 8)
    for prov in a.providers.values():
        for reg in prov.regions.values():
            for spec in reg.specs:
                assert a.truth(prov.name, reg.name, spec) == b.truth(prov.name, reg.name, spec)


def test_different_seed_different_catalog() -> None:
    assert fingerprint(Catalog(42, 8)) != fingerprint(Catalog(43, 8))


def test_adding_providers_keeps_the_existing_ones() -> None:
    small, big = Catalog(7, 3), Catalog(7, 40)
    for name, prov in small.providers.items():
        assert big.providers[name].regions_response == prov.regions_response


def test_provider_names_are_readable_and_unique() -> None:
    names = provider_names(42, 100)
    assert len(set(names)) == 100
    assert set(names[: len(SKY_WORDS)]) == set(SKY_WORDS)
    assert all(n.split("-")[0] in SKY_WORDS for n in names)
    assert names[len(SKY_WORDS)].endswith("-2")


def test_regions_zones_and_coordinates() -> None:
    cities = {c.region: c for c in CITIES}
    cat = Catalog(42, 30)
    for prov in cat.providers.values():
        assert MIN_REGIONS <= len(prov.regions) <= MAX_REGIONS
        for reg in prov.regions.values():
            assert reg.zones == (f"{reg.name}-a", f"{reg.name}-b", f"{reg.name}-c")
            msg = reg.to_proto()
            assert msg.location.latitude == cities[reg.name].latitude
            assert -90 <= msg.location.latitude <= 90 and -180 <= msg.location.longitude <= 180


def test_specs_and_images() -> None:
    cat = Catalog(42, 10)
    families = set()
    for reg in cat.regions():
        assert {"general", "compute", "memory"} <= {s.family for s in reg.specs.values()}
        for spec in reg.specs.values():
            families.add(spec.family)
            assert spec.vcpu >= 1 and spec.memory_gib > 0 and spec.price_per_hour > 0
            assert spec.architecture == ("arm64" if spec.family == "arm64" else "x86_64")
            assert (spec.gpu_count > 0) == (spec.family == "gpu")
        arches = {(i.os, i.architecture) for i in reg.images.values()}
        assert {("ubuntu", "x86_64"), ("ubuntu", "arm64"), ("debian", "x86_64"), ("rocky", "arm64")} <= arches
        assert all(i.id.startswith("img-") for i in reg.images.values())
    assert families == {"general", "compute", "memory", "arm64", "gpu"}


def test_prices_differ_by_provider_and_region() -> None:
    cat = Catalog(42, 10)
    # The same shape (general, 2 vCPU) costs differently across regions and providers.
    prices = {s.price_per_hour for r in cat.regions() for s in r.specs.values()
              if s.family == "general" and s.vcpu == 2}
    assert len(prices) > 20


def test_true_performance_is_not_proportional_to_price() -> None:
    cat = Catalog(42, 20)
    ratios = []
    for reg in cat.regions():
        for spec in reg.specs.values():
            if spec.family == "general" and spec.vcpu == 2:
                truth = cat.truth(reg.provider, reg.name, spec.name)
                assert truth.cpu_multi > truth.cpu_single > 0
                assert truth.mem_read > truth.mem_write > 0 and truth.disk_read > truth.disk_write > 0
                ratios.append(truth.cpu_multi / spec.price_per_hour)
    # Performance per dollar spreads widely: some offers are bargains, some are not.
    assert max(ratios) / min(ratios) > 1.5
    assert statistics.pstdev(ratios) / statistics.mean(ratios) > 0.1


def test_unknown_names_are_not_found_and_named() -> None:
    cat = Catalog(42, 3)
    with pytest.raises(faults.CloudError) as exc:
        cat.provider("nowhere")
    assert exc.value.code == grpc.StatusCode.NOT_FOUND and "nowhere" in exc.value.message
    prov = next(iter(cat.providers))
    with pytest.raises(faults.CloudError) as exc:
        cat.region(prov, "xx-atlantis")
    assert exc.value.code == grpc.StatusCode.NOT_FOUND and "xx-atlantis" in exc.value.message


# -- IDs and addresses ---------------------------------------------------------------


def test_ids_are_unique_and_map_back() -> None:
    ids = {make_id(pb.VM, n) for n in range(1, 5000)}
    assert len(ids) == 4999
    for n in (1, 2, 99, 123456789):
        rid = make_id(pb.DISK, n)
        assert rid.startswith("vol-") and seq_of(rid) == n
    assert seq_of("i-nothex") == -1


def test_loopback_addresses() -> None:
    assert loopback_ip(0) == "127.0.1.1"
    assert loopback_ip(253) == "127.0.1.254"
    assert loopback_ip(254) == "127.0.2.1"
    seen = set()
    for n in [*range(0, 3000), IP_CAPACITY - 1]:
        ip = ipaddress.IPv4Address(loopback_ip(n))
        last = int(ip) & 0xFF
        assert ip in ipaddress.IPv4Network("127.0.0.0/8") and 0 < last < 255
        assert not str(ip).startswith("127.0.0.")
        seen.add(ip)
    assert len(seen) == 3001
    with pytest.raises(ValueError):
        loopback_ip(IP_CAPACITY)


# -- knobs ---------------------------------------------------------------------


def test_knob_layers() -> None:
    cat = Catalog(42, 3)
    prov = next(iter(cat.providers.values()))
    first, second = list(prov.regions)[:2]
    defaults = pb.Knobs(create_latency=pb.Latency(median_s=0.1), boot_latency=pb.Latency(median_s=1),
                        action_latency=pb.Latency(median_s=0.5), failure_rate=0, quota_vms=0, quota_vcpus=0,
                        api_rate=0, api_burst=0)
    start = parse_entries(f'[{{"provider": "{prov.name}", "region": "{first}", '
                          f'"knobs": {{"failure_rate": 0.25, "create_latency": {{"median_s": 2}}}}}}]')
    table = KnobTable(cat, defaults, start)
    assert table.get(prov.name, first).failure_rate == 0.25
    assert table.get(prov.name, first).create_latency.median_s == 2
    assert table.get(prov.name, second).failure_rate == 0
    # Admin changes touch only the fields they set, in every region of the scope.
    changed = table.set(prov.name, "", pb.Knobs(quota_vms=7))
    assert len(changed) == len(prov.regions)
    assert table.get(prov.name, first).quota_vms == 7 and table.get(prov.name, first).failure_rate == 0.25
    assert len(table.set("", "", pb.Knobs(api_rate=3))) == cat.region_count()
    with pytest.raises(faults.CloudError):
        table.set("", "", pb.Knobs(failure_rate=2))
    # Only the admin layer is persisted; it survives into a fresh table.
    fresh = KnobTable(cat, defaults, start)
    fresh.load_admin(table.admin_entries())
    assert fresh.get(prov.name, second).quota_vms == 7 and fresh.get(prov.name, second).api_rate == 3


# -- lazy state machine ----------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_lazy_transitions_and_purge() -> None:
    clock = FakeClock()
    store = Store(retention_s=10, clock=clock)
    vm = store.new_record(pb.VM, "acct", "p", "r")
    store.schedule(vm, lifecycle.CREATING, lifecycle.RUNNING, clock.now + 1)
    store.add(vm)
    assert store.lookup(vm.id) is vm and vm.state == lifecycle.CREATING
    clock.now += 1
    assert store.lookup(vm.id) is vm and vm.state == lifecycle.RUNNING and not vm.res.next_state
    store.schedule(vm, lifecycle.TERMINATING, lifecycle.TERMINATED, clock.now + 1)
    clock.now += 5
    # Nobody read it, yet its path is known: terminated 4 s ago, gone 6 s from now.
    assert store.lookup(vm.id) is vm and vm.state == lifecycle.TERMINATED
    assert vm.res.next_state == lifecycle.DELETED
    clock.now += 6
    assert store.sweep() == 1 and store.lookup(vm.id) is None


def test_bucket_pages_survive_removals() -> None:
    bucket: Bucket[int] = Bucket()
    for seq in range(1, 1001):
        bucket.add(seq, seq)
    got, after = [], 0
    while True:
        page, more = bucket.page(after, 64, lambda item: item % 3 != 0)
        got += [item for _, item in page]
        if not more:
            break
        after = page[-1][0]
        bucket.remove(after + 1)  # removed between pages: never shifts the next page
    assert got == sorted(got) and all(i % 3 for i in got) and len(set(got)) == len(got)
    assert len(got) >= 600


def test_lognormal_latency_has_the_median() -> None:
    rng = random.Random(1)
    samples = sorted(LatencyDist(2.0, 0.5).sample(rng) for _ in range(4001))
    assert 1.8 < samples[2000] < 2.2
    assert LatencyDist(2.0, 0.0).sample(rng) == 2.0
