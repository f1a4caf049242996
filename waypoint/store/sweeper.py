"""A daemon thread that removes expired store items every interval."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future

log = logging.getLogger("waypoint.store")


class Sweeper:
    """Calls `sweep` every `interval` seconds until stopped; `done` completes on stop."""

    def __init__(self, sweep: Callable[[], int], interval: float) -> None:
        self._sweep = sweep
        self._interval = interval
        self._stop = threading.Event()
        self.done: Future[None] = Future()
        self.done.set_running_or_notify_cancel()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="waypoint-store-sweeper")
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._interval):
                try:
                    removed = self._sweep()
                    if removed:
                        log.debug("store sweeper removed %d expired item(s)", removed)
                except Exception:  # a failed sweep is retried at the next interval
                    log.exception("store sweeper: sweeping expired items failed")
        finally:
            self.done.set_result(None)

    def stop(self, timeout: float | None = None) -> bool:
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()
