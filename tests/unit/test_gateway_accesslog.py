"""The gateway's access log: written directly under the suite's logging set-up, the same JSON
object the logging formatter writes; through logging under any other set-up."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from services import logs
from services.gateway.accesslog import AccessLog

FIELDS = {"method": "GET", "path": "/spider/v1/ü", "status": 200, "bytes": 12, "ms": 1.25, "remote": "127.0.0.1",
          "client": "admin"}


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = saved[0], saved[1]


def _formatter_line(rid: str) -> dict[str, object]:
    record = logging.getLogger("gateway.access").makeRecord("gateway.access", logging.INFO, "", 0, "http", (), None,
                                                            extra=FIELDS)
    token = logs.request_id.set(rid)
    try:
        return json.loads(logs.JsonFormatter().format(record))  # type: ignore[no-any-return]
    finally:
        logs.request_id.reset(token)


def test_direct_line_is_the_formatters_object(restored_logging: None, capfd: pytest.CaptureFixture[str]) -> None:
    logs.setup("INFO")  # here, not in the fixture: pytest adds its capturing handler for the test's call
    log = AccessLog()
    assert log.enabled()
    token = logs.request_id.set("rid-1")
    try:
        log.write(dict(FIELDS))
    finally:
        logs.request_id.reset(token)
    assert log._direct is not None
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    assert len(lines) == 1
    got, want = lines[0], _formatter_line("rid-1")
    assert abs(got.pop("ts") - want.pop("ts")) < 5
    assert list(got.items()) == list(want.items())


def test_other_logging_set_up_gets_records(restored_logging: None) -> None:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logs.setup("INFO")
    logging.getLogger().addHandler(Keep())
    log = AccessLog()
    log.write(dict(FIELDS))
    assert log._direct is None
    assert len(seen) == 1 and seen[0].name == "gateway.access" and seen[0].getMessage() == "http"
    assert {k: getattr(seen[0], k) for k in FIELDS} == FIELDS


def test_off_below_info(restored_logging: None) -> None:
    logs.setup("WARNING")
    assert not AccessLog().enabled()
