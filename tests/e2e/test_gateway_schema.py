"""Property-based run of schemathesis against the gateway's own /openapi.json.

Every operation of every backend (spider, tumblebug, dragonfly, the gateway's own) gets a few
generated requests, valid and invalid ones, sent to a real gateway in front of the real services;
no answer may be a 5xx, use an undocumented status or content type (watches answer
`text/event-stream`, or a JSON error before the first event), or break the documented response
schema. Bounded: a few examples per operation and mode, no deadline per example, a wall-clock cap
on the whole run that grows with the number of operations (103 with dragonfly's, 1,012 calls:
~1.4 s each measured on a machine loaded 7 deep on 2 cores, ~0.45 s idle; the cap allows 2.5 s).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests import servers
from tests.support.gateway import KEY, Gateway, start_gateway

EXAMPLES_PER_MODE = 5
BUDGET_SECONDS_PER_OPERATION = 2.5
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def open_gateway(tmp_path_factory: pytest.TempPathFactory, etcd_process: servers.Server,
                       spider_process: servers.Server,
                       monitored_tumblebug_process: servers.Server) -> AsyncIterator[Gateway]:
    # Every backend the gateway fronts: spider, and the tumblebug that runs with a dragonfly (whose
    # operations are covered too). No rate limit here: the run is meant to reach the services, not
    # to count 429s. The gateway keeps its API keys in the session etcd.
    dragonfly = monitored_tumblebug_process.env["CB_TUMBLEBUG_DRAGONFLY_ADDR"]
    gw = await start_gateway(tmp_path_factory.mktemp("gateway-schema"),
                             {"spider": spider_process.address, "tumblebug": monitored_tumblebug_process.address,
                              "dragonfly": dragonfly},
                             CB_GATEWAY_RATE_PER_SECOND="0", CB_LOG_LEVEL="WARNING",
                             CB_ETCD_ENDPOINTS=etcd_process.address, CB_GATEWAY_KEY_HASH_ROUNDS="4")
    yield gw
    gw.proc.stop()


def run_schemathesis(base_url: str) -> dict[str, Any]:
    """Every operation, positive and negative cases; raises on the first failed check."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {KEY}"}
    started = time.monotonic()
    calls = 0
    statuses: dict[int, int] = {}
    skipped: list[str] = []
    operations = []
    for result in schema.get_all_operations():
        # A part of the document schemathesis cannot read is itself a failure of the gateway.
        assert isinstance(result, Ok), result.err()
        operations.append(result.ok())
    tags = sorted({tag for op in operations for tag in (op.definition.raw.get("tags") or [])})
    budget = max(50.0, BUDGET_SECONDS_PER_OPERATION * len(operations))
    seconds: dict[str, float] = {}
    for operation in operations:
        op_started = time.monotonic()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if time.monotonic() - started > budget:
                slowest = sorted(seconds.items(), key=lambda kv: -kv[1])[:5]
                raise AssertionError(f"schemathesis run over {budget:.0f}s after {calls} calls; slowest: {slowest}")

            @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, database=None, print_blob=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(mode))
            def check(case: schemathesis.Case) -> None:
                nonlocal calls
                response = case.call(base_url=base_url, headers=headers, timeout=20)
                calls += 1
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                case.validate_response(response, checks=CHECKS)

            try:
                check()
            except Unsatisfiable:
                # An operation without inputs has no invalid request to make.
                if mode is GenerationMode.POSITIVE:
                    raise
                skipped.append(operation.label)
        seconds[operation.label] = round(time.monotonic() - op_started, 2)
    return {"operations": len(operations), "tags": tags, "calls": calls, "statuses": statuses, "no_negative": skipped,
            "seconds": round(time.monotonic() - started, 1),
            "slowest": sorted(seconds.items(), key=lambda kv: -kv[1])[:8]}


async def test_schemathesis_finds_no_server_error_and_no_schema_break(open_gateway: Gateway) -> None:
    # In a thread: schemathesis calls synchronously, and the session's loop must stay free.
    summary = await asyncio.to_thread(run_schemathesis, open_gateway.url)
    tags = summary["tags"]
    assert {"Spider", "Tumblebug", "Dragonfly"} <= set(tags), tags
    assert summary["operations"] >= 100 and summary["calls"] >= summary["operations"], summary
    assert not any(status >= 500 for status in summary["statuses"]), summary
