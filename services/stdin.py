"""This process's stdin as an asyncio stream, for helper processes ordered over it.

SIGTERM ends the stream as a closed stdin does, so a helper stopped either way takes the same
path out: it stops what it runs (commands, servers) before it exits, and nothing outlives it.
"""

from __future__ import annotations

import asyncio
import signal
import sys

# The longest order line.
LINE_LIMIT = 1 << 20


async def open_stdin() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    loop.add_signal_handler(signal.SIGTERM, reader.feed_eof)
    return reader
