"""Running one node attempt under time limits: its `timeout` and the run's deadline.

Async attempts are cancelled when they overrun. A sync attempt cannot be stopped from
outside in Python, so it runs in a worker thread that is abandoned when it overruns: the
engine stops waiting, marks the attempt abandoned (its later calls into waypoint raise)
and discards whatever it returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..errors import NodeTimeoutError, RunTimeoutError
from ..types import TimeoutPolicy
from .context import TaskRuntime


@dataclass(frozen=True, slots=True)
class Limits:
    """The time limits of one attempt, on the monotonic clock."""

    node: str
    timeout: TimeoutPolicy | None
    deadline: float | None  # monotonic time the run must stop by
    deadline_epoch: float | None

    @property
    def active(self) -> bool:
        return self.timeout is not None or self.deadline is not None

    def next_check(self, started: float, runtime: TaskRuntime) -> float:
        """The earliest moment a limit could fire (re-checked then: progress may move it)."""
        moments: list[float] = []
        if self.deadline is not None:
            moments.append(self.deadline)
        if self.timeout is not None:
            if self.timeout.run_timeout is not None:
                moments.append(started + self.timeout.run_timeout)
            if self.timeout.idle_timeout is not None:
                moments.append(runtime.last_progress + self.timeout.idle_timeout)
        return min(moments)

    def overrun(self, started: float, runtime: TaskRuntime, now: float) -> Exception | None:
        """The error for a limit that has passed at `now`, or None."""
        if self.deadline is not None and now >= self.deadline:
            return RunTimeoutError(self.node, self.deadline_epoch or 0.0)
        policy = self.timeout
        if policy is None:
            return None
        if policy.run_timeout is not None and now >= started + policy.run_timeout:
            return NodeTimeoutError(self.node, policy.run_timeout, "run_timeout")
        if policy.idle_timeout is not None and now >= runtime.last_progress + policy.idle_timeout:
            return NodeTimeoutError(self.node, policy.idle_timeout, "idle_timeout")
        return None


NO_LIMITS = Limits("", None, None, None)


def call_limited(limits: Limits, runtime: TaskRuntime, fn: Callable[[], Any]) -> Any:
    """Call `fn` in this thread, or in a watched worker thread when a limit applies."""
    if not limits.active:
        return fn()
    started = runtime.last_progress = time.monotonic()
    early = limits.overrun(started, runtime, started)
    if early is not None:
        raise early
    finished = threading.Event()
    outcome: dict[str, Any] = {}
    context = contextvars.copy_context()

    def body() -> None:
        try:
            outcome["result"] = context.run(fn)
        except BaseException as exc:  # delivered to the waiting thread
            outcome["error"] = exc
        finally:
            finished.set()

    worker = threading.Thread(target=body, name=f"waypoint-node-{limits.node}", daemon=True)
    worker.start()
    while not finished.wait(max(0.0, limits.next_check(started, runtime) - time.monotonic())):
        error = limits.overrun(started, runtime, time.monotonic())
        if error is not None:
            runtime.abandoned = True
            raise error
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


async def acall_limited(limits: Limits, runtime: TaskRuntime,
                        start: Callable[[], Awaitable[Any]]) -> Any:
    """Await `start()`, cancelling it when a limit passes."""
    if not limits.active:
        return await start()
    started = runtime.last_progress = time.monotonic()
    early = limits.overrun(started, runtime, started)
    if early is not None:
        raise early
    job = asyncio.ensure_future(start())
    try:
        while True:
            wait = max(0.0, limits.next_check(started, runtime) - time.monotonic())
            done, _ = await asyncio.wait({job}, timeout=wait)
            if done:
                return job.result()
            error = limits.overrun(started, runtime, time.monotonic())
            if error is not None:
                runtime.abandoned = True
                job.cancel()
                try:
                    await job
                except BaseException:  # the overrun error is what matters
                    pass
                raise error
    except asyncio.CancelledError:
        job.cancel()
        raise
