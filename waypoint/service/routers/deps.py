"""What every route handler depends on: the running service and the caller."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request

from ..auth import current_identity
from ..context import Service
from ..input_limits import check_request_text


async def get_service(request: Request) -> Service:
    """(async: FastAPI runs a plain function dependency in a thread pool, a hand-off on
    every request.)"""
    return request.app.state.service


# What every API router declares: the caller is authenticated first (401 before anything
# else), then its path and query values are ones the stores can hold.
GUARDS = [Depends(current_identity), Depends(check_request_text)]


def select_fields(items: list[dict[str, Any]], select: list[str] | None) -> list[dict[str, Any]]:
    """Keep only the requested fields of each item (the Agent Server's `select`)."""
    if not select:
        return items
    return [{k: v for k, v in item.items() if k in select} for item in items]


TraceCarrier = dict[str, str] | None


async def trace_carrier(request: Request) -> TraceCarrier:
    """The W3C trace context a client sent with a new run (`traceparent`, `tracestate`):
    kept with the run, so the worker that executes it continues the client's trace."""
    parent = request.headers.get("traceparent")
    if not parent:
        return None
    carrier = {"traceparent": parent[:128]}
    state = request.headers.get("tracestate")
    if state:
        carrier["tracestate"] = state[:512]
    return carrier
