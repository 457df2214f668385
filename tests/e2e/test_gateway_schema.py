"""Property-based run of schemathesis against the gateway's own /openapi.json.

Every operation gets a few generated requests, valid and invalid ones, sent to a real gateway
in front of the real spider and tumblebug; no answer may be a 5xx, use an undocumented status or
content type, or break the documented response schema. Bounded: a few examples per operation and
mode, no deadline per example, a wall-clock cap on the whole run that grows with the number of
operations (86 with tumblebug's: ~0.45 s each measured on an idle machine, so the cap leaves
twice that for a busy one).
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
from tests.e2e.test_gateway import KEY, Gateway, start_gateway

EXAMPLES_PER_MODE = 5
BUDGET_SECONDS_PER_OPERATION = 1.0
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def open_gateway(tmp_path_factory: pytest.TempPathFactory, etcd: servers.Server, spider: servers.Server,
                       tumblebug: servers.Server) -> AsyncIterator[Gateway]:
    # No rate limit here: the run is meant to reach the services, not to count 429s.
    gw = await start_gateway(tmp_path_factory.mktemp("gateway-schema"),
                             {"spider": spider.address, "tumblebug": tumblebug.address},
                             CB_GATEWAY_RATE_PER_SECOND="0", CB_LOG_LEVEL="WARNING",
                             CB_ETCD_ENDPOINTS=etcd.address, CB_GATEWAY_KEY_HASH_ROUNDS="4")
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
    budget = max(50.0, BUDGET_SECONDS_PER_OPERATION * len(operations))
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if time.monotonic() - started > budget:
                raise AssertionError(f"schemathesis run over {budget:.0f}s after {calls} calls")

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
    return {"operations": len(operations), "calls": calls, "statuses": statuses, "no_negative": skipped,
            "seconds": round(time.monotonic() - started, 1)}


async def test_schemathesis_finds_no_server_error_and_no_schema_break(open_gateway: Gateway) -> None:
    # In a thread: schemathesis calls synchronously, and the session's loop must stay free.
    summary = await asyncio.to_thread(run_schemathesis, open_gateway.url)
    assert summary["operations"] >= 80 and summary["calls"] >= summary["operations"]
    assert not any(status >= 500 for status in summary["statuses"]), summary
