"""`waypoint worker`: a process that only runs runs, beside API processes on PostgreSQL.

Any number of `waypoint serve --postgres URL --workers 0` (the API) and `waypoint worker
--postgres URL` (the runs) share one PostgreSQL: the API accepts and stores runs, workers
claim them under leases, and a run whose worker died is taken over by another from its
last checkpoint once the lease lapses. Streams reach API processes through the stored
events; a cancel marked by an API process reaches the worker within about half a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import typer

from ..observe.logs import configure as configure_logs
from .serve import console, service_settings


def worker(
    config: Path | None = typer.Option(None, "--config", "-c", help="The same langgraph.json "
                                       "-style file the API processes use."),
    graph: list[str] = typer.Option([], "--graph", "-g", help="name=module:attr or "
                                    "name=./file.py:attr (repeatable)."),
    postgres: str | None = typer.Option(None, "--postgres", help="postgresql:// URL of the "
                                        "shared database (or waypoint.postgres in the config)."),
    concurrency: int | None = typer.Option(None, "--concurrency", help="Runs executed at once "
                                           "in this process (default: the config's workers)."),
    drain_timeout: float | None = typer.Option(None, "--drain-timeout", help="Seconds a "
                                               "SIGTERM waits for runs to reach a step "
                                               "boundary before they are requeued."),
    health_port: int | None = typer.Option(None, "--health-port", help="Serve GET /ok "
                                           "(liveness) and /ready (503 while draining) on "
                                           "this port, for probes (0 picks a free one)."),
    health_host: str = typer.Option("127.0.0.1", "--health-host", help="Address of the "
                                    "health port (0.0.0.0 in a container)."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error."),
    log_format: str = typer.Option("text", "--log-format", help="text, or json: one object "
                                   "per line with run, thread and node ids."),
) -> None:
    """Run queued runs from PostgreSQL (no HTTP); SIGTERM drains."""
    try:
        from ..service.config import ConfigError
    except ImportError as exc:
        raise typer.BadParameter(f"the worker needs the server extra: pip install "
                                 f"'waypoint[server]' ({exc.name} is missing)") from None
    settings = service_settings(config, graph, postgres=postgres, workers=concurrency,
                                drain_timeout=drain_timeout)
    if not settings.postgres:
        console.print("[red]error:[/red] a worker shares the run queue with the API through "
                      "PostgreSQL: pass --postgres URL (an embedded SQLite server runs its "
                      "own workers: waypoint serve)")
        raise typer.Exit(2)
    if not settings.workers:
        console.print("[red]error:[/red] --concurrency must be at least 1")
        raise typer.Exit(2)
    configure_logs(log_level, log_format)
    sys.path.insert(0, str(settings.base_dir))
    try:
        asyncio.run(_work(settings, health_host, health_port, log_level))
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


async def _work(settings: object, health_host: str, health_port: int | None,
                log_level: str) -> None:
    from ..service.context import open_service

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        service = await stack.enter_async_context(
            open_service(settings, start_workers=True))  # type: ignore[arg-type]
        health = ""
        if health_port is not None:  # entered after the service: up until its drain ends
            url = await stack.enter_async_context(
                _health_server(service, health_host, health_port, log_level))
            health = f", health on {url}"
        names = ", ".join(service.settings.graphs)
        console.print(f"waypoint worker {service.pool.worker_id if service.pool else '?'}: "
                      f"{service.settings.workers} run(s) at once, graphs {names}{health}")
        await stop.wait()
        console.print("draining: runs stop at their next step and are requeued")
        service.closing.set()  # /ready answers 503 from now on
        if service.pool is not None:
            await service.pool.drain(service.settings.drain_timeout)


@contextlib.asynccontextmanager
async def _health_server(service: object, host: str, port: int,
                         log_level: str) -> AsyncIterator[str]:
    """/ok and /ready on their own port, in this process's event loop."""
    import uvicorn

    from ..service.app import create_health_app

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # the worker's own handlers drain
            yield

    config = uvicorn.Config(create_health_app(service), host=host, port=port,
                            log_level=log_level.lower(), access_log=False, lifespan="off")
    server = _Server(config)
    task = asyncio.create_task(server.serve(), name="waypoint-health")
    while not server.started:
        if task.done():
            await task  # raises what stopped it (port in use...)
            raise RuntimeError(f"the health server on {host}:{port} did not start")
        await asyncio.sleep(0.02)
    sock = server.servers[0].sockets[0]
    bound_host, bound_port = sock.getsockname()[:2]
    try:
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.should_exit = True
        await task
