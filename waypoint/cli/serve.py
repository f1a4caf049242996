"""`waypoint serve`: the Agent Server-compatible API over HTTP (needs `waypoint[server]`)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from ..observe.logs import configure as configure_logs

console = Console(stderr=True, soft_wrap=True)


def service_settings(config: Path | None, graph: list[str], **flags: Any) -> Any:
    """The service's settings from a config file and flags, or exit 2 saying what is
    wrong (shared by `serve` and `worker`: the same config runs both)."""
    from ..service.config import ConfigError, load_settings, parse_graph_flags

    try:
        settings = load_settings(config, graphs=parse_graph_flags(graph) if graph else None,
                                 **flags)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if not settings.graphs:
        console.print("[red]error:[/red] no graphs: pass --config langgraph.json or "
                      "--graph name=module:attr")
        raise typer.Exit(2)
    return settings


def _loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    config: Path | None = typer.Option(None, "--config", "-c", help="A langgraph.json-style "
                                       "file: graphs, env, http.cors, waypoint settings."),
    graph: list[str] = typer.Option([], "--graph", "-g", help="name=module:attr or "
                                    "name=./file.py:attr (repeatable)."),
    db: Path | None = typer.Option(None, "--db", help="SQLite file for everything (default "
                                   ".waypoint/server.db)."),
    postgres: str | None = typer.Option(None, "--postgres", help="postgresql:// URL: keep "
                                        "everything in PostgreSQL instead."),
    host: str | None = typer.Option(None, "--host", help="Address to bind (default "
                                    "127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="Port (default 2024; 0 picks a free "
                                    "one)."),
    workers: int | None = typer.Option(None, "--workers", help="Runs executed at once in "
                                       "this process (0: API only)."),
    drain_timeout: float | None = typer.Option(None, "--drain-timeout", help="Seconds a "
                                               "SIGTERM waits for runs to reach a step "
                                               "boundary."),
    insecure_no_auth: bool = typer.Option(False, "--insecure-no-auth", help="Serve a "
                                          "non-loopback address without API keys."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error."),
    log_format: str = typer.Option("text", "--log-format", help="text, or json: one object "
                                   "per line with run, thread and node ids."),
) -> None:
    """Serve the graphs over LangGraph's Agent Server API, durably."""
    try:
        import uvicorn

        from ..service.app import create_app
        from ..service.config import ConfigError
    except ImportError as exc:
        raise typer.BadParameter(f"the server needs its extra: pip install 'waypoint[server]' "
                                 f"({exc.name} is missing)") from None
    settings = service_settings(
        config, graph, db=db, postgres=postgres, host=host, port=port, workers=workers,
        drain_timeout=drain_timeout, insecure_no_auth=insecure_no_auth or None)
    keyed = bool(settings.api_keys or settings.auth_function or os.environ.get(
        "WAYPOINT_API_KEYS"))
    if not keyed and not _loopback(settings.host) and not settings.insecure_no_auth:
        console.print(f"[red]error:[/red] refusing to serve {settings.host} without API keys: "
                      "set WAYPOINT_API_KEYS (key:tenant[:role],...) or waypoint.api_keys in "
                      "the config, or pass --insecure-no-auth")
        raise typer.Exit(2)
    configure_logs(log_level, log_format)
    sys.path.insert(0, str(settings.base_dir))
    app = create_app(settings)
    uv_config = uvicorn.Config(app, host=settings.host, port=settings.port,
                               log_level=log_level.lower(),
                               access_log=log_level.lower() == "debug",
                               timeout_graceful_shutdown=max(1, int(settings.drain_timeout) + 5),
                               lifespan="on")
    server = DrainingServer(uv_config, app, settings.drain_timeout)
    try:
        asyncio.run(server.serve())
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


class DrainingServer:
    """uvicorn, but a first SIGTERM/SIGINT drains the workers before HTTP shuts down."""

    def __init__(self, config: Any, app: Any, drain_timeout: float) -> None:
        import uvicorn

        outer = self

        class _Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                outer.exit_requested(sig, frame)

            async def startup(self, sockets: Any = None) -> None:
                await super().startup(sockets)
                if not self.should_exit:
                    outer.started(self)

        self.server = _Server(config)
        self.app = app
        self.drain_timeout = drain_timeout
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.server.serve()
        if not self.server.started:
            raise SystemExit(1)

    def started(self, server: Any) -> None:
        for sock in (server.servers[0].sockets if server.servers else []):
            host, port = sock.getsockname()[:2]
            url = f"http://{host}:{port}"
            graphs = ", ".join(self.app.state.service.graphs.ids())
            # One plain line (no wrapping): people read it, and tests parse the URL from it.
            print(f"waypoint serving {graphs} on {url} (API docs: {url}/docs, UI: {url}/ui)",
                  file=sys.stderr, flush=True)
            break

    def exit_requested(self, sig: int, frame: Any) -> None:
        base = super(type(self.server), self.server)
        if self._draining or self._loop is None:
            base.handle_exit(sig, frame)  # a second signal: stop now
            return
        self._draining = True
        self._loop.call_soon_threadsafe(
            lambda: asyncio.ensure_future(self._drain_then_exit(sig, frame)))

    async def _drain_then_exit(self, sig: int, frame: Any) -> None:
        service = getattr(self.app.state, "service", None)
        if service is not None:
            console.print(f"draining: runs stop at their next step (up to "
                          f"{self.drain_timeout:.0f} s) and are requeued")
            service.closing.set()
            if service.pool is not None:
                await service.pool.drain(self.drain_timeout)
        super(type(self.server), self.server).handle_exit(sig, frame)
