"""Client-side rate limits per model: requests and tokens per minute, as token buckets.

A provider's quota is cheaper to respect than to hit: a 429 costs a round trip and a
back-off. Each call reserves one request and an estimate of its tokens before it starts
(waiting a little if the bucket is short) and settles with the tokens it really used once
it ends. A wait longer than `max_wait` is not taken: the call fails at once with
`RateLimitExceeded` (a `RateLimited`), so a gateway moves on to its next model instead of
stalling. Reservations are made under a lock and may drive a bucket below zero, so
concurrent callers (threads or asyncio tasks) queue up in the order they reserved; the
waiting itself happens outside the lock.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import RateLimited

if TYPE_CHECKING:
    from .base import ModelRequest

Clock = Callable[[], float]
Sleep = Callable[[float], None]
AsyncSleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A model's quota. None means unlimited. `max_wait` (seconds) is the longest a call
    waits for room before it is refused as rate limited."""

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_wait: float = 5.0

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"RateLimit {name} must be positive or None, got {value!r}")
        if not self.max_wait >= 0:
            raise ValueError(f"RateLimit max_wait must be >= 0 seconds, got {self.max_wait!r}")


class RateLimitExceeded(RateLimited):
    """A local limit would make the call wait longer than `max_wait`; `retry_after` says
    how long room would take to appear."""


def estimate_tokens(request: ModelRequest) -> int:
    """Tokens a request may use: about 4 characters per input token (messages, tools and
    schema) plus its `max_tokens`. Rough on purpose; the real usage settles the bucket."""
    chars = 0
    for message in request.messages:
        content = getattr(message, "content", message)
        chars += len(content) if isinstance(content, str) else len(json.dumps(content,
                                                                              default=str))
        calls = getattr(message, "tool_calls", None)
        if calls:
            chars += len(json.dumps(calls, default=str))
    for part in (request.tools, request.response_format):
        if part:
            chars += len(json.dumps(part, default=str))
    return chars // 4 + (request.max_tokens or 0)


@dataclass(slots=True)
class Reservation:
    """What one call took from the buckets, and how long it has to wait before starting."""

    tokens: int
    wait: float


class _Bucket:
    """Capacity `per_minute`, refilled continuously; its level may go negative (debt)."""

    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, per_minute: float, now: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.updated = now

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def wait_for(self, amount: float) -> float:
        return max(0.0, (min(amount, self.capacity) - self.level) / self.rate)

    def take(self, amount: float) -> None:
        self.level -= min(amount, self.capacity)

    def give_back(self, amount: float) -> None:
        self.level = min(self.capacity, self.level + amount)


class RateLimiter:
    """The buckets of one model. `clock` and `sleep` are injectable so tests run on a fake
    clock without sleeping."""

    def __init__(self, limit: RateLimit, *, name: str | None = None,
                 clock: Clock = time.monotonic, sleep: Sleep = time.sleep,
                 asleep: AsyncSleep | None = None) -> None:
        self.limit = limit
        self.name = name
        self._clock = clock
        self._sleep = sleep
        self._asleep = asleep if asleep is not None else async_sleep_for(sleep)
        now = clock()
        self._requests = (None if limit.requests_per_minute is None
                          else _Bucket(limit.requests_per_minute, now))
        self._tokens = (None if limit.tokens_per_minute is None
                        else _Bucket(limit.tokens_per_minute, now))
        self._lock = threading.Lock()

    def reserve(self, tokens: int) -> Reservation:
        """Take room for one call now and say how long to wait before making it; raise
        `RateLimitExceeded` (taking nothing) when that wait would exceed `max_wait`."""
        with self._lock:
            now = self._clock()
            wait = 0.0
            if self._requests is not None:
                self._requests.refill(now)
                wait = self._requests.wait_for(1)
            if self._tokens is not None:
                self._tokens.refill(now)
                wait = max(wait, self._tokens.wait_for(tokens))
            if wait > self.limit.max_wait:
                raise RateLimitExceeded(
                    f"local rate limit {self._describe()} needs a wait of {wait:.2f}s, "
                    f"more than max_wait={self.limit.max_wait}s",
                    model=self.name, retry_after=wait)
            if self._requests is not None:
                self._requests.take(1)
            if self._tokens is not None:
                self._tokens.take(tokens)
            return Reservation(tokens, wait)

    def acquire(self, tokens: int) -> Reservation:
        """Reserve, then sleep for the wait (if any)."""
        reservation = self.reserve(tokens)
        if reservation.wait > 0:
            self._sleep(reservation.wait)
        return reservation

    async def aacquire(self, tokens: int) -> Reservation:
        """`acquire` for asyncio: the wait does not block the event loop."""
        reservation = self.reserve(tokens)
        if reservation.wait > 0:
            await self._asleep(reservation.wait)
        return reservation

    def settle(self, reservation: Reservation, used_tokens: int | None) -> None:
        """Correct the token bucket with what the call really used (None: the call failed
        without reporting usage, its estimate is given back). The request stays spent."""
        if self._tokens is None:
            return
        with self._lock:
            self._tokens.refill(self._clock())
            diff = reservation.tokens - (used_tokens or 0)
            if diff >= 0:
                self._tokens.give_back(diff)
            else:
                self._tokens.take(-diff)

    def _describe(self) -> str:
        parts = []
        if self.limit.requests_per_minute is not None:
            parts.append(f"{self.limit.requests_per_minute:g} requests/min")
        if self.limit.tokens_per_minute is not None:
            parts.append(f"{self.limit.tokens_per_minute:g} tokens/min")
        return "(" + ", ".join(parts) + ")"


def async_sleep_for(sleep: Sleep) -> AsyncSleep:
    """The asyncio counterpart of a sleep function: `asyncio.sleep` for the real one; an
    injected (fake) sleep is called as is, so tests use one fake for both paths."""
    if sleep is time.sleep:
        return asyncio.sleep

    async def fake(delay: float) -> None:
        sleep(delay)

    return fake
