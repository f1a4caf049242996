"""`waypoint worker`: a process that only runs runs, beside API processes on PostgreSQL.

Any number of `waypoint serve --postgres URL --workers 0` (the API) and `waypoint worker
--postgres URL` (the runs) share one PostgreSQL: the API accepts and stores runs, workers
claim them under leases, and a run whose worker died is taken over by another from its
last checkpoint once the lease lapses. Streams reach API processes through the stored
events; a cancel marked by an API process reaches the worker within about half a second.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import typer

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
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error."),
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
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    sys.path.insert(0, str(settings.base_dir))
    try:
        asyncio.run(_work(settings))
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


async def _work(settings: object) -> None:
    from ..service.context import open_service

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with open_service(settings, start_workers=True) as service:  # type: ignore[arg-type]
        names = ", ".join(service.settings.graphs)
        console.print(f"waypoint worker {service.pool.worker_id if service.pool else '?'}: "
                      f"{service.settings.workers} run(s) at once, graphs {names}")
        await stop.wait()
        console.print("draining: runs stop at their next step and are requeued")
