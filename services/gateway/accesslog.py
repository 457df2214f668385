"""The gateway's access log: one JSON line per request (logger `gateway.access`, level INFO).

Through `logging` a line cost about a tenth of a proxied GET's CPU (a LogRecord with its process
and thread lookups, the generic JSON formatter walking the record's attributes, json.dumps). When
logging is the suite's own set-up (`services.logs.setup`: one JSON handler on stderr), the line —
the same object the JSON formatter would write — is made with orjson and written to stderr in one
call; under any other configuration the record goes through `logging` as usual.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Any

import orjson

from services import logs

access = logging.getLogger("gateway.access")


class AccessLog:
    """Writes access lines; decides once (at the first line) which way."""

    def __init__(self) -> None:
        self._direct: int | None = None  # stderr's file descriptor when writing directly
        self._decided = False

    def _decide(self) -> None:
        self._decided = True
        root = logging.getLogger()
        handlers = root.handlers
        standard = (
            access.handlers == [] and access.propagate and access.filters == [] and root.filters == []
            and len(handlers) == 1 and type(handlers[0]) is logging.StreamHandler
            and type(handlers[0].formatter) is logs.JsonFormatter and handlers[0].filters == []
            and getattr(handlers[0], "stream", None) is sys.stderr
        )
        self._direct = sys.stderr.fileno() if standard else None

    def enabled(self) -> bool:
        return access.isEnabledFor(logging.INFO)

    def write(self, fields: dict[str, Any]) -> None:
        """One line of `fields` (the caller checked `enabled()`)."""
        if not self._decided:
            self._decide()
        if self._direct is None:
            access.handle(access.makeRecord(access.name, logging.INFO, "", 0, "http", (), None, extra=fields))
            return
        line: dict[str, Any] = {"ts": round(time.time(), 3), "level": "INFO", "logger": access.name, "msg": "http"}
        rid = logs.request_id.get()
        if rid:
            line["request_id"] = rid
        line.update(fields)
        # As logging's handlers: a log line never fails a request. logging's handler flushes every
        # record, so nothing of its waits in stderr's buffer and the lines keep their order.
        with contextlib.suppress(OSError, ValueError):
            os.write(self._direct, orjson.dumps(line, default=str, option=orjson.OPT_APPEND_NEWLINE))
