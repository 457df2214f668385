"""The webhook sink: each alert event of a rule with a `webhook_url` is POSTed there as JSON,
retried with exponential backoff; bounded, so a dead endpoint cannot grow memory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import httpx

log = logging.getLogger("dragonfly.webhook")


@dataclass
class WebhookCounts:
    delivered: int = 0
    failed: int = 0  # every attempt failed
    dropped: int = 0  # the queue was full


class WebhookSink:
    """Deliveries in a bounded queue, sent by a few workers; each delivery is tried `attempts`
    times with backoff `backoff_s`, doubled each time up to `backoff_max_s`."""

    def __init__(self, attempts: int = 5, backoff_s: float = 0.2, backoff_max_s: float = 5.0,
                 timeout_s: float = 5.0, queue_max: int = 1000, workers: int = 4) -> None:
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self.counts = WebhookCounts()
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(queue_max)
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.timeout_s)
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()

    def send(self, url: str, body: bytes) -> None:
        """Queue a delivery; when the queue is full the oldest delivery is dropped (and counted)."""
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
                self._queue.task_done()
                self.counts.dropped += 1
        self._queue.put_nowait((url, body))

    async def drain(self) -> None:
        """Wait until every queued delivery has been delivered or has failed."""
        await self._queue.join()

    async def _work(self) -> None:
        while True:
            url, body = await self._queue.get()
            try:
                if await self.deliver(url, body):
                    self.counts.delivered += 1
                else:
                    self.counts.failed += 1
            finally:
                self._queue.task_done()

    async def deliver(self, url: str, body: bytes) -> bool:
        """POST `body` until a 2xx answer or the attempts are spent."""
        assert self._client is not None, "start() the sink first"
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                resp = await self._client.post(url, content=body, headers={"content-type": "application/json"})
                if resp.is_success:
                    return True
                problem = f"HTTP {resp.status_code}"
            except httpx.HTTPError as err:
                problem = f"{type(err).__name__}: {err}"
            log.warning("webhook delivery failed", extra={"url": url, "attempt": attempt, "error": problem})
            if attempt < self.attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)
        return False
