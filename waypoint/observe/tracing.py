"""OpenTelemetry traces of waypoint runs, following the GenAI semantic conventions.

    from waypoint.observe.tracing import instrument
    instrument()                                   # spans go to the global TracerProvider
    instrument(tracer_provider=tp, capture_content=True)

Or with no code at all: set `OTEL_EXPORTER_OTLP_ENDPOINT` (see `otel_setup.py`).

An engine observer (waypoint/engine/observers.py) turns each scope into a span: a run is
`invoke_agent {graph}`, each node attempt `node {name}` (a retried attempt is its own span,
ended in error), a model call `chat {model}` (kind CLIENT), a tool call
`execute_tool {tool}`, and effects, compensations and approvals their own spans. A span's
parent is the span of its scope's parent (so parallel branches, `Send` fan-out and
subgraphs nest right whatever thread runs them); a root run's parent is the current
OpenTelemetry context (a caller's span, or a `traceparent` continued by `continue_trace`).
A node's code runs with its attempt's span current, so libraries traced inside it nest
under it. A run leaves its span's `traceparent` on each checkpoint it commits; a later run
resuming the thread links to it.

Prompts, completions, tool arguments and results are recorded only when asked for
(`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` or `capture_content=True`),
truncated and with values that look like secrets redacted; so are exception messages and
stack traces recorded on failed spans. State values, headers and model objects are never
read. OpenTelemetry is imported only when tracing is used, so
this module imports without the `waypoint[otel]` extra.
"""

from __future__ import annotations

import contextvars
import os
import re
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from ..engine import observers
from ..engine.observers import Observer, Scope
from .genai_content import cut, fit_messages, json_content
from .redact import redact

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_CAPTURE_ON = frozenset({"true", "1", "yes", "on", "span_only", "span_and_event"})
_MAX_SHORT = 1_000  # descriptions, status messages
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ATTACHED = frozenset({"tool", "effect", "compensation"})  # opened and closed in one context
# The innermost such scope open in this context: a model call made inside a tool (an agent
# as a tool) or an effect nests under it, though the engine makes the node attempt its parent.
_INNER: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "waypoint_traced_inner_scope", default=None)

__all__ = ["CAPTURE_ENV", "TracingObserver", "configure_from_env", "continue_trace",
           "current_carrier", "instrument", "is_instrumented", "traced", "uninstrument"]


# -- the observer ---------------------------------------------------------------------------


class _Handle:
    """What the observer keeps for an open scope: its span, and the token of a context
    attached for a scope whose code runs inside it."""

    __slots__ = ("inner", "span", "token", "traceparent")

    def __init__(self, span: Any) -> None:
        self.span = span
        self.token: Any = None
        self.inner: Any = None
        self.traceparent: str | None = None


class TracingObserver(Observer):
    """Spans for scopes; see the module docstring and docs/observability.md."""

    def __init__(self, tracer_provider: Any = None, capture_content: bool = False) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode

        self.provider = tracer_provider
        self.capture_content = capture_content
        version = getattr(sys.modules.get("waypoint"), "__version__", None)
        self._tracer = trace.get_tracer("waypoint", version, tracer_provider=tracer_provider)
        self._context = context
        self._trace = trace
        self._link, self._span_context = Link, SpanContext
        self._internal, self._client = SpanKind.INTERNAL, SpanKind.CLIENT
        self._status, self._error = Status, StatusCode.ERROR

    # -- hooks ------------------------------------------------------------------------------

    def scope_started(self, scope: Scope) -> Any:
        kind = scope.kind
        links = None
        if kind == "run":
            name, attrs = _run_start(scope)
            links = self._resume_links(scope.attrs.get("resumes"))
        elif kind == "attempt":
            name, attrs = f"node {scope.name}", _attempt_start(scope.attrs)
        elif kind == "model":
            name, attrs = _model_start(scope)
        elif kind == "tool":
            name, attrs = _tool_start(scope)
        elif kind == "effect":
            name, attrs = f"effect {scope.name}", {"waypoint.effect.name": scope.name}
        elif kind == "compensation":
            name, attrs = f"compensate {scope.name}", {"waypoint.node": scope.name}
        elif kind == "approval":
            name, attrs = f"approval {scope.name}", _approval(scope.attrs)
        else:
            name, attrs = f"{kind} {scope.name}", {}
        span = self._tracer.start_span(
            name, context=self._parent(scope),
            kind=self._client if kind == "model" else self._internal,
            attributes=_clean(attrs), links=links)
        handle = _Handle(span)
        if self.capture_content and span.is_recording():
            self._capture_start(scope, span)
        if kind in _ATTACHED:  # libraries traced inside a tool or an effect nest under it
            handle.token = self._context.attach(self._trace.set_span_in_context(span))
            handle.inner = _INNER.set(scope)
        return handle

    def scope_ended(self, scope: Scope, handle: Any) -> None:
        if handle is None:
            return
        span = handle.span
        try:
            if span.is_recording():
                self._finish(scope, span)
        finally:
            if handle.token is not None:
                token, handle.token = handle.token, None
                try:
                    _INNER.reset(handle.inner)
                except ValueError:  # closed in another context than it opened in
                    pass
                self._context.detach(token)
            span.end()

    def scope_event(self, scope: Scope, handle: Any, name: str,
                    attrs: Mapping[str, Any]) -> None:
        if handle is None or not handle.span.is_recording():
            return
        if name == "checkpoint":
            event = {"waypoint.checkpoint_id": attrs.get("checkpoint_id"),
                     "waypoint.step": attrs.get("step"),
                     "waypoint.checkpoint.source": attrs.get("source")}
        else:
            event = {f"waypoint.{key}": value for key, value in attrs.items()}
        handle.span.add_event(name, _clean(event))

    def enter(self, scope: Scope, handle: Any) -> Any:
        if handle is None:
            return None
        return self._context.attach(self._trace.set_span_in_context(handle.span))

    def leave(self, token: Any) -> None:
        if token is not None:
            self._context.detach(token)

    def checkpoint_notes(self, scope: Scope, handle: Any) -> Mapping[str, Any] | None:
        if handle is None or scope.kind != "run":
            return None
        if handle.traceparent is None:
            ctx = handle.span.get_span_context()
            if not ctx.is_valid:
                return None
            handle.traceparent = (f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-"
                                  f"{int(ctx.trace_flags):02x}")
        return {"trace": {"traceparent": handle.traceparent}}

    # -- helpers ----------------------------------------------------------------------------

    def _parent(self, scope: Scope) -> Any:
        """The context of the nearest enclosing scope this observer has a span for; None
        (the current context) for a root run or a scope opened outside any."""
        parent = scope.parent
        inner = _INNER.get()
        if inner is not None and inner is not scope and parent is not None and _within(
                inner, parent):
            parent = inner
        while parent is not None:
            handle = parent.handle(self)
            if handle is not None:
                return self._trace.set_span_in_context(handle.span)
            parent = parent.parent
        return None

    def _resume_links(self, resumes: Any) -> list[Any] | None:
        """A link to the span of the run that left the checkpoint this run resumes."""
        header = resumes.get("traceparent") if isinstance(resumes, Mapping) else None
        found = _TRACEPARENT.match(header) if isinstance(header, str) else None
        if found is None or found.group(1) == "ff":
            return None
        trace_id, span_id = int(found.group(2), 16), int(found.group(3), 16)
        if not trace_id or not span_id:
            return None
        from opentelemetry.trace import TraceFlags

        ctx = self._span_context(trace_id, span_id, is_remote=True,
                                 trace_flags=TraceFlags(int(found.group(4), 16)))
        return [self._link(ctx, {"waypoint.link": "resumes"})]

    def _fail(self, span: Any, error: BaseException | None, description: str | None = None,
              error_type: str | None = None) -> None:
        if error is not None:  # an error's text may hold a key or a URL's password
            span.record_exception(error, attributes={
                "exception.message": redact(str(error)),
                "exception.stacktrace": redact("".join(traceback.format_exception(error)))})
            error_type = error_type or type(error).__qualname__
            description = description or f"{type(error).__name__}: {error}"
        span.set_attribute("error.type", error_type or "_OTHER")
        span.set_status(self._status(self._error, cut(redact(description or ""), _MAX_SHORT)))

    def _finish(self, scope: Scope, span: Any) -> None:
        kind, attrs = scope.kind, scope.attrs
        if kind == "run":
            status = attrs.get("status")
            _set(span, {"waypoint.status": status, "waypoint.checkpoint_id":
                        attrs.get("checkpoint_id"), "waypoint.steps": attrs.get("steps")})
            if status == "error" or (scope.error is not None and status is None):
                self._fail(span, scope.error)
        elif kind == "attempt":
            self._finish_attempt(scope, span)
        elif kind == "model":
            self._finish_model(scope, span)
        elif kind == "tool":
            outcome = _outcome(attrs.get("outcome"))
            cost = attrs.get("cost_estimate")
            _set(span, {"waypoint.outcome": outcome, "waypoint.tool.attempts":
                        attrs.get("attempts"), "waypoint.cost_usd":
                        cost if outcome in ("ok", "error") else None})
            if outcome == "error":
                self._fail(span, scope.error)
            elif outcome == "ok" and self.capture_content and "result" in attrs:
                span.set_attribute("gen_ai.tool.call.result", json_content(attrs["result"]))
        elif kind == "effect":
            _set(span, {"waypoint.effect.key": attrs.get("key"), "waypoint.effect.status":
                        attrs.get("status"), "waypoint.outcome": attrs.get("outcome")})
            if scope.error is not None:
                self._fail(span, scope.error)
        elif kind == "compensation":
            status = attrs.get("outcome")
            _set(span, {"waypoint.compensation.status": status, "waypoint.compensation.key":
                        attrs.get("key"), "waypoint.compensation.attempts": attrs.get("attempts")})
            if scope.error is not None:
                self._fail(span, scope.error)
            elif status == "failed":
                text = str(attrs.get("error_text") or "")
                head = text.split(":", 1)[0]
                self._fail(span, None, text, head if head.isidentifier() else None)
        elif scope.error is not None:
            self._fail(span, scope.error)

    def _finish_attempt(self, scope: Scope, span: Any) -> None:
        attrs = scope.attrs
        outcome = attrs.get("outcome")
        delay = attrs.get("retry_delay")
        _set(span, {"waypoint.outcome": outcome, "waypoint.error.kind": attrs.get("error_kind"),
                    "waypoint.retry_delay_s": delay,
                    "waypoint.timeout": True if attrs.get("timeout") else None})
        if outcome in ("retry", "error") or (scope.error is not None and outcome is None):
            self._fail(span, scope.error)
        if outcome == "retry":
            span.add_event("retry", _clean({"waypoint.retry_delay_s": delay,
                                            "waypoint.attempt": attrs.get("attempt")}))

    def _finish_model(self, scope: Scope, span: Any) -> None:
        attrs = scope.attrs
        outcome = attrs.get("outcome")
        reason = attrs.get("finish_reason")
        _set(span, {
            "waypoint.outcome": outcome,
            "gen_ai.usage.input_tokens": attrs.get("input_tokens"),
            "gen_ai.usage.output_tokens": attrs.get("output_tokens"),
            "gen_ai.response.finish_reasons": [str(reason)] if reason is not None else None,
            "gen_ai.response.id": attrs.get("response_id"),
            "gen_ai.response.model": attrs.get("response_model"),
            "waypoint.cost_usd": attrs.get("cost_usd"),  # None: unknown, never 0
            "waypoint.cached": True if attrs.get("cached") else None,
        })
        if outcome == "error" or (scope.error is not None and outcome is None):
            self._fail(span, scope.error)
        message = attrs.get("message")
        if self.capture_content and message is not None:
            span.set_attribute("gen_ai.output.messages",
                               fit_messages([message], output=True, reason=reason))

    def _capture_start(self, scope: Scope, span: Any) -> None:
        attrs = scope.attrs
        if scope.kind == "model":
            messages = getattr(attrs.get("request"), "messages", None)
            if messages:
                span.set_attribute("gen_ai.input.messages", fit_messages(list(messages)))
        elif scope.kind == "tool" and "arguments" in attrs:
            span.set_attribute("gen_ai.tool.call.arguments", json_content(attrs["arguments"]))


def _within(scope: Scope, ancestor: Scope) -> bool:
    """Whether `ancestor` is `scope` or encloses it."""
    current: Scope | None = scope
    while current is not None:
        if current is ancestor:
            return True
        current = current.parent
    return False


# -- attributes at start --------------------------------------------------------------------


def _who(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The run identity every span inside a run carries."""
    return {"waypoint.thread_id": attrs.get("thread_id"), "waypoint.run_id": attrs.get("run_id"),
            "waypoint.checkpoint_ns": attrs.get("checkpoint_ns") or None,
            "waypoint.tenant": attrs.get("tenant"), "waypoint.user_id": attrs.get("user_id"),
            "waypoint.assistant_id": attrs.get("assistant_id")}


def _run_start(scope: Scope) -> tuple[str, dict[str, Any]]:
    attrs = scope.attrs
    graph = str(attrs.get("graph") or scope.name)
    return f"invoke_agent {graph}", {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": graph,
        "gen_ai.agent.id": attrs.get("assistant_id"),
        "gen_ai.conversation.id": attrs.get("thread_id"),
        "waypoint.graph": graph, **_who(attrs), "waypoint.resumed": bool(attrs.get("resumed")),
        "waypoint.resumes_checkpoint_id": attrs.get("resumes_checkpoint_id")}


def _attempt_start(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {"waypoint.node": attrs.get("node"), "waypoint.step": attrs.get("step"),
            "waypoint.task_id": attrs.get("task_id"), "waypoint.attempt": attrs.get("attempt"),
            "waypoint.thread_id": attrs.get("thread_id"), "waypoint.run_id": attrs.get("run_id"),
            "waypoint.checkpoint_ns": attrs.get("checkpoint_ns") or None,
            "waypoint.parent_checkpoint_id": attrs.get("parent_checkpoint_id"),
            "waypoint.send": True if attrs.get("send") else None}


def _model_start(scope: Scope) -> tuple[str, dict[str, Any]]:
    attrs = scope.attrs
    model = str(attrs.get("model") or scope.name)
    request = attrs.get("request")
    stop = getattr(request, "stop", None)
    values = {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": attrs.get("provider"),
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": attrs.get("max_tokens"),
        "gen_ai.request.temperature": attrs.get("temperature"),
        "gen_ai.request.seed": getattr(request, "seed", None),
        "gen_ai.request.stop_sequences": [str(s) for s in stop] if stop else None,
        "gen_ai.output.type": "json" if getattr(request, "response_format", None) else None,
        "gen_ai.conversation.id": attrs.get("thread_id"),
        **_server(attrs.get("server_address")), **_who(attrs),
        "waypoint.node": attrs.get("node"), "waypoint.stream": bool(attrs.get("stream")),
    }
    return f"chat {model}", values


def _tool_start(scope: Scope) -> tuple[str, dict[str, Any]]:
    attrs = scope.attrs
    tool = str(attrs.get("tool") or scope.name)
    description = attrs.get("description")
    return f"execute_tool {tool}", {
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool,
        "gen_ai.tool.call.id": attrs.get("call_id"), "gen_ai.tool.type": "function",
        "gen_ai.tool.description": cut(str(description), _MAX_SHORT) if description else None,
        "gen_ai.conversation.id": attrs.get("thread_id"), **_who(attrs),
        "waypoint.node": attrs.get("node")}


def _approval(attrs: Mapping[str, Any]) -> dict[str, Any]:
    actions = attrs.get("actions")
    return {"waypoint.node": attrs.get("node"), "waypoint.approval.id": attrs.get("approval_id"),
            "waypoint.approval.status": attrs.get("status"),
            "waypoint.approval.assignee": attrs.get("assignee"),
            "waypoint.approval.deadline": attrs.get("deadline"),
            "waypoint.approval.actions": [str(a) for a in actions] if actions else None,
            "waypoint.approval.action": attrs.get("action"),
            "waypoint.approval.decided_by": attrs.get("decided_by"),
            "waypoint.approval.timed_out": attrs.get("timed_out"),
            "waypoint.approval.waited_s": attrs.get("waited_s")}


def _server(address: Any) -> dict[str, Any]:
    """server.address / server.port from an endpoint URL: host and port only (never its
    user info, path or query)."""
    if not isinstance(address, str) or not address:
        return {}
    try:
        parts = urlsplit(address if "//" in address else f"//{address}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return {}
    if not host:
        return {}
    if port is None:
        port = {"https": 443, "http": 80}.get(parts.scheme)
    return {"server.address": host, "server.port": port}


def _outcome(value: Any) -> str | None:
    """A tool's outcome: ok, error, or the name of the exception that stopped it."""
    if value is None:
        return None
    text = str(value)
    if "Interrupt" in text or text in ("GraphBubbleUp", "ParentCommand"):
        return "interrupted"
    if "Cancelled" in text:
        return "cancelled"
    return text


_PRIMITIVE = (str, bool, int, float)


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    """Attribute values OpenTelemetry accepts: None left out, others made text."""
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, _PRIMITIVE):
            clean[key] = value
        elif isinstance(value, (list, tuple)):
            clean[key] = [v if isinstance(v, _PRIMITIVE) else str(v) for v in value]
        else:
            clean[key] = str(value)
    return clean


def _set(span: Any, values: Mapping[str, Any]) -> None:
    clean = _clean(values)
    if clean:
        span.set_attributes(clean)


# -- registering ----------------------------------------------------------------------------

_LOCK = threading.Lock()
_OBSERVER: TracingObserver | None = None


def capture_from_env() -> bool:
    """Whether OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT asks for content."""
    return os.environ.get(CAPTURE_ENV, "").strip().lower() in _CAPTURE_ON


def instrument(tracer_provider: Any = None, *, capture_content: bool | None = None) -> None:
    """Trace every run of this process: spans go to `tracer_provider` (default: the global
    one). `capture_content` (default: the environment variable) records prompts,
    completions, tool arguments and results. Calling it again with the same arguments
    does nothing; with others, it replaces the previous setup."""
    try:
        import opentelemetry.trace  # noqa: F401
    except ImportError as exc:
        raise ImportError("waypoint tracing needs OpenTelemetry: pip install "
                          "'waypoint[otel]'") from exc
    global _OBSERVER
    capture = capture_from_env() if capture_content is None else bool(capture_content)
    with _LOCK:
        current = _OBSERVER
        if current is not None and capture == current.capture_content and (
                tracer_provider is None or tracer_provider is current.provider):
            return
        observer = TracingObserver(tracer_provider, capture)
        if current is not None:
            observers.remove_observer(current)
        observers.add_observer(observer)
        _OBSERVER = observer


def uninstrument() -> None:
    """Stop tracing runs (spans already open still end)."""
    global _OBSERVER
    with _LOCK:
        if _OBSERVER is not None:
            observers.remove_observer(_OBSERVER)
            _OBSERVER = None


def is_instrumented() -> bool:
    return _OBSERVER is not None


def configure_from_env() -> bool:
    """Set up tracing from the OTEL_* environment variables; see `otel_setup`."""
    from .otel_setup import configure_from_env as configure

    return configure()


# -- trace context across processes ---------------------------------------------------------


@contextmanager
def continue_trace(carrier: Mapping[str, str] | None) -> Iterator[None]:
    """Run the block in the trace a W3C carrier (`{"traceparent": ..., "tracestate": ...}`,
    e.g. an HTTP request's headers) names, so a run started inside is its child. A no-op
    for an empty carrier or without OpenTelemetry."""
    if not carrier:
        yield
        return
    try:
        from opentelemetry import context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        yield
        return
    headers = {str(k).lower(): str(v) for k, v in carrier.items() if v is not None}
    token = context.attach(TraceContextTextMapPropagator().extract(headers))
    try:
        yield
    finally:
        context.detach(token)


def current_carrier() -> dict[str, str]:
    """The current trace context as W3C headers ({} when there is none)."""
    try:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        return {}
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier


@contextmanager
def traced(name: str, **attributes: Any) -> Iterator[None]:
    """One span around a block — a script's session of several runs (a run, a person's
    decision, the resumed run) — so they share one trace. A no-op unless tracing is on."""
    observer = _OBSERVER
    if observer is None:
        yield
        return
    with observer._tracer.start_as_current_span(name, attributes=_clean(attributes)):
        yield
