"""cb-agent's benchmarks without NATS: requests, the loops, a twin's values and RTT model."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from pathlib import Path

import pytest

from dragonfly.agent import benchmarks, hostbench, twinbench, workloads
from dragonfly.agent.benchmarks import FieldError, Target, build_request, parse_target
from dragonfly.agent.guests import twin_spec
from dragonfly.protocol.config import TwinPerf
from services.geo import haversine_km
from spider.cloudtwin.catalog import Catalog
from spider.cloudtwin.geography import CITIES
from spider.cloudtwin.guests import peer_orders, true_perf

PERF = TwinPerf(cpu_single_ops_per_s=1e6, cpu_multi_ops_per_s=3.5e6, memory_read_bytes_per_s=12e9,
                memory_write_bytes_per_s=9e9, disk_read_bytes_per_s=180e6, disk_write_bytes_per_s=130e6)
CITY = {c.region: c for c in CITIES}


def test_targets_parse_or_say_what_is_wrong() -> None:
    assert parse_target("db.example.com:5432") == Target("db.example.com", 5432)
    assert parse_target("[::1]:80") == Target("::1", 80) and str(Target("::1", 80)) == "[::1]:80"
    assert str(parse_target(" 127.0.1.7:22 ")) == "127.0.1.7:22"
    for bad, why in (("nohost", "not host:port"), (":80", "not host:port"), ("h:0", "1-65535"),
                     ("h:x", "1-65535"), ("::1:80", "brackets"), ("[nope]:80", "IPv6"), ("a b:80", "no valid host")):
        with pytest.raises(ValueError, match=why):
            parse_target(bad)


def test_requests_default_to_every_benchmark_and_half_a_second_each() -> None:
    req = build_request([], [], 0)
    assert req.benchmarks == tuple(benchmarks.FIELDS) and req.budget_s == 3.0 and req.slice_s == 0.5
    with_rtt = build_request([], ["127.0.0.1:80"], 1.4)
    assert with_rtt.benchmarks[-1] == "rtt" and with_rtt.slice_s == pytest.approx(0.2)
    again = build_request(["cpu_single", "cpu_single", "rtt"], ["h:1"], 0)
    assert again.benchmarks == ("cpu_single", "rtt") and again.budget_s == 1.0
    assert benchmarks.BenchRequest.from_wire(again.to_wire()) == again
    # The agent's own cap applies to a default budget as to a given one.
    assert build_request([], [], 0, max_budget_s=2.0).budget_s == 2.0


@pytest.mark.parametrize(("names", "targets", "budget", "field"), [
    (["cpu_single", "gpu"], [], 0, "benchmarks[1]"),
    (["rtt"], [], 0, "rtt_targets"),
    (["cpu_single"], ["h:1"], 0, "rtt_targets"),
    ([], ["h:1", "h:99999"], 0, "rtt_targets[1]"),
    ([], [f"h:{i + 1}" for i in range(65)], 0, "rtt_targets"),
    ([], [], 0.05, "budget_s"),
    ([], [], 31, "budget_s"),
    ([], [], -1, "budget_s"),
    ([], [], float("nan"), "budget_s"),
])
def test_bad_requests_name_their_field(names: list[str], targets: list[str], budget: float, field: str) -> None:
    with pytest.raises(FieldError) as err:
        build_request(names, targets, budget)
    assert err.value.field == field and str(err.value).startswith(field)


def test_reports_travel_as_json() -> None:
    report = benchmarks.BenchReport(kind="host", cpu_count=2, cpu_single_ops_per_s=5.0, errors={"disk_read": "full"},
                                    rtt=[benchmarks.RttResult("h:1", 1.5, 3)])
    assert benchmarks.BenchReport.from_wire({**report.to_wire(), "from_a_newer_agent": 1}) == report


def test_great_circle_distances() -> None:
    assert haversine_km(51.5074, -0.1278, 48.8566, 2.3522) == pytest.approx(344, abs=3)  # London–Paris
    seoul, virginia = CITY["kr-seoul"], CITY["us-virginia"]
    assert haversine_km(seoul.latitude, seoul.longitude, virginia.latitude, virginia.longitude) == pytest.approx(
        11_150, rel=0.02)
    assert haversine_km(10, 20, 10, 20) == 0


def test_the_rtt_model_grows_with_distance_and_noise_stays_within_its_cap() -> None:
    assert twinbench.rtt_model_ms(0) == twinbench.RTT_BASE_MS
    assert 150 < twinbench.rtt_model_ms(11_150) < 200  # Seoul–Virginia: real paths are ~180 ms
    rng = random.Random(1)
    values = [twinbench.noisy(100.0, rng) for _ in range(2000)]
    assert 94 <= min(values) < 98 and 102 < max(values) <= 106


def test_sizes_stay_within_bounds() -> None:
    assert hostbench.memory_size(64 << 30) == hostbench.MEMORY_BYTES_MAX
    assert hostbench.memory_size(256 << 20) == 32 << 20
    assert hostbench.memory_size(1 << 20) == hostbench.MEMORY_BYTES_MIN
    assert hostbench.disk_size(100 << 30) == hostbench.DISK_BYTES_MAX
    assert hostbench.disk_size(500 << 20) == 50 << 20
    assert hostbench.disk_size(50 << 20) == 0


def test_the_loops_measure_something(tmp_path: Path) -> None:
    start = time.time()
    ops, seconds = workloads.hash_window(start, start + 0.05)
    assert ops > 0 and 0 < seconds < 1
    assert workloads.memory_read(0.05, 8 << 20) > 1e8
    assert workloads.memory_write(0.05, 8 << 20) > 1e8
    path = str(tmp_path / "scratch")
    assert workloads.disk_write(path, 0.05, 16 << 20) > 1e5
    assert workloads.disk_read(path, 0.05) > 1e5
    assert workloads.main(["nope"]) == 2


async def test_a_worker_process_runs_a_loop_and_reports_its_failure() -> None:
    assert await hostbench.HostBench().cpu(1, 0.1) > 1000
    with pytest.raises(benchmarks.BenchmarkError, match="exit 2"):
        await hostbench._worker("nope")


async def test_tcp_rtt_to_a_listener_and_to_a_closed_port() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    async with server:
        ok, refused = await hostbench.rtt_all([Target("127.0.0.1", port), Target("127.0.0.1", closed)], 1.0)
    assert ok.samples == 3 and 0 < ok.rtt_ms < 50 and not ok.error
    assert refused.samples == 0 and refused.rtt_ms == 0 and refused.error == "Connection refused"


async def test_a_twin_answers_its_true_performance_with_noise_and_rtt_from_geography() -> None:
    seoul, tokyo = CITY["kr-seoul"], CITY["jp-tokyo"]
    peers = twinbench.Peers()
    peers.update({"127.0.1.2": [tokyo.latitude, tokyo.longitude], "127.0.1.3": [0, 0]}, [])
    peers.update({}, ["127.0.1.3"])
    bench = twinbench.TwinBench(4, PERF, seoul.latitude, seoul.longitude, peers, random.Random(7))
    req = build_request([], ["127.0.1.2:22", "127.0.1.3:22"], 0.7)
    t0 = time.monotonic()
    report = await benchmarks.run(req, bench)
    assert 0.6 < time.monotonic() - t0 < 2 and report.kind == "twin" and report.cpu_count == 4
    for field in benchmarks.FIELDS.values():
        assert getattr(report, field) == pytest.approx(getattr(PERF, field), rel=twinbench.NOISE_CAP), field
    near, gone = report.rtt
    distance = haversine_km(seoul.latitude, seoul.longitude, tokyo.latitude, tokyo.longitude)
    assert near.rtt_ms == pytest.approx(twinbench.rtt_model_ms(distance), rel=twinbench.NOISE_CAP)
    # Not a running twin VM: measured for real, and nothing listens there.
    assert gone.samples == 0 and gone.error


async def test_a_twin_without_true_performance_says_so_per_benchmark() -> None:
    bench = twinbench.TwinBench(1, None, 0, 0, twinbench.Peers())
    report = await benchmarks.run(build_request(["cpu_single", "disk_read"], [], 0.1), bench)
    assert set(report.errors) == {"cpu_single", "disk_read"} and "no true performance" in report.errors["cpu_single"]
    assert report.cpu_single_ops_per_s == 0


def test_the_emulator_hands_a_guest_its_true_performance_in_benchmark_units() -> None:
    catalog = Catalog(seed=3, providers=1)
    region = next(catalog.regions())
    spec = next(iter(region.specs))
    truth = catalog.truth(region.provider, region.name, spec)
    perf = true_perf(truth)
    assert set(perf) == set(benchmarks.FIELDS.values())
    assert perf["memory_read_bytes_per_s"] == truth.mem_read * 1e9
    guest = twin_spec({"ip": "127.0.1.1", "vcpu": 2, "memory_bytes": 1, "disk_bytes": 1, "sandbox": "/x",
                       "latitude": 1.5, "longitude": 2.5, "perf": perf})
    assert guest.perf is not None and guest.perf.cpu_single_ops_per_s == truth.cpu_single * 1000
    assert (guest.latitude, guest.longitude) == (1.5, 2.5)
    assert twin_spec({"ip": "127.0.1.1", "vcpu": 2, "memory_bytes": 1, "disk_bytes": 1, "sandbox": "/x"}).perf is None


def test_helpers_are_told_only_what_changed_in_pieces() -> None:
    known = {"127.0.1.1": (1.0, 2.0), "127.0.1.2": (3.0, 4.0)}
    now = {"127.0.1.1": (1.0, 2.0), "127.0.1.3": (5.0, 6.0), "127.0.1.4": (7.0, 8.0), "127.0.1.5": (9.0, 9.0)}
    orders = peer_orders(known, now, per_order=2)
    assert orders == [{"op": "peers", "put": {"127.0.1.3": (5.0, 6.0), "127.0.1.4": (7.0, 8.0)}, "drop": ["127.0.1.2"]},
                      {"op": "peers", "put": {"127.0.1.5": (9.0, 9.0)}, "drop": []}]
    assert peer_orders(now, now) == []
    peers = twinbench.Peers(dict(known))
    for order in orders:
        peers.update(order["put"], order["drop"])
    assert peers.places == now


@pytest.mark.parametrize(("body", "field"), [
    ({"ok": True}, "benchmarks"),  # a collector's acknowledgement sent to the bench subject
    ({"benchmarks": [], "budget_s": 1.0}, "benchmarks"),
    ({"benchmarks": "cpu_single", "budget_s": 1.0}, "benchmarks"),
    ({"benchmarks": ["cpu_single"]}, "budget_s"),
    ({"benchmarks": ["cpu_single"], "budget_s": True}, "budget_s"),
    ({"benchmarks": ["cpu_single"], "budget_s": 1.0, "rtt_targets": "h:1"}, "rtt_targets"),
    (["cpu_single"], "body"),
    ({"interval_s": 5}, "benchmarks"),
])
def test_the_agent_runs_nothing_it_was_not_explicitly_asked_for(body: object, field: str) -> None:
    with pytest.raises(benchmarks.FieldError) as err:
        benchmarks.BenchRequest.from_wire(body)
    assert err.value.field == field
