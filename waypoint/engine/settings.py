"""What a run's config and its graph's compile options ask of the loop: durability, step
and concurrency limits, the run deadline, and the shared worker pool."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

# sync: each step is committed before the next starts; async: committed in the background
# while the next step runs (order kept); exit: committed only when the run stops.
DURABILITY_MODES = ("sync", "async", "exit")


def config_int(config: dict[str, Any], key: str, default: int) -> int:
    """A positive whole number from the run config (0, "10" or 2.5 are mistakes, not
    requests for the default)."""
    value = config.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"config[{key!r}] must be a whole number >= 1, got {value!r}")
    return value


def run_deadline(config: dict[str, Any], options: dict[str, Any]) -> float | None:
    """The run's deadline (epoch seconds): config "deadline", else now + "run_timeout"."""
    deadline = config.get("deadline")
    if deadline is not None:
        if isinstance(deadline, datetime):
            if deadline.tzinfo is None:
                raise ValueError("config['deadline'] must be an aware datetime (with a tzinfo)")
            return deadline.timestamp()
        if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
            raise TypeError(f"config['deadline'] must be epoch seconds or a datetime, got "
                            f"{type(deadline).__name__}")
        return float(deadline)
    timeout = config.get("run_timeout", options.get("run_timeout"))
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"run_timeout must be a positive number of seconds, got {timeout!r}")
    return time.time() + float(timeout)


_SHARED: ThreadPoolExecutor | None = None
_SHARED_LOCK = threading.Lock()


def shared_executor() -> ThreadPoolExecutor:
    """The pool where async runs' sync nodes run (no thread to start per run)."""
    global _SHARED
    if _SHARED is None:
        with _SHARED_LOCK:
            if _SHARED is None:
                _SHARED = ThreadPoolExecutor(max_workers=64, thread_name_prefix="waypoint-task")
    return _SHARED
