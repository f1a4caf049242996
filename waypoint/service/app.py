"""`create_app(settings)`: the Agent Server-compatible API as a FastAPI application."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from . import errors
from .config import Settings
from .context import open_service
from .routers import (
    approvals,
    assistants,
    crons,
    meta,
    runs,
    store,
    thread_stream,
    threads,
    ui,
    ui_data,
    usage,
)

# Local UIs (agent-chat-ui on :3000, a Vite dev server...) may call a server that has no
# CORS settings; any other origin must be configured.
LOCAL_ORIGINS = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"


class RequestGuard:
    """Refuses bodies over the size limit (413) and reads every body as JSON whatever its
    content type says (the API takes nothing else; browser proxies such as agent-chat-ui's
    drop the header, and `curl -d` sends a form type)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH", "DELETE"):
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"]]
        length = next((v for k, v in headers if k == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await _refuse(send, self.max_body_bytes)
            return
        kind = next((v for k, v in headers if k == b"content-type"), b"").split(b";")[0]
        if kind.strip().lower() not in (b"application/json",):
            headers = [(k, v) for k, v in headers if k != b"content-type"]
            headers.append((b"content-type", b"application/json"))
            scope = {**scope, "headers": headers}
        seen = 0
        limit = self.max_body_bytes

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise errors.TooLarge(f"request body is over the limit of {limit} bytes")
            return message

        await self.app(scope, limited, send)


async def _refuse(send: Send, limit: int) -> None:
    body = f'{{"detail":"request body is over the limit of {limit} bytes"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_health_app(service: Any) -> FastAPI:
    """`/ok` and `/ready` for a worker process's probes, and its `/metrics` (with an
    admin key); it serves no API."""
    app = FastAPI(title="waypoint worker", version=__version__, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.service = service
    errors.install(app)
    app.include_router(meta.health)
    app.include_router(meta.worker_metrics)
    return app


def create_app(settings: Settings, *, start_workers: bool = True) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with open_service(settings, start_workers=start_workers) as service:
            app.state.service = service
            yield {}

    app = FastAPI(title="waypoint", version=__version__, lifespan=lifespan,
                  description="Durable agent workflows behind LangGraph's Agent Server API.")
    errors.install(app)
    app.include_router(meta.health)
    app.include_router(meta.router)
    for module in (assistants, threads, thread_stream, runs, crons, store, approvals, usage):
        app.include_router(module.router)
    app.include_router(ui_data.router)  # what the web UI needs beyond the Agent Server API
    app.include_router(ui.router)  # the web UI at /ui (its assets need no key)
    cors = settings.cors
    if cors is not None:
        app.add_middleware(CORSMiddleware, allow_origins=cors.allow_origins,
                           allow_origin_regex=cors.allow_origin_regex,
                           allow_methods=cors.allow_methods, allow_headers=cors.allow_headers,
                           allow_credentials=cors.allow_credentials,
                           expose_headers=cors.expose_headers, max_age=cors.max_age)
    else:
        app.add_middleware(CORSMiddleware, allow_origin_regex=LOCAL_ORIGINS,
                           allow_methods=["*"], allow_headers=["*"],
                           expose_headers=["content-location", "location"])
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes)
    return app
