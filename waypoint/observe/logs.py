"""Structured logs: one JSON object per line, carrying the run, thread and node a line was
written for, so a log search finds every line of one run across API and worker processes.

The ids come from context, not from each log call: the service names the run it executes
(`log_context`), and a line written inside a node also gets the node, step and thread
from the engine's task runtime. A line written while an OpenTelemetry span is recording
carries that span's `trace_id` and `span_id` (hex, as OpenTelemetry's log correlation
writes them), so a log search and a trace viewer lead to each other. Only ids and the
message go out, no state or inputs; the message and any exception text pass through
`redact` first, since an error's message is written by whoever raised it (a driver that
echoes its connection URL, a client that echoes its API key).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from .redact import redact

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


def _trace_ids() -> dict[str, str]:
    """The recording OpenTelemetry span's ids; nothing when tracing is not in use (the
    module is not even imported then)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return {}
    span = trace.get_current_span()
    if not span.is_recording():
        return {}
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", run/thread/node ids..., "trace_id",
    "span_id", "error"}` per line, secrets redacted from the message and the error."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name,
            "message": redact(record.getMessage()),
        }
        line.update(_CONTEXT.get() or {})
        line.update(_task_ids())
        line.update(_trace_ids())
        if record.exc_info:
            line["error"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["error"] = redact(record.exc_text)
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`LEVEL logger: message` for people, with the same redaction as the JSON lines."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure(level: str, fmt: str) -> None:
    """The process's logging: `fmt` "text" (for people) or "json" (for log pipelines)."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', got {fmt!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
