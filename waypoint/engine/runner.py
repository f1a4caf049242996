"""Driving a RunLoop: the sync runner (threads for parallel tasks) and the async one."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator
from typing import Any

from ..errors import BudgetExceeded, GraphRecursionError, RunTimeoutError
from .context import NO_RESUME
from .execute import arun_task, run_task
from .loop import RunLoop
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
    try:
        saved, head = loaded if loaded is not None else _load(loop)
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
    except Exception as exc:
        if loop.ops and loop.durability != "sync":  # keep what a deferred mode still holds
            loop.persist(final=True)
        if exc is not loop.error and isinstance(exc, _FAILS_RUN):
            _compensate(loop, exc)
        raise
    finally:
        loop.close()


async def arun(loop: RunLoop, loaded: tuple[Any, str | None] | None = None,
               resume: Any = NO_RESUME) -> None:
    """Run to the end on the event loop."""
    try:
        saved, head = loaded if loaded is not None else await _aload(loop)
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
    except Exception as exc:
        if loop.ops and loop.durability != "sync":
            await loop.apersist(final=True)
        if exc is not loop.error and isinstance(exc, _FAILS_RUN):
            await asyncio.to_thread(_compensate, loop, exc)
        raise
    finally:
        loop.close()


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
