"""A tiny HTTP/1.1 application instance for the endpoint's tests and benchmarks.

`python -m bench.http_app HOST PORT NAME [--fail-every N]`: answers `GET /health` with 200,
`GET /sleep/MS` after MS milliseconds, anything else with its NAME; with --fail-every N, every
Nth non-health request gets a 500. Keep-alive, no dependencies, one asyncio loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib


class App:
    def __init__(self, name: str, fail_every: int) -> None:
        self.name = name.encode()
        self.fail_every = fail_every
        self.count = 0

    async def answer(self, path: str) -> tuple[int, bytes]:
        if path == "/health":
            return 200, b"ok"
        self.count += 1
        if path.startswith("/sleep/"):
            await asyncio.sleep(int(path.removeprefix("/sleep/")) / 1000)
        if self.fail_every and self.count % self.fail_every == 0:
            return 500, self.name
        return 200, self.name

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "/"
                length = 0
                close = False
                for line in lines[1:]:
                    key, _, value = line.partition(":")
                    if key.lower() == "content-length":
                        length = int(value)
                    elif key.lower() == "connection" and value.strip().lower() == "close":
                        close = True
                if length:
                    await reader.readexactly(length)
                status, body = await self.answer(path)
                reason = b"OK" if status == 200 else b"Internal Server Error"
                writer.write(b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s"
                             % (status, reason, len(body), body))
                await writer.drain()
                if close:
                    break
        writer.close()


async def serve(host: str, port: int, name: str, fail_every: int = 0) -> None:
    app = App(name, fail_every)
    server = await asyncio.start_server(app.connection, host, port, backlog=512)
    async with server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("name")
    p.add_argument("--fail-every", type=int, default=0)
    a = p.parse_args()
    asyncio.run(serve(a.host, a.port, a.name, a.fail_every))


if __name__ == "__main__":
    main()
