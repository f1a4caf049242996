"""Exactly-once effects: `effect(name, fn, *args, **kwargs)` inside a node.

A node body re-runs from its start after an interrupt, a crash or a retry; an external
action inside it (an e-mail, a payment, a deploy) must not. Each effect call gets an
idempotency key from (thread, namespace, step, task, call order) — the same on every
re-execution of that task, replays of the step included. Before `fn` runs, a "started"
record is committed; after it returns, its result. A re-execution finds the record and
returns the result without calling `fn`. A record still "started" means the process died
(or the attempt was abandoned) while `fn` ran: nobody knows whether it acted. Such an
effect is *in doubt* and the node's `on_doubt` decides: "ask" a person (an interrupt
naming the effect and its key), "fail", or "retry" (for actions known to be idempotent
under their key). It is never silently repeated.
"""

from __future__ import annotations

import contextvars
import hashlib
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import EffectInDoubt, GraphBubbleUp, InvalidResumeError
from . import observers
from .context import TaskRuntime, current_runtime, interrupt

DOUBT_ANSWERS = ("retry", "done", "fail")

# A named scope inside a task (e.g. one tool call of a ToolNode, keyed by its call id) whose
# effects are numbered on their own: parallel calls in one task keep stable keys whatever
# order their threads reach `effect()` in.
_SCOPE: contextvars.ContextVar[tuple[str, list[int]] | None] = contextvars.ContextVar(
    "waypoint_effect_scope", default=None)


@contextmanager
def effect_scope(name: str) -> Iterator[None]:
    """Number the effects called in this context under `name` instead of in task order."""
    token = _SCOPE.set((name, [0]))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def effect_key(runtime: TaskRuntime, index: int | str) -> str:
    loop, task = runtime.loop, runtime.task
    raw = f"{loop.thread_id}|{loop.ns}|{loop.step + 1}|{task.index}|{task.name}|{index}"
    return "wp-" + hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


def _call(fn: Callable[..., Any], key: str, args: tuple[Any, ...],
          kwargs: dict[str, Any]) -> Any:
    if _takes_key(fn):
        return fn(*args, idempotency_key=key, **kwargs)
    return fn(*args, **kwargs)


def _takes_key(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "idempotency_key" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )


def _runtime(what: str) -> TaskRuntime:
    runtime = current_runtime()
    if runtime is None:
        raise RuntimeError(f"{what}() can only be called inside a node of a running graph")
    runtime.check_alive()
    return runtime


def _start(what: str, name: str, fn: Callable[..., Any]) -> tuple[TaskRuntime, str]:
    """Check the arguments and give this call its key (the next in the task's call order)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"effect name must be a non-empty string, got {name!r}")
    if not callable(fn):
        raise TypeError(f"effect {name!r}: fn must be callable, got {type(fn).__name__}")
    runtime = _runtime(what)
    scope = _SCOPE.get()
    if scope is not None:
        scope_name, counter = scope
        index, counter[0] = counter[0], counter[0] + 1
        return runtime, effect_key(runtime, f"{scope_name}#{index}")
    index = runtime.effect_index
    runtime.effect_index += 1
    return runtime, effect_key(runtime, index)


def _note(runtime: TaskRuntime, name: str, key: str, status: str) -> None:
    scope = _OBSERVED.get()
    if scope is not None:
        scope.attrs.update(key=key, status=status)
    entry = {"node": runtime.task.name, "effect": name, "key": key, "status": status}
    runtime.task.effects.append(entry)
    sink = runtime.loop.sink
    if sink is not None:
        sink.effect(runtime.task, runtime.loop, entry)


def _doubt_answer(runtime: TaskRuntime, name: str, record: Any) -> dict[str, Any]:
    """What to do with an effect in doubt, per the node's `on_doubt`."""
    choice = runtime.task.node.on_doubt if runtime.task.node is not None else "ask"
    if choice == "retry":
        return {"action": "retry"}
    if choice == "fail":
        raise EffectInDoubt(name, record.key, record.started_at)
    answer = interrupt({
        "kind": "effect_in_doubt", "effect": name, "key": record.key,
        "node": runtime.task.name, "started_at": record.started_at,
        "attempts": record.attempts,
        "question": f"effect {name!r} was started but its outcome was never recorded: did it "
                    f"happen? Answer 'retry' to run it again under the same key, "
                    f"{{'action': 'done', 'result': ...}} if it happened, or 'fail'.",
        "choices": list(DOUBT_ANSWERS),
    })
    if isinstance(answer, str):
        answer = {"action": answer}
    if not isinstance(answer, dict) or answer.get("action") not in DOUBT_ANSWERS:
        raise InvalidResumeError(
            f"the answer about effect {name!r} must be 'retry', 'fail' or "
            f"{{'action': 'done', 'result': ...}}, got {answer!r}"
        )
    if answer["action"] == "fail":
        raise EffectInDoubt(name, record.key, record.started_at)
    return answer


# The effect scope being observed in this context, for `_note` to tell its status.
_OBSERVED: contextvars.ContextVar[observers.Scope | None] = contextvars.ContextVar(
    "waypoint_observed_effect", default=None)


def _observed(name: str) -> tuple[observers.Scope | None, Any]:
    scope = observers.start("effect", name, {"effect": name})
    return scope, _OBSERVED.set(scope)


def _unobserved(scope: observers.Scope | None, token: Any, exc: BaseException | None) -> None:
    _OBSERVED.reset(token)
    if exc is None or isinstance(exc, GraphBubbleUp):
        observers.end(scope, outcome="interrupted" if exc is not None else "ok")
    else:
        observers.end(scope, exc if isinstance(exc, Exception) else None, outcome="error")


def effect(name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run `fn(*args, **kwargs)` once per task and call order; later re-runs get its result.

    `fn` is given the idempotency key as `idempotency_key=` when it accepts that argument
    (or **kwargs), so the action can be made idempotent downstream too.
    """
    if not observers.OBSERVERS:
        return _effect(name, fn, args, kwargs)
    scope, token = _observed(name)
    try:
        result = _effect(name, fn, args, kwargs)
    except BaseException as exc:
        _unobserved(scope, token, exc)
        raise
    _unobserved(scope, token, None)
    return result


def _effect(name: str, fn: Callable[..., Any], args: tuple[Any, ...],
            kwargs: dict[str, Any]) -> Any:
    runtime, key = _start("effect", name, fn)
    saver = runtime.loop.saver
    if saver is None:  # no store: once per run, kept in memory
        memo = runtime.loop.effect_memo
        if key in memo:
            _note(runtime, name, key, "reused")
            return memo[key]
        memo[key] = result = _call(fn, key, args, kwargs)
        _note(runtime, name, key, "ran")
        return result
    thread = str(runtime.loop.thread_id)
    record = saver.begin_effect(thread, key, name)
    if record is not None:
        if record.status == "done":
            _note(runtime, name, key, "reused")
            return record.result
        answer = _doubt_answer(runtime, name, record)
        if answer["action"] == "done":
            saver.finish_effect(thread, key, result=answer.get("result"))
            _note(runtime, name, key, "confirmed")
            return answer.get("result")
        saver.begin_effect(thread, key, name, retry_started=True)
        _note(runtime, name, key, "retried in doubt")
    try:
        result = _call(fn, key, args, kwargs)
    except Exception as exc:
        saver.finish_effect(thread, key, error={"type": type(exc).__name__, "message": str(exc)})
        _note(runtime, name, key, "failed")
        raise
    _record_result(name, key, lambda: saver.finish_effect(thread, key, result=result))
    _note(runtime, name, key, "ran")
    return result


def _record_result(name: str, key: str, write: Callable[[], Any]) -> Any:
    try:
        return write()
    except Exception as exc:
        raise EffectInDoubt(name, key) from exc


async def aeffect(name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """`effect` for async nodes: `fn` may be a coroutine function; store calls are async."""
    if not observers.OBSERVERS:
        return await _aeffect(name, fn, args, kwargs)
    scope, token = _observed(name)
    try:
        result = await _aeffect(name, fn, args, kwargs)
    except BaseException as exc:
        _unobserved(scope, token, exc)
        raise
    _unobserved(scope, token, None)
    return result


async def _aeffect(name: str, fn: Callable[..., Any], args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> Any:
    runtime, key = _start("aeffect", name, fn)

    async def run() -> Any:
        value = _call(fn, key, args, kwargs)
        return await value if inspect.isawaitable(value) else value

    saver = runtime.loop.saver
    if saver is None:
        memo = runtime.loop.effect_memo
        if key in memo:
            _note(runtime, name, key, "reused")
            return memo[key]
        memo[key] = result = await run()
        _note(runtime, name, key, "ran")
        return result
    thread = str(runtime.loop.thread_id)
    record = await saver.abegin_effect(thread, key, name)
    if record is not None:
        if record.status == "done":
            _note(runtime, name, key, "reused")
            return record.result
        answer = _doubt_answer(runtime, name, record)
        if answer["action"] == "done":
            await saver.afinish_effect(thread, key, result=answer.get("result"))
            _note(runtime, name, key, "confirmed")
            return answer.get("result")
        await saver.abegin_effect(thread, key, name, retry_started=True)
        _note(runtime, name, key, "retried in doubt")
    try:
        result = await run()
    except Exception as exc:
        await saver.afinish_effect(thread, key,
                                   error={"type": type(exc).__name__, "message": str(exc)})
        _note(runtime, name, key, "failed")
        raise
    try:
        await saver.afinish_effect(thread, key, result=result)
    except Exception as exc:
        raise EffectInDoubt(name, key) from exc
    _note(runtime, name, key, "ran")
    return result
