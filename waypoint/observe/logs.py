"""Structured logs: one JSON object per line, carrying the run, thread and node a line was
written for, so a log search finds every line of one run across API and worker processes.

The ids come from context, not from each log call: the service names the run it executes
(`log_context`), and a line written inside a node also gets the node, step and thread
from the engine's task runtime. Only ids and the message go out: no state, inputs or
secrets (API keys are never logged anywhere).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("waypoint_log_context", default=None)


@contextlib.contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """Tag every log line written in this context (and the tasks it starts) with `ids`."""
    token = _CONTEXT.set({**(_CONTEXT.get() or {}), **ids})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _task_ids() -> dict[str, Any]:
    from ..engine.context import current_runtime

    runtime = current_runtime()
    if runtime is None:
        return {}
    loop, task = runtime.loop, runtime.task
    ids: dict[str, Any] = {"node": task.name, "step": loop.step + 1}
    if loop.thread_id is not None:
        ids["thread_id"] = str(loop.thread_id)
    if loop.ns:
        ids["checkpoint_ns"] = loop.ns
    return ids


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", run/thread/node ids..., "error"}` per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_CONTEXT.get() or {})
        line.update(_task_ids())
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure(level: str, fmt: str) -> None:
    """The process's logging: `fmt` "text" (for people) or "json" (for log pipelines)."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', got {fmt!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
