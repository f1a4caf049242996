"""Live runs in this process: their stream events as they happen, and their outcome.

Every event a run streams gets an id and goes to three places: to the clients following
the run now (from memory), to a write buffer that the event log commits in batches (so a
client that reconnects later, or after a restart, misses nothing), and, for `/wait` and
`join`, the run's final result is kept until nobody can still be waiting for it here.
Everything here runs on the event loop's thread, so it needs no locks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ..tables.events import Event, format_id

StreamEvent = tuple[int, int, str, bytes]  # (attempt, seq, event name, JSON data)


@dataclass(slots=True)
class Outcome:
    """How a run ended, as /wait and join report it."""

    status: str  # success | error | timeout | interrupted
    values: Any = None  # the final values (with "__interrupt__" when paused)
    error: dict[str, Any] | None = None


@dataclass(slots=True)
class LiveRun:
    run_id: str
    attempt: int
    seq: int = 0
    events: list[StreamEvent] = field(default_factory=list)
    outcome: Outcome | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, name: str, data: bytes) -> StreamEvent:
        self.seq += 1
        event = (self.attempt, self.seq, name, data)
        self.events.append(event)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return event

    def finish(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.done.set()
        self._changed.set()

    async def follow(self, after: tuple[int, int] | None) -> AsyncIterator[StreamEvent]:
        """This attempt's events after `after` (all if None), then new ones until the end."""
        index = 0
        if after is not None:
            while index < len(self.events) and self.events[index][:2] <= after:
                index += 1
        while True:
            changed = self._changed
            while index < len(self.events):
                yield self.events[index]
                index += 1
            if self.done.is_set():  # what was not yielded here is in the store
                return
            await changed.wait()


class Broker:
    """The live runs of this process, and the buffer of events not yet stored."""

    def __init__(self, linger_seconds: float = 5.0) -> None:
        self.runs: dict[str, LiveRun] = {}
        self.unsaved: list[Event] = []
        self.linger_seconds = linger_seconds
        self._wakeup = asyncio.Event()
        self._openers: dict[str, list[asyncio.Future[None]]] = {}

    def open(self, run_id: str, attempt: int) -> LiveRun:
        live = LiveRun(run_id, attempt)
        self.runs[run_id] = live
        for waiter in self._openers.pop(run_id, ()):
            if not waiter.done():
                waiter.set_result(None)
        return live

    def expect_open(self, run_id: str) -> asyncio.Future[None]:
        """A future that completes when an attempt of the run opens here. Take it before
        looking at the run, so an attempt that opens while you look is not missed."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._openers.setdefault(run_id, []).append(waiter)
        return waiter

    async def wait_open(self, waiter: asyncio.Future[None], timeout: float) -> None:
        """Until `waiter` (from expect_open) completes, or `timeout` seconds passed."""
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            pass

    def poke(self, run_id: str) -> None:
        """Wake whoever waits on the run (its events or end were stored by another
        process): they look again now instead of at their next poll."""
        for waiter in self._openers.get(run_id, ()):
            if not waiter.done():
                waiter.set_result(None)

    def unexpect(self, run_id: str, waiter: asyncio.Future[None]) -> None:
        waiters = self._openers.get(run_id)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._openers[run_id]

    def publish(self, live: LiveRun, name: str, data: bytes) -> str:
        attempt, seq, _, _ = live.add(name, data)
        self.unsaved.append((live.run_id, attempt, seq, name, data))
        if len(self.unsaved) >= 256:
            self._wakeup.set()
        return format_id(attempt, seq)

    def take_unsaved(self, run_id: str | None = None) -> list[Event]:
        """Events to store now: all of them, or those of one run (its final flush)."""
        if run_id is None:
            taken, self.unsaved = self.unsaved, []
            return taken
        taken = [e for e in self.unsaved if e[0] == run_id]
        if taken:
            self.unsaved = [e for e in self.unsaved if e[0] != run_id]
        return taken

    def put_back(self, events: list[Event]) -> None:
        """Keep events whose commit failed, to try again with the next batch."""
        self.unsaved[:0] = events

    def close(self, live: LiveRun, outcome: Outcome) -> None:
        """The run ended (its events are stored by now): wake its followers, who read the
        rest from the store; keep the outcome a while for late `/wait` and `join` calls."""
        live.finish(outcome)
        live.events = []
        asyncio.get_running_loop().call_later(self.linger_seconds, self._forget, live)

    def _forget(self, live: LiveRun) -> None:
        if self.runs.get(live.run_id) is live:
            del self.runs[live.run_id]

    async def wait_for_batch(self, interval: float) -> None:
        """Until the buffer is worth writing (full) or `interval` seconds passed."""
        try:
            await asyncio.wait_for(self._wakeup.wait(), interval)
        except TimeoutError:
            pass
        self._wakeup.clear()
