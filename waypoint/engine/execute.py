"""Running a task under its node's policies: time limits, retries, validation, error handler.

Each attempt gets a fresh runtime (interrupt and effect counters start over, as the node
body starts over). A failure is classified, retried after a backoff when the policy says
so (each retry is reported to the stream and kept for the checkpoint metadata), and a
final failure goes to the node's `error_handler`, whose return then stands in for the
node's. The sync and async runners share every decision; only waiting differs.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from ..errors import GraphBubbleUp, GraphInterrupt, OutputValidationError, RunTimeoutError
from ..failures import classify
from ..types import Attempt, NodeError, RetryPolicy
from . import langchain_stream, observers
from .context import TaskRuntime, get_stream_writer, make_runtime, reset_runtime, set_runtime
from .limits import NO_LIMITS, Limits, acall_limited, call_limited
from .task import ChildCommand, Task
from .validation import check_update
from .writes import _arecord, record_result, settle_signal

if TYPE_CHECKING:
    from ..graph.spec import NodeSpec
    from .protocols import RunView


class _Attempts:
    """The retry bookkeeping of one task: attempt numbers, decisions, what was retried."""

    __slots__ = ("first_at", "last_error", "loop", "node", "number", "task")

    def __init__(self, loop: RunView, task: Task) -> None:
        self.loop = loop
        self.task = task
        node = task.node
        assert node is not None
        self.node = node
        self.number = 0
        self.first_at: float | None = None
        self.last_error: BaseException | None = None

    def next(self) -> TaskRuntime:
        self.number += 1
        policy = self.node.retry_policy
        if policy is None and self.number == 1:  # the common case: nothing to tell the node
            return TaskRuntime(self.loop, self.task)
        if self.first_at is None:
            self.first_at = time.time()
        if isinstance(policy, RetryPolicy):
            most = policy.max_attempts
        elif policy:
            most = max(p.max_attempts for p in policy)
        else:
            most = 1
        error = self.last_error
        feedback = str(error.errors) if isinstance(error, OutputValidationError) else None
        attempt = Attempt(self.number, most, error, feedback, self.first_at)
        return TaskRuntime(self.loop, self.task, attempt)

    def limits(self) -> Limits:
        loop = self.loop
        if self.node.timeout is None and loop.deadline is None:
            return NO_LIMITS
        return Limits(self.task.name, self.node.timeout, loop.deadline, loop.deadline_epoch)

    def retry_delay(self, exc: Exception) -> float | None:
        """Seconds before the next attempt, or None when `exc` is final."""
        self.last_error = exc
        if isinstance(exc, (GraphBubbleUp, ChildCommand, RunTimeoutError)):
            return None
        policy = _policy_for(self.node, exc)
        if policy is None or self.number >= policy.max_attempts or not policy.should_retry(exc):
            return None
        delay = policy.delay(self.number, exc)
        deadline = self.loop.deadline
        if deadline is not None and time.monotonic() + delay >= deadline:
            return None  # no time left for another attempt
        record = {"node": self.task.name, "task": self.task.id, "attempt": self.number,
                  "error": f"{type(exc).__name__}: {exc}", "kind": classify(exc),
                  "delay": round(delay, 3)}
        self.task.retries.append(record)
        if self.loop.sink is not None:
            self.loop.sink.task_retry(self.task, self.loop, record)
        return delay


def _policy_for(node: NodeSpec, exc: BaseException) -> RetryPolicy | None:
    policy = node.retry_policy
    if policy is None or isinstance(policy, RetryPolicy):
        return policy
    return next((p for p in policy if p.matches(exc)), None)


# -- one attempt --------------------------------------------------------------------------


def _call_args(loop: RunView, task: Task) -> tuple[tuple[Any, ...], dict[str, Any]]:
    node = task.node
    assert node is not None
    payload = task.arg if task.is_push else node.codec.build(
        loop.values, loop.steps_left() if node.codec.managed else None)
    kwargs: dict[str, Any] = {}
    if node.wants_config:
        kwargs["config"] = loop.task_config(task)
    if node.wants_writer:
        kwargs["writer"] = get_stream_writer()
    return (payload,), kwargs


def _inject(loop: RunView, node: NodeSpec, kwargs: dict[str, Any]) -> None:
    """A node's `store` / `runtime` parameters (only nodes that declare them pay for this)."""
    for name in node.injects:
        kwargs[name] = loop.store if name == "store" else make_runtime(loop)


def _attempt_sync(loop: RunView, task: Task, node: NodeSpec, runtime: TaskRuntime,
                  limits: Limits) -> Any:
    if node.subgraph is not None:
        return node.subgraph.run_as_node(loop, task)
    if node.is_async:
        raise TypeError(f"node {task.name!r} is async: run the graph with ainvoke/astream")
    args, kwargs = _call_args(loop, task)
    if node.injects:
        _inject(loop, node, kwargs)
    if limits is NO_LIMITS:
        return node.fn(*args, **kwargs)
    return call_limited(limits, runtime, partial(node.fn, *args, **kwargs))


async def _attempt_async(loop: RunView, task: Task, node: NodeSpec, runtime: TaskRuntime,
                         limits: Limits) -> Any:
    if node.subgraph is not None:
        return await node.subgraph.arun_as_node(loop, task)
    args, kwargs = _call_args(loop, task)
    if node.injects:
        _inject(loop, node, kwargs)
    if node.is_async:
        return await acall_limited(limits, runtime, lambda: node.fn(*args, **kwargs))
    # A sync node: its body runs in a worker thread, with this task's context.
    ctx = contextvars.copy_context()
    return await acall_limited(limits, runtime, lambda: asyncio.get_running_loop()
                               .run_in_executor(loop.async_executor(),
                                                partial(ctx.run, node.fn, *args, **kwargs)))


def _validate(task: Task, node: NodeSpec) -> None:
    if node.validate is not None:
        check_update(task.name, node.validate, dict(task.writes))


# -- the error handler --------------------------------------------------------------------


def _handles(node: NodeSpec, exc: Exception) -> bool:
    return node.error_handler is not None and not isinstance(
        exc, (GraphBubbleUp, ChildCommand, RunTimeoutError)
    )


def _handler_call(loop: RunView, task: Task, node: NodeSpec, exc: Exception,
                  attempts: int) -> Any:
    handler = node.error_handler
    assert handler is not None
    payload = task.arg if task.is_push else node.codec.build(
        loop.values, loop.steps_left() if node.codec.managed else None)
    error = NodeError(task.name, exc, attempts)
    try:
        params = [p for p in inspect.signature(handler).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return handler(payload, error) if len(params) >= 2 else handler(payload)


def _handled(loop: RunView, task: Task, exc: Exception, result: Any) -> None:
    """The handler's return stands in for the node's: its writes, and only its gotos."""
    record_result(loop, task, result, routes=False)
    task.done = True
    task.handled = {"node": task.name, "error": f"{type(exc).__name__}: {exc}"}


def _settle(loop: RunView, task: Task, node: NodeSpec, exc: Exception, attempts: int,
            runtime: TaskRuntime) -> None:
    if not _handles(node, exc):
        settle_signal(loop, task, exc)
        return
    token = set_runtime(runtime)  # the handler may interrupt() to ask a person
    try:
        result = _handler_call(loop, task, node, exc, attempts)
        if inspect.isawaitable(result):
            raise TypeError(f"error_handler of node {task.name!r} is async: run the graph with "
                            f"ainvoke/astream")
        _handled(loop, task, exc, result)
    except Exception as failure:
        if failure.__cause__ is None and failure is not exc:
            failure.__cause__ = exc
        settle_signal(loop, task, failure)
    finally:
        reset_runtime(token)


async def _asettle(loop: RunView, task: Task, node: NodeSpec, exc: Exception, attempts: int,
                   runtime: TaskRuntime) -> None:
    if not _handles(node, exc):
        settle_signal(loop, task, exc)
        return
    token = set_runtime(runtime)
    try:
        result = _handler_call(loop, task, node, exc, attempts)
        if inspect.isawaitable(result):
            result = await result
        _handled(loop, task, exc, result)
    except Exception as failure:
        if failure.__cause__ is None and failure is not exc:
            failure.__cause__ = exc
        settle_signal(loop, task, failure)
    finally:
        reset_runtime(token)


# -- observing attempts --------------------------------------------------------------------


def _open_attempt(loop: RunView, task: Task, runtime: TaskRuntime) -> observers.Scope | None:
    attempt = runtime.attempt
    attrs = {"node": task.name, "step": loop.step + 1, "task_id": task.id,
             "attempt": attempt.number, "checkpoint_ns": loop.ns,
             "thread_id": None if loop.thread_id is None else str(loop.thread_id),
             "run_id": loop.run_id, "parent_checkpoint_id": loop.checkpoint_id}
    if task.is_push:
        attrs["send"] = True
    scope = observers.start("attempt", task.name, attrs, parent=loop.scope, loop=loop)
    runtime.scope = scope
    return scope


def _close_attempt(scope: observers.Scope | None, entered: Any, exc: BaseException | None,
                   delay: float | None) -> None:
    if scope is None:
        return
    observers.leave(entered)
    if exc is None:
        observers.end(scope, outcome="ok")
    elif isinstance(exc, GraphInterrupt):
        observers.end(scope, outcome="interrupted")
    elif isinstance(exc, (GraphBubbleUp, ChildCommand)):
        observers.end(scope, outcome="ok")
    else:
        observers.end(scope, exc, outcome="retry" if delay is not None else "error",
                      error_kind=classify(exc), retry_delay=delay,
                      timeout=isinstance(exc, (TimeoutError, RunTimeoutError)))


# -- the task -----------------------------------------------------------------------------


def run_task(loop: RunView, task: Task) -> None:
    """Run one task synchronously under its node's policies; never raises."""
    node = task.node
    assert node is not None
    if loop.sink is not None:
        loop.sink.task_start(task, loop)
    langchain = langchain_stream.attach(loop, task)
    attempts = _Attempts(loop, task)
    while True:
        runtime = attempts.next()
        scope = _open_attempt(loop, task, runtime) if observers.OBSERVERS else None
        token = set_runtime(runtime)
        entered = observers.enter(scope)
        try:
            record_result(loop, task, _attempt_sync(loop, task, node, runtime, attempts.limits()))
            _validate(task, node)
            task.done = True
            task.pending_resume = runtime.pending_resume
            _close_attempt(scope, entered, None, None)
            break
        except Exception as exc:
            delay = attempts.retry_delay(exc)
            _close_attempt(scope, entered, exc, delay)
            if delay is None:
                reset_runtime(token)
                token = None
                _settle(loop, task, node, exc, attempts.number, runtime)
                break
        finally:
            if token is not None:
                reset_runtime(token)
        time.sleep(delay)
    langchain_stream.detach(langchain)
    if loop.guard is not None:
        loop.guard.release_task(task.id)
    if loop.sink is not None:
        loop.sink.task_end(task, loop)


async def arun_task(loop: RunView, task: Task) -> None:
    """Run one task on the event loop (sync nodes in a worker thread); never raises."""
    node = task.node
    assert node is not None
    if loop.sink is not None:
        loop.sink.task_start(task, loop)
    langchain = langchain_stream.attach(loop, task)
    attempts = _Attempts(loop, task)
    while True:
        runtime = attempts.next()
        scope = _open_attempt(loop, task, runtime) if observers.OBSERVERS else None
        token = set_runtime(runtime)
        entered = observers.enter(scope)
        try:
            await _arecord(loop, task,
                           await _attempt_async(loop, task, node, runtime, attempts.limits()))
            _validate(task, node)
            task.done = True
            task.pending_resume = runtime.pending_resume
            _close_attempt(scope, entered, None, None)
            break
        except Exception as exc:
            delay = attempts.retry_delay(exc)
            _close_attempt(scope, entered, exc, delay)
            if delay is None:
                reset_runtime(token)
                token = None
                await _asettle(loop, task, node, exc, attempts.number, runtime)
                break
        finally:
            if token is not None:
                reset_runtime(token)
        await asyncio.sleep(delay)
    langchain_stream.detach(langchain)
    if loop.guard is not None:
        loop.guard.release_task(task.id)
    if loop.sink is not None:
        loop.sink.task_end(task, loop)
