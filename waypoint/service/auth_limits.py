"""Guessing API keys is slowed down: a client that presents `limit` wrong keys (or tokens
the auth function refuses) within `window` seconds is refused with 429 and `Retry-After`
for `window` seconds, without its keys being checked.

A client is its address as the server sees it (`request.client`, which uvicorn takes from
`X-Forwarded-For` only for the proxies it is told to trust). Several people behind one
NAT share an address, so one of them guessing must not lock the others out: a key this
address has already used successfully is still accepted while the address is blocked
(its digest is remembered, a few per address). That lets nothing through for the one
guessing: only keys proven from that address pass, and every other key gets the 429
unchecked, so a correct guess looks exactly like a wrong one until the block ends.

Requests with no key at all are not counted (a UI's first call, a probe of `/info`).
State is per process and bounded (least recently seen addresses are forgotten first): with
several API processes behind a balancer the effective limit is per process.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MAX_CLIENTS = 10_000  # addresses tracked at once
MAX_KNOWN_KEYS = 8  # good key digests remembered per address


@dataclass(slots=True)
class _Client:
    failures: list[float] = field(default_factory=list)
    blocked_until: float = 0.0
    known: list[str] = field(default_factory=list)


class AuthFailureLimiter:
    """Counts failed authentications per client address in a sliding window."""

    def __init__(self, limit: int, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    def _get(self, address: str) -> _Client:
        client = self._clients.get(address)
        if client is None:
            client = self._clients[address] = _Client()
            while len(self._clients) > MAX_CLIENTS:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(address)
        return client

    def retry_after(self, address: str, digest: str) -> int | None:
        """Seconds until `address` may try keys again, or None when this request may be
        checked (not blocked, or a key this address has used successfully)."""
        client = self._clients.get(address)
        if client is None:
            return None
        left = client.blocked_until - self._clock()
        if left <= 0 or digest in client.known:
            return None
        return max(1, math.ceil(left))

    def failed(self, address: str) -> None:
        client = self._get(address)
        now = self._clock()
        client.failures = [t for t in client.failures if now - t < self.window]
        client.failures.append(now)
        if len(client.failures) >= self.limit:
            client.failures.clear()
            client.blocked_until = now + self.window
            log.warning("blocking authentication from %s for %.0f s after %d failures "
                        "in %.0f s", address, self.window, self.limit, self.window)

    def succeeded(self, address: str, digest: str) -> None:
        client = self._clients.get(address)
        if client is None:  # nothing to remember for an address that never failed...
            client = self._get(address)  # ...until it does: remember its good key now
        if digest not in client.known:
            client.known.append(digest)
            del client.known[:-MAX_KNOWN_KEYS]
