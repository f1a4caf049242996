"""The running service: its stores, graphs, queue and workers, opened and closed together.

`open_service` is what the app's lifespan enters: it opens the checkpointer and the
service tables in one database (a SQLite file, or PostgreSQL), migrates them, loads the
graphs, makes each graph's assistant, starts the workers and the background loops
(event log, crons, timers, TTL sweep), and on exit drains the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoint.base import BaseCheckpointSaver
from ..engine import observers
from .auth import ApiKey, Authenticator, keys_from_env, load_function
from .config import ConfigError, Settings, store_index_config
from .graphs import GraphLoadError, GraphRegistry, load_graph
from .metrics import service_metrics
from .runs.broker import Broker
from .runs.webhooks import WebhookSender
from .runs.worker import WorkerPool
from .tables import assistants as assistant_table
from .tables import runs as run_table
from .tables import threads as thread_table
from .tables.db import Database, PostgresDatabase, SqliteDatabase
from .tables.runs import Run
from .tables.schema import migrate

log = logging.getLogger("waypoint.service")


@dataclass
class Service:
    settings: Settings
    db: Database
    saver: BaseCheckpointSaver
    store: Any
    graphs: GraphRegistry
    auth: Authenticator
    broker: Broker
    webhooks: WebhookSender
    pool: WorkerPool | None = None
    metrics: Any = None  # ServiceMetrics: what /metrics reports
    started_at: float = field(default_factory=time.time)
    background: list[asyncio.Task[None]] = field(default_factory=list)
    closing: asyncio.Event = field(default_factory=asyncio.Event)  # set when draining
    # Assistants by id, as read last; dropped when one changes (patch, delete, latest).
    assistants: dict[str, Any] = field(default_factory=dict)
    _spawned: set[Any] = field(default_factory=set)

    async def assistant(self, assistant_id: str, who: Any | None) -> Any:
        """An assistant by id (None if there is none, or `who` may not see it); `who` None
        sees every tenant's."""
        found = self.assistants.get(assistant_id)
        if found is None:
            found = await self.db.aread(lambda tx: assistant_table.get(tx, assistant_id, None))
            if found is None:
                return None
            self.assistants[assistant_id] = found
        if who is not None and found.tenant is not None and found.tenant != who.tenant \
                and not who.is_admin:
            return None
        return found

    def forget_assistant(self, assistant_id: str) -> None:
        self.assistants.pop(assistant_id, None)

    def spawn(self, work: Any) -> None:
        """Run a coroutine on its own, kept alive until it ends (errors are logged)."""
        task = asyncio.ensure_future(work)
        self._spawned.add(task)

        def done(finished: asyncio.Future[Any]) -> None:
            self._spawned.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                log.error("background work failed", exc_info=finished.exception())

        task.add_done_callback(done)

    def notify_queue(self) -> None:
        if self.pool is not None:
            self.pool.notify()

    async def stop_run(self, run: Run, action: str) -> None:
        """Stop an active run (here at once; elsewhere its worker sees the mark)."""
        if self.pool is not None and self.pool.stop(run.run_id, action):
            return
        if run.status == "pending":  # never started: it ends here
            if action == "rollback":
                await self.db.arun(lambda tx: run_table.delete(tx, run.run_id))
            else:
                await self.db.arun(lambda tx: run_table.finish(tx, run.run_id, "interrupted"))
            await self.refresh_thread(run.thread_id, run.graph_id)

    async def refresh_thread(self, thread_id: str, graph_id: str | None) -> None:
        """Recompute a thread's index card (after a run ended outside a worker)."""
        from .state import thread_summary

        graph = self.graphs.get_static(graph_id) if graph_id else None
        summary = await thread_summary(self, thread_id, graph)

        def record(tx: Any) -> None:
            busy = run_table.active_on_thread(tx, thread_id)
            thread_table.record_state(tx, thread_id, status="busy" if busy else
                                      summary["status"], values=summary["values"],
                                      interrupts=summary["interrupts"], error=None)

        await self.db.arun(record)

    async def rollback(self, run: Run) -> None:
        """Undo a run: its checkpoints go, the thread returns to where it was, the run
        row is deleted (the Agent Server's `rollback`)."""
        await asyncio.to_thread(rewind_thread, self.saver, run)
        await self.db.arun(lambda tx: run_table.delete(tx, run.run_id))
        await self.refresh_thread(run.thread_id, run.graph_id)

    async def delete_thread_data(self, *thread_ids: str) -> None:
        """Threads and everything of them: runs, events, checkpoints and records."""
        def drop(tx: Any) -> None:
            for thread_id in thread_ids:
                run_table.delete_for_thread(tx, thread_id)
                thread_table.delete(tx, thread_id)

        await self.db.arun(drop)
        await asyncio.to_thread(self.saver.delete_threads, list(thread_ids))


def rewind_thread(saver: BaseCheckpointSaver, run: Run) -> None:
    """Remove the checkpoints `run` wrote, so the thread's head is what it was before."""
    config = {"configurable": {"thread_id": run.thread_id, "checkpoint_ns": ""}}
    written = list(saver.list(config, filter={"run_id": run.run_id}))
    if not written:
        return
    parent = written[-1].parent_config
    before = (parent or {}).get("configurable", {}).get("checkpoint_id")
    if before is None:  # the run began the thread: nothing was there before it
        saver.delete_thread(run.thread_id)
    else:
        saver.rewind(run.thread_id, before)


# -- opening ------------------------------------------------------------------------------


class _FileLock:
    """One server per SQLite file: a second one would run the same queue twice."""

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self._fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise ConfigError(f"another waypoint server is using {self.path.with_suffix('')}; "
                              f"stop it or pass another --db") from None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _authenticator(settings: Settings) -> Authenticator:
    keys = [ApiKey(k.key, k.tenant, k.role, k.user_id) for k in settings.api_keys]
    keys += keys_from_env()
    function = load_function(settings.auth_function) if settings.auth_function else None
    return Authenticator(keys, function)


def load_graphs(settings: Settings) -> dict[str, Any]:
    """The configured graphs, imported; ConfigError names the one that failed."""
    loaded = {}
    for graph_id, target in settings.graphs.items():
        try:
            loaded[graph_id] = load_graph(graph_id, target, settings.base_dir)
        except GraphLoadError as exc:
            raise ConfigError(str(exc)) from exc
    return loaded


@contextlib.asynccontextmanager
async def open_service(settings: Settings, *, start_workers: bool = True
                       ) -> AsyncIterator[Service]:
    for key, value in settings.env.items():
        os.environ.setdefault(key, value)
    auth = _authenticator(settings)
    graphs = load_graphs(settings)
    async with contextlib.AsyncExitStack() as stack:
        lock: _FileLock | None = None
        if settings.postgres:
            from ..checkpoint.postgres import PostgresSaver

            saver = stack.enter_context(PostgresSaver.from_conn_string(settings.postgres))
            db: Database = PostgresDatabase(settings.postgres)
            store = stack.enter_context(_open_store(settings))
        else:
            from ..checkpoint.sqlite import SqliteSaver

            path = Path(settings.db)
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = _FileLock(path)
            lock.acquire()
            stack.callback(lock.release)
            saver = stack.enter_context(SqliteSaver.from_conn_string(str(path)))
            db = SqliteDatabase(saver.run_write, str(path), saver.arun_write)
            store = stack.enter_context(_open_store(settings))
        stack.callback(db.close)
        await asyncio.to_thread(migrate, db)
        registry = GraphRegistry(graphs, saver, store, settings.graph_versions)
        await db.arun(lambda tx: [assistant_table.ensure_system(tx, g) for g in graphs])
        webhooks = WebhookSender(settings.webhook_attempts)
        service = Service(settings, db, saver, store, registry, auth, Broker(), webhooks)
        service.metrics = service_metrics(service)
        if start_workers and settings.workers:
            observers.add_observer(service.metrics.engine)  # steps, model calls, cost
            stack.callback(observers.remove_observer, service.metrics.engine)
            service.pool = WorkerPool(service, settings.workers)
            await service.pool.start(recover_all=not settings.postgres)
        from .background import start_background, write_events

        start_background(service)
        if settings.postgres:  # runs executed by other processes: follow them promptly
            from .runs import notices

            service.background.append(asyncio.create_task(notices.listen(
                settings.postgres, (notices.RUN_EVENTS,),
                lambda _channel, run_id: service.broker.poke(run_id)),
                name="waypoint-follow-notices"))
        try:
            yield service
        finally:
            service.closing.set()
            if service.pool is not None:
                await service.pool.drain(settings.drain_timeout)
            for task in service.background:
                task.cancel()
            for task in service.background:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await write_events(service)
            await webhooks.close()


@contextlib.contextmanager
def _open_store(settings: Settings) -> Iterator[Any]:
    """The long-term memory store, in the same database as everything else."""
    ttl = {"default_ttl": settings.store_ttl_minutes, "refresh_on_read": True} \
        if settings.store_ttl_minutes else None
    index = store_index_config(settings)  # semantic search, when the config asks for it
    if settings.postgres:
        from ..store.postgres import PostgresStore

        with PostgresStore.from_conn_string(settings.postgres, ttl=ttl, index=index) as store:
            yield store
    else:
        from ..store.sqlite import SqliteStore

        with SqliteStore.from_conn_string(str(settings.db), ttl=ttl, index=index) as store:
            yield store
