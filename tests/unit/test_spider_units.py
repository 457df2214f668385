"""Unit tests of spider's small parts: names, the gate, errors, sealing."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from pathlib import Path

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services import errors
from services.names import NAME_RE, check_name
from services.secrets import Sealer, load_key
from spider.calllog import CallLog
from spider.calls import CallSite, Gate, Limits, TokenBucket
from spider.drivers.base import CloudError, NameRules


@given(st.text(min_size=1, max_size=80))
def test_cloud_names_obey_the_rules(name: str) -> None:
    rules = NameRules(max_length=20)
    out = rules.cloud_name(name, "abc123")
    assert len(out) <= 20 and out.endswith("-abc123")
    assert all(c.islower() or c.isdigit() or c == "-" for c in out)


@given(st.from_regex(NAME_RE, fullmatch=True))
def test_valid_names_pass(name: str) -> None:
    assert check_name(name, "x") == name


@pytest.mark.parametrize("bad", ["", "A", "1abc", "abc-", "a_b", "a" * 64])
def test_invalid_names_name_the_field(bad: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        check_name(bad, "vm.iid.name")
    assert caught.value.violations[0].field == "vm.iid.name"
    status = caught.value.to_status()
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and status.details


async def test_token_bucket_paces_after_the_burst() -> None:
    bucket = TokenBucket(rate=50, burst=5)
    start = time.monotonic()
    await asyncio.gather(*(bucket.take() for _ in range(15)))
    # 5 free, then 10 more at 50/s ≈ 0.2 s.
    assert 0.15 <= time.monotonic() - start < 0.6


def _gate(tmp_path: Path, retries: int) -> tuple[Gate, CallLog]:
    log = CallLog(str(tmp_path / "calls.jsonl"))
    return Gate(CallSite("c", "mock", "p", "r"), Limits(1000, 100, 4, retries, backoff_base=0.001), log), log


async def test_gate_retries_only_what_is_retryable(tmp_path: Path) -> None:
    gate, log = _gate(tmp_path, retries=3)
    attempts = 0

    async def throttled_twice() -> str:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            raise CloudError(errors.ResourceExhausted, "slow down", "RequestLimitExceeded", retryable=True)
        return "ok"

    assert await gate("RunInstances", throttled_twice, "vm", "a") == "ok"
    assert attempts == 3
    assert [e.attempt for e in log.entries()] == [1, 2, 3]

    async def quota() -> str:
        raise CloudError(errors.ResourceExhausted, "too many", "InstanceLimitExceeded")

    with pytest.raises(errors.ResourceExhausted) as caught:
        await gate("RunInstances", quota)
    assert caught.value.upstream_code == "InstanceLimitExceeded"
    assert log.entries()[-1].attempt == 1  # not retried
    stats = {s.cloud_api: s for s in log.stats()}
    assert stats["RunInstances"].calls == 4 and stats["RunInstances"].errors == 3
    log.close()
    assert (tmp_path / "calls.jsonl").read_text().count("RunInstances") == 4


async def test_gate_bounds_concurrency(tmp_path: Path) -> None:
    gate, log = _gate(tmp_path, retries=0)
    running = peak = 0

    async def work() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    await asyncio.gather(*(gate("X", work) for _ in range(20)))
    assert peak == 4
    log.close()


def test_sealed_secrets_open_only_in_their_own_record(tmp_path: Path) -> None:
    key = load_key("", str(tmp_path / "k" / "secret.key"))
    assert oct((tmp_path / "k" / "secret.key").stat().st_mode & 0o777) == "0o600"
    assert load_key("", str(tmp_path / "k" / "secret.key")) == key  # the same key next time
    sealer = Sealer(key)
    sealed = sealer.seal(b"hunter2", "/cb/spider/credentials/a")
    assert b"hunter2" not in sealed
    assert sealer.open(sealed, "/cb/spider/credentials/a") == b"hunter2"
    with pytest.raises(errors.FailedPrecondition):
        sealer.open(sealed, "/cb/spider/credentials/b")
    other = Sealer(load_key(base64.b64encode(os.urandom(32)).decode(), ""))
    with pytest.raises(errors.FailedPrecondition):
        other.open(sealed, "/cb/spider/credentials/a")
