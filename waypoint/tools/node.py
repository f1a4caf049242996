"""`ToolNode`: a graph node that answers the last AI message's tool calls.

The calls run in parallel (sync tools each on their own thread, async tools gathered on one
event loop), each under its timeout and retry budget, and every outcome becomes a
`ToolMessage` in the calls' order. A failure is an answer too: an unknown tool, bad
arguments, an exception or a timeout becomes an error message the model can read and act
on, so one bad call never crashes the run (unless `handle_errors=False`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import datetime
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from enum import Enum
from functools import partial
from typing import Any

from pydantic import BaseModel

from ..engine import observers
from ..engine.context import call_scope, record_usage, reserve_tool_call, settle_tool_call
from ..engine.effects import effect_scope
from ..errors import GraphBubbleUp, PermanentError, TransientError
from ..messages import Message, ToolMessage, coerce_message
from ..types import Command
from ..usage import Usage, UsageRecord
from .tool import (
    Tool,
    ToolArgumentError,
    ToolDefinitionError,
    ToolError,
    ToolTimeoutError,
    UnknownToolError,
    as_tool,
    run_coroutine_sync,
)

ErrorHandler = bool | str | Callable[[BaseException], str]

# Backoff between attempts of a failing tool: short, because a model is waiting.
_FIRST_DELAY = 0.05
_MAX_DELAY = 2.0


class _CallFailed(Exception):
    """A call's final error and how many attempts it took (internal)."""

    def __init__(self, error: BaseException, attempts: int) -> None:
        super().__init__(error)
        self.error = error
        self.attempts = attempts


def _start_thread(fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
    """Run `fn` on a fresh daemon thread with the caller's context (so `get_config()` and
    stream writers work inside tools). Daemon: a timed-out tool cannot keep the process up."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    context = contextvars.copy_context()

    def target() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(context.run(fn))
        except BaseException as exc:  # delivered through the future
            future.set_exception(exc)

    threading.Thread(target=target, name="waypoint-tool", daemon=True).start()
    return future


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Message):
        return value.to_dict()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


def encode_result(value: Any) -> str:
    """A tool result as message content: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _call_parts(call: Any) -> tuple[str | None, Any, str | None]:
    """(name, args, id) of a LangChain-shaped or OpenAI-shaped tool call."""
    if not isinstance(call, dict):
        return None, None, None
    function = call.get("function")
    if isinstance(function, dict):  # OpenAI: {"id", "type": "function", "function": {...}}
        return function.get("name"), function.get("arguments"), call.get("id")
    return call.get("name"), call.get("args"), call.get("id")


class ToolNode:
    """Runs the tool calls of the last AI message and answers each with a `ToolMessage`.

    - `timeout`: seconds per call, for tools that do not set their own.
    - `retries`: extra attempts after an exception, for idempotent tools that do not set
      their own `retries` (a write tool is retried only if it declares `retries=`). Bad
      arguments are never retried.
    - `handle_errors`: True turns failures into error messages; a string is used as every
      error message; a function `exc -> str` writes them; False raises the first failure.
    - `allowed`: optional `state -> tool names` (e.g. `Router.tools_for`): calls to other
      tools are refused with an error message.
    - `approve`: which calls wait for a person's decision (`waypoint.approve`) before
      they run: a `Tool -> bool` predicate, True (every call), or False (none, the
      default). Decisions are asked one at a time, in call order, before any call runs;
      "edit" replaces the arguments (checked against the tool's argument schema, and
      shown in the AI message too), "reject" answers the model with the reason.
    - `approval_options`: passed to every `approve()`: `assignee`, `deadline`,
      `on_timeout`, `escalate_to`, `actions`.
    """

    def __init__(
        self,
        tools: Sequence[Tool | Callable[..., Any]],
        *,
        name: str = "tools",
        timeout: float | None = None,
        retries: int = 0,
        handle_errors: ErrorHandler = True,
        messages_key: str = "messages",
        allowed: Callable[[Any], Iterable[str]] | None = None,
        approve: bool | Callable[[Tool], bool] = False,
        approval_options: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(tools, (Tool, str)) or callable(tools):
            raise ToolDefinitionError("ToolNode(tools) takes a list of tools")
        by_name: dict[str, Tool] = {}
        for item in tools:
            made = as_tool(item)
            if made.name in by_name:
                raise ToolDefinitionError(
                    f"ToolNode: two tools are named {made.name!r}; tool names must be unique",
                    tool=made.name)
            by_name[made.name] = made
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ValueError(f"ToolNode: timeout must be a positive number, got {timeout!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"ToolNode: retries must be an integer >= 0, got {retries!r}")
        self.tools_by_name = by_name
        self.name = self.__name__ = name
        self.timeout = timeout
        self.retries = retries
        self.handle_errors = handle_errors
        self.messages_key = messages_key
        self.allowed = allowed
        if not (isinstance(approve, bool) or callable(approve)):
            raise ValueError(f"ToolNode: approve must be True, False or a Tool -> bool "
                             f"function, got {approve!r}")
        self.approve = approve
        allowed_options = {"assignee", "deadline", "on_timeout", "escalate_to", "actions"}
        unknown = set(approval_options or {}) - allowed_options
        if unknown:
            raise ValueError(f"ToolNode: unknown approval option(s) {sorted(unknown)} "
                             f"(known: {', '.join(sorted(allowed_options))})")
        self.approval_options = dict(approval_options or {})

    @property
    def tools(self) -> list[Tool]:
        return list(self.tools_by_name.values())

    @property
    def schemas(self) -> list[dict[str, Any]]:
        """The OpenAI function specs of this node's tools, for `ModelRequest(tools=...)`."""
        return [t.schema for t in self.tools_by_name.values()]

    def __repr__(self) -> str:
        return f"ToolNode({', '.join(self.tools_by_name)})"

    # -- entry points -----------------------------------------------------------------------

    def __call__(self, input: Any) -> Any:
        """Sync entry (what the graph calls): the calls still run in parallel."""
        return run_coroutine_sync(self.ainvoke(input))

    invoke = __call__

    async def ainvoke(self, input: Any) -> Any:
        calls, state, as_list = self._read_input(input)
        if not calls:
            return [] if as_list else {self.messages_key: []}
        allowed = None if self.allowed is None else set(self.allowed(state))
        verdicts, edited = self._ask_approvals(calls)
        outcomes = await asyncio.gather(
            *(self._answer(call, state, allowed) if verdict is None else _as_result(verdict)
              for call, verdict in zip(calls, verdicts, strict=True)),
            return_exceptions=True,
        )
        for outcome in outcomes:  # control signals first, then (handle_errors=False) errors
            if isinstance(outcome, GraphBubbleUp):
                raise outcome
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        if edited and not as_list:
            return self._combine(outcomes, as_list,
                                 _with_calls(self._last_message(state), calls))
        return self._combine(outcomes, as_list)

    # -- approvals --------------------------------------------------------------------------

    def _needs_approval(self, name: Any) -> bool:
        found = self.tools_by_name.get(name) if isinstance(name, str) else None
        if found is None or self.approve is False:
            return False
        return True if self.approve is True else bool(self.approve(found))

    def _last_message(self, state: Any) -> Any:
        messages = (state.get(self.messages_key) if isinstance(state, dict)
                    else getattr(state, self.messages_key))
        return messages[-1]

    def _ask_approvals(self, calls: list[Any]) -> tuple[list[ToolMessage | None], bool]:
        """In call order: rewrite edited calls in place; a rejection's answer, or None;
        and whether any call was edited."""
        verdicts: list[ToolMessage | None] = []
        edited = False
        for index, call in enumerate(calls):
            name, args, call_id = _call_parts(call)
            if not self._needs_approval(name):
                verdicts.append(None)
                continue
            from ..engine.approvals import approve

            found = self.tools_by_name[name]
            decision = approve(
                {"tool": name, "args": args, "tool_call_id": call_id,
                 "description": found.description, "effect": found.effect},
                schema=found.args_model, **self.approval_options)
            if decision.action == "edit" and decision.edits is not None:
                edits = decision.edits
                if hasattr(edits, "model_dump"):  # validated against the tool's arguments
                    edits = edits.model_dump(mode="json", by_alias=True, exclude_unset=True)
                calls[index] = {"name": name, "args": edits, "id": call_id,
                                "type": "tool_call"}
                edited = True
            if decision.approved:
                verdicts.append(None)
                continue
            reason = f": {decision.comment}" if decision.comment else ""
            verdicts.append(ToolMessage(
                f"The call to {name} was not approved{reason}. Do not retry it unchanged.",
                tool_call_id=call_id, name=name,
                additional_kwargs={"status": "error", "error_type": "rejected"}))
        return verdicts, edited

    # -- reading the input ------------------------------------------------------------------

    def _read_input(self, input: Any) -> tuple[list[Any], Any, bool]:
        """(tool calls, state for injection/allowed, whether to answer with a bare list)."""
        key = self.messages_key
        if isinstance(input, (list, tuple)):
            if input and all(isinstance(c, dict) and "role" not in c and "type" not in c
                             and ("args" in c or "function" in c) for c in input):
                return list(input), None, True  # a list of tool calls
            return self._calls_of(list(input)), None, True
        if isinstance(input, Message) or (
            hasattr(input, "tool_calls") and hasattr(input, "content")
        ):
            return self._calls_of([input]), None, True
        if isinstance(input, dict):
            if key not in input:
                raise ValueError(
                    f"ToolNode: the state has no {key!r} key (keys: "
                    f"{', '.join(map(str, input)) or 'none'}); set messages_key=")
            return self._calls_of(input[key]), input, False
        if hasattr(input, key):
            return self._calls_of(getattr(input, key)), input, False
        raise ValueError(
            f"ToolNode: cannot find tool calls in {type(input).__name__}: expected a state with "
            f"{key!r}, a list of messages or an AI message")

    def _calls_of(self, messages: Any) -> list[Any]:
        if not messages:
            raise ValueError("ToolNode: there are no messages to answer")
        last = messages[-1]
        if isinstance(last, (dict, tuple, str)):
            last = coerce_message(last)
        kind = getattr(last, "type", None)
        if kind not in ("ai", "AIMessageChunk"):
            raise ValueError(
                f"ToolNode answers the tool calls of the last AI message, but the last message "
                f"is a {kind!r} message")
        return list(getattr(last, "tool_calls", None) or ())

    # -- one call ---------------------------------------------------------------------------

    async def _answer(self, call: Any, state: Any,
                      allowed: set[str] | None) -> ToolMessage | Command:
        name, args, call_id = _call_parts(call)
        try:
            found = self.tools_by_name.get(name) if isinstance(name, str) else None
            if found is None:
                raise _CallFailed(UnknownToolError(
                    f"there is no tool named {name!r} (available: "
                    f"{', '.join(self.tools_by_name) or 'none'})", tool=name), 0)
            if allowed is not None and name not in allowed:
                raise _CallFailed(UnknownToolError(
                    f"tool {name!r} is not allowed at this point (allowed: "
                    f"{', '.join(sorted(allowed)) or 'none'})", tool=name), 0)
            result = await self._observed_run(found, args, state, call_id)
        except _CallFailed as failed:
            if self.handle_errors is False:
                raise failed.error from None
            return self._error_message(failed, name, call_id)
        return self._result_message(result, found.name, call_id)

    async def _observed_run(self, tool: Tool, args: Any, state: Any,
                            call_id: str | None) -> Any:
        """`_run` with its cost held against the budget, its usage in the run's ledger and
        its span (effects inside are keyed by the call id)."""
        cost = tool.cost_estimate
        ticket = reserve_tool_call(tool.name, cost)
        scope = observers.start("tool", tool.name, {
            "tool": tool.name, "call_id": call_id, "description": tool.description,
            "arguments": args, "cost_estimate": cost, **call_scope()}) \
            if observers.OBSERVERS else None
        started = time.perf_counter()
        outcome = "error"
        result: Any = None
        try:
            result = await self._run(tool, args, state, call_id)
            outcome = "ok"
            return result
        except _CallFailed as failed:
            observers.end(scope, failed.error, outcome="error", attempts=failed.attempts)
            scope = None
            raise
        except BaseException as exc:  # an interrupt (approval) or a cancellation
            observers.end(scope, None, outcome="interrupted" if isinstance(
                exc, GraphBubbleUp) else "cancelled")
            scope = None
            outcome = ""
            raise
        finally:
            latency = time.perf_counter() - started
            if outcome:
                settle_tool_call(ticket, cost)
                record_usage(UsageRecord(tool.name, Usage(), cost, latency, kind="tool",
                                         outcome=outcome, **call_scope()))
            if scope is not None:
                observers.end(scope, outcome="ok", latency_s=latency, result=result)

    async def _run(self, tool: Tool, args: Any, state: Any, call_id: str | None) -> Any:
        """Validate, then run with timeout and retries; failures come out as `_CallFailed`."""
        try:
            positional, keywords = tool.bind_arguments(args, state=state, tool_call_id=call_id)
        except ToolArgumentError as exc:
            raise _CallFailed(exc, 0) from None
        timeout = tool.timeout if tool.timeout is not None else self.timeout
        retries = tool.retries if tool.retries is not None else (
            self.retries if tool.idempotent else 0)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(tool, positional, keywords, timeout, call_id)
            except GraphBubbleUp:
                raise
            except Exception as exc:
                final = isinstance(exc, (ToolArgumentError, PermanentError))
                if final or attempt > retries:
                    raise _CallFailed(exc, attempt) from None
                await asyncio.sleep(_delay(attempt, exc))

    async def _attempt(self, tool: Tool, positional: list[Any], keywords: dict[str, Any],
                       timeout: float | None, call_id: str | None = None) -> Any:
        scope = f"tool:{call_id}" if call_id else None
        if tool.is_async:
            pending: asyncio.Future[Any] = asyncio.ensure_future(
                _scoped_async(scope, tool.func, positional, keywords))
        else:
            pending = asyncio.wrap_future(
                _start_thread(partial(_scoped, scope, tool.func, positional, keywords)))
        if timeout is None:
            return await pending
        done, _ = await asyncio.wait({pending}, timeout=timeout)
        if not done:
            pending.cancel()
            pending.add_done_callback(_consume)
            raise ToolTimeoutError(
                f"tool {tool.name!r} timed out after {timeout:g} s", tool=tool.name)
        return pending.result()

    # -- answers ----------------------------------------------------------------------------

    def _result_message(self, result: Any, name: str, call_id: str | None) -> Any:
        if isinstance(result, Command):
            return result
        if isinstance(result, ToolMessage):
            if result.tool_call_id is None:
                result.tool_call_id = call_id
            if result.name is None:
                result.name = name
            return result
        return ToolMessage(encode_result(result), tool_call_id=call_id, name=name)

    def _error_message(self, failed: _CallFailed, name: str | None,
                       call_id: str | None) -> ToolMessage:
        error = failed.error
        handler = self.handle_errors
        if isinstance(handler, str):
            text = handler
        elif callable(handler):
            text = str(handler(error))
        else:
            text = _error_text(error, failed.attempts, name)
        kind = error.kind if isinstance(error, ToolError) else "exception"
        return ToolMessage(
            text, tool_call_id=call_id, name=name if isinstance(name, str) else None,
            additional_kwargs={"status": "error", "error_type": kind})

    def _combine(self, outcomes: list[Any], as_list: bool, first: Any = None) -> Any:
        """The answers; `first` (the AI message with edited calls) replaces the original."""
        lead = [] if first is None else [first]
        if not any(isinstance(o, Command) for o in outcomes):
            return list(outcomes) if as_list else {self.messages_key: [*lead, *outcomes]}
        commands = [o if isinstance(o, Command) else Command(update={self.messages_key: [o]})
                    for o in outcomes]
        return [Command(update={self.messages_key: lead}), *commands] if lead else commands


def _with_calls(message: Any, calls: list[Any]) -> Any:
    """A copy of the AI message (same id, so it replaces it) carrying the edited calls."""
    tool_calls = []
    for call in calls:
        name, args, call_id = _call_parts(call)
        tool_calls.append({"name": name, "args": args if isinstance(args, dict) else {},
                           "id": call_id, "type": "tool_call"})
    if isinstance(message, Message):
        return type(message)(message.content, id=message.id, name=message.name,
                             tool_calls=tool_calls,
                             additional_kwargs=message.additional_kwargs,
                             response_metadata=message.response_metadata,
                             usage_metadata=message.usage_metadata)
    return message.model_copy(update={"tool_calls": tool_calls})  # a LangChain message


def _scoped(scope: str | None, fn: Callable[..., Any], positional: list[Any],
            keywords: dict[str, Any]) -> Any:
    """Run a tool with its effects keyed by its call id (stable across parallel calls)."""
    if scope is None:
        return fn(*positional, **keywords)
    with effect_scope(scope):
        return fn(*positional, **keywords)


async def _scoped_async(scope: str | None, fn: Callable[..., Any], positional: list[Any],
                        keywords: dict[str, Any]) -> Any:
    if scope is None:
        return await fn(*positional, **keywords)
    with effect_scope(scope):
        return await fn(*positional, **keywords)


async def _as_result(message: ToolMessage) -> ToolMessage:
    return message


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned call's outcome so asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()


def _delay(attempt: int, error: BaseException) -> float:
    asked = getattr(error, "retry_after", None) if isinstance(error, TransientError) else None
    if isinstance(asked, (int, float)) and asked >= 0:
        return min(float(asked), _MAX_DELAY * 15)
    return min(_FIRST_DELAY * 2 ** (attempt - 1), _MAX_DELAY)


def _error_text(error: BaseException, attempts: int, name: str | None) -> str:
    tries = f" (after {attempts} attempts)" if attempts > 1 else ""
    if isinstance(error, ToolArgumentError):
        return f"Error: {error}. Call the tool again with corrected arguments."
    if isinstance(error, UnknownToolError):
        return f"Error: {error}. Use one of the available tools."
    if isinstance(error, ToolTimeoutError):
        return f"Error: {error}{tries}. Try again later or take another approach."
    detail = str(error) or "no details"
    return f"Error: tool {name!r} failed{tries}: {type(error).__name__}: {detail}"
