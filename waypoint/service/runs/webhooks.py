"""Webhooks: POST a finished run to the URL it named, retried with backoff.

Delivery is at least once while the server runs; a receiver that keeps failing is given
up on after the configured attempts, and the failure is logged (never the body, which may
hold user data).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import httpx

from ..encoding import dumps

log = logging.getLogger("waypoint.service.webhooks")


class WebhookSender:
    def __init__(self, attempts: int = 5, base_delay: float = 0.5, timeout: float = 10.0
                 ) -> None:
        self.attempts = attempts
        self.base_delay = base_delay
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._pending: set[asyncio.Task[None]] = set()

    def send(self, url: str, body: dict[str, Any]) -> None:
        task = asyncio.create_task(self._deliver(url, dumps(body)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _deliver(self, url: str, payload: bytes) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                response = await self._client.post(
                    url, content=payload, headers={"content-type": "application/json"})
                if response.status_code < 500 and response.status_code != 429:
                    if response.status_code >= 400:
                        log.warning("webhook %s refused the run (HTTP %d); not retried",
                                    _safe(url), response.status_code)
                    return
                reason = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                reason = type(exc).__name__
            if attempt == self.attempts:
                log.warning("webhook %s failed %d times (last: %s); giving up", _safe(url),
                            attempt, reason)
                return
            delay = self.base_delay * 2 ** (attempt - 1)
            await asyncio.sleep(delay + random.uniform(0, delay / 2))

    async def close(self, timeout: float = 5.0) -> None:
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=timeout)
        for task in self._pending:
            task.cancel()
        await self._client.aclose()


def _safe(url: str) -> str:
    """The URL without query string or credentials, for logs."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(query=None, fragment=None, userinfo=b""))
