"""Tracing set up by the standard OTEL_* environment variables, with no code.

`import waypoint` calls `configure_from_env()` when one of the trace variables is set:

- `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: export with OTLP;
- `OTEL_TRACES_EXPORTER`: `otlp` (the default when an endpoint is set), `console`, or
  both (`otlp,console`); `none` turns traces off;
- `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf`
  (default) or `grpc`;
- `OTEL_SERVICE_NAME` (default "waypoint"), `OTEL_RESOURCE_ATTRIBUTES`,
  `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*`, and the exporter's own
  variables (headers, timeout, certificates) are read by the OpenTelemetry SDK itself;
- `OTEL_SDK_DISABLED=true` turns everything off;
- `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` records prompts and answers.

When the process already has an SDK TracerProvider (set by the application or by
`opentelemetry-instrument`), it is used as it is; otherwise one is made with a batch
processor, installed as the global provider and shut down (flushed) at exit.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping

from .tracing import instrument

log = logging.getLogger("waypoint.observe")

TRACE_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                   "OTEL_TRACES_EXPORTER")

_LOCK = threading.Lock()
_PROVIDER = None  # the provider this module made, if it made one


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = _exporters(env)
    if exporters is not None:
        return bool(exporters)
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def _exporters(env: Mapping[str, str]) -> list[str] | None:
    """The exporters OTEL_TRACES_EXPORTER names (None: unset; []: none)."""
    raw = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not raw:
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    return [n for n in names if n != "none"]


def configure_from_env() -> bool:
    """Set up tracing as the environment asks; returns whether tracing is on. Safe to call
    more than once."""
    if not wanted():
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        log.warning("OTEL_* variables ask for traces but OpenTelemetry is not installed: "
                    "pip install 'waypoint[otel]'")
        return False
    with _LOCK:
        current = trace.get_tracer_provider()
        if not isinstance(current, TracerProvider):
            provider = _make_provider()
            if provider is None:
                return False
            trace.set_tracer_provider(provider)
            if trace.get_tracer_provider() is not provider:  # someone else's won the race
                provider.shutdown()
    instrument()
    return True


def _make_provider():  # type: ignore[no-untyped-def]
    global _PROVIDER
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporters = []
    for name in _exporters(os.environ) or ["otlp"]:
        exporter = _exporter(name)
        if exporter is not None:
            exporters.append(exporter)
    if not exporters:
        return None
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "waypoint"}))
    # The sampler comes from OTEL_TRACES_SAMPLER(_ARG); shutdown_on_exit registers an
    # atexit hook that flushes what the batch processor still holds.
    provider = TracerProvider(resource=resource, shutdown_on_exit=True)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    _PROVIDER = provider
    return provider


def _exporter(name: str):  # type: ignore[no-untyped-def]
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        log.warning("OTEL_TRACES_EXPORTER=%s is not supported by waypoint (otlp, console)",
                    name)
        return None
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
    protocol = protocol.strip().lower()
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )

            return GrpcExporter()
        if protocol != "http/protobuf":
            log.warning("OTLP protocol %r is not supported; using http/protobuf", protocol)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    except ImportError:
        log.warning("the OTLP exporter for %s is not installed: pip install 'waypoint[otel]'",
                    protocol)
        return None
