"""Driving a RunLoop: the sync runner (threads for parallel tasks) and the async one."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from ..errors import BudgetExceeded, GraphInterrupt, GraphRecursionError, RunTimeoutError
from ..types import Command
from . import observers
from .execute import arun_task, run_task
from .loop import RunLoop
from .resume import NO_RESUME
from .saga import compensate_run, has_compensations
from .task import Task


def _load(loop: RunLoop) -> tuple[Any, str | None]:
    saver = loop.saver
    if saver is None:
        return None, None
    saved = saver.get_tuple(loop.load_config())
    head = saver.head_id(str(loop.thread_id), loop.ns)
    return saved, head


async def _aload(loop: RunLoop) -> tuple[Any, str | None]:
    saver = loop.saver
    if saver is None:
        return None, None
    saved = await saver.aget_tuple(loop.load_config())
    head = await saver.ahead_id(str(loop.thread_id), loop.ns)
    return saved, head


def _run_step_sync(loop: RunLoop, todo: list[Task]) -> None:
    if len(todo) == 1:
        run_task(loop, todo[0])
        return
    executor = loop.executor()
    futures = [
        executor.submit(contextvars.copy_context().run, run_task, loop, task)
        for task in todo[1:]
    ]
    contextvars.copy_context().run(run_task, loop, todo[0])
    for future in futures:
        future.result()


def iter_sync(loop: RunLoop, loaded: tuple[Any, str | None] | None = None,
              resume: Any = NO_RESUME) -> Iterator[None]:
    """Run to the end, yielding after every committed super-step (for streaming)."""
    error: BaseException | None = None
    try:
        saved, head = loaded if loaded is not None else _load(loop)
        if observers.OBSERVERS:
            _open_run(loop, saved, resume)
        loop.begin(saved, head, resume)
        if loop.stopped is not None:
            raise loop.stopped
        loop.persist()
        while not loop.cancelled:
            tasks = loop.prepare()
            if tasks is None:
                break
            todo = [t for t in tasks if not t.done]
            if todo:
                _run_step_sync(loop, todo)
            going = loop.finish(tasks)
            if not going:
                loop.persist(final=True)
            else:
                loop.persist()
            yield
            if not going:
                break
        loop.persist(final=True)
        if loop.error is not None:
            _compensate(loop, loop.error)
            raise loop.error
    except BaseException as exc:
        error = exc
        if not isinstance(exc, Exception):
            _save_usage(loop)
            raise
        if loop.ops and loop.durability != "sync":  # keep what a deferred mode still holds
            loop.persist(final=True)
        if exc is not loop.error and isinstance(exc, _FAILS_RUN):
            _compensate(loop, exc)
        raise
    finally:
        loop.close()
        if loop.scope is not None:
            _close_run(loop, error)


async def arun(loop: RunLoop, loaded: tuple[Any, str | None] | None = None,
               resume: Any = NO_RESUME) -> None:
    """Run to the end on the event loop."""
    error: BaseException | None = None
    try:
        saved, head = loaded if loaded is not None else await _aload(loop)
        if observers.OBSERVERS:
            _open_run(loop, saved, resume)
        loop.begin(saved, head, resume)
        if loop.stopped is not None:
            raise loop.stopped
        await loop.apersist()
        while not loop.cancelled:
            tasks = loop.prepare()
            if tasks is None:
                break
            todo = [t for t in tasks if not t.done]
            if len(todo) == 1:
                await arun_task(loop, todo[0])
            elif todo:
                await asyncio.gather(*(arun_task(loop, t) for t in todo))
            going = loop.finish(tasks)
            await loop.apersist(final=not going)
            if not going:
                break
        await loop.apersist(final=True)
        if loop.error is not None:
            await asyncio.to_thread(_compensate, loop, loop.error)
            raise loop.error
    except BaseException as exc:
        error = exc
        if not isinstance(exc, Exception):
            await _asave_usage(loop)
            raise
        if loop.ops and loop.durability != "sync":
            await loop.apersist(final=True)
        if exc is not loop.error and isinstance(exc, _FAILS_RUN):
            await asyncio.to_thread(_compensate, loop, exc)
        raise
    finally:
        loop.close()
        if loop.scope is not None:
            _close_run(loop, error)


def _open_run(loop: RunLoop, saved: Any, resume: Any) -> None:
    """The run's scope: a child of the node attempt that runs it, for a subgraph."""
    metadata = (loop.config.get("metadata") or {}) if not loop.ns else {}
    inp = loop.input
    resumed = saved is not None and (inp is None or (
        isinstance(inp, Command) and inp.resume is not None) or resume is not NO_RESUME)
    attrs: dict[str, Any] = {
        "graph": loop.root_name if not loop.ns else getattr(loop.graph, "name", ""),
        "thread_id": None if loop.thread_id is None else str(loop.thread_id),
        "run_id": loop.run_id, "checkpoint_ns": loop.ns, "resumed": resumed,
        "tenant": metadata.get("tenant") or metadata.get("tenant_id"),
        "user_id": metadata.get("user_id"), "assistant_id": metadata.get("assistant_id"),
    }
    if saved is not None and resumed:
        attrs["resumes"] = dict(saved.metadata or {}).get("trace")
        attrs["resumes_checkpoint_id"] = saved.checkpoint.id
    loop.scope = observers.start("run", getattr(loop.graph, "name", "") or "graph", attrs,
                                 loop=loop)


def _close_run(loop: RunLoop, error: BaseException | None) -> None:
    if error is not None:
        status = "interrupted" if isinstance(error, GraphInterrupt) else "error"
    elif loop.status == "interrupted":
        status = "interrupted"
    else:
        status = "cancelled" if loop.cancelled and loop.status == "running" else "success"
    observers.end(loop.scope, error if status == "error" else None, status=status,
                  checkpoint_id=loop.checkpoint_id, steps=loop.steps_run)
    loop.scope = None


def _save_usage(loop: RunLoop) -> None:
    """Best effort, for a run stopped by a signal or a cancellation: what it spent."""
    if loop.usage and loop.saver is not None:
        records, loop.usage = loop.usage, []
        with contextlib.suppress(Exception):
            loop.saver.put_usage(records)


async def _asave_usage(loop: RunLoop) -> None:
    if loop.usage and loop.saver is not None:
        records, loop.usage = loop.usage, []
        with contextlib.suppress(BaseException):
            await asyncio.shield(loop.saver.aput_usage(records))


# Failures that end a run before its state changed (a task's own failure is loop.error).
_FAILS_RUN = (RunTimeoutError, GraphRecursionError, BudgetExceeded)


def _compensate(loop: RunLoop, error: BaseException) -> None:
    """Undo the run's completed steps when its graph declares compensations."""
    if not has_compensations(loop):
        if error is loop.stopped:  # a person stopped the run: it ends here either way
            loop.close_run({"reason": f"{error}", "compensated": [], "failed": [],
                            "order": []}, source="cancel")
        return
    summary = compensate_run(loop, f"{type(error).__name__}: {error}",
                             "cancel" if error is loop.stopped else "compensation")
    if not loop.ns:  # the root run's summary; nested graphs add their notes only
        try:
            error.compensation = summary  # type: ignore[attr-defined]
        except AttributeError:
            pass
    done = ", ".join(summary["compensated"]) or "nothing"
    failed = ", ".join(f["node"] for f in summary["failed"])
    error.add_note(f"waypoint compensated: {done}" + (f"; could not compensate: {failed}"
                                                      if failed else ""))
