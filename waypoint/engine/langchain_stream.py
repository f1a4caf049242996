"""LangChain chat models inside a run: their tokens into the run's streams, their usage into
its budget and usage ledger, without LangChain as a dependency.

Ported code calls a LangChain chat model inside a node (`ChatOpenAI().invoke(messages)`).
LangChain finds its callbacks in a context variable when the call passes no config, so
while a task runs that variable holds a handler of ours. It meters every call (when the
run has a budget or a durable usage ledger): the call's worst case is held against the
budget before it starts, exactly as for waypoint's own models, and what the model reports
(`usage_metadata`, or `llm_output["token_usage"]`) is spent and recorded when it ends. When
someone listens for tokens (`stream_mode="messages"` or `astream_events`) it also hands
each token, and each finished answer, to the run's stream sink. Nothing here runs unless
`langchain_core` is already imported: code that does not use LangChain never pays for it.
"""

from __future__ import annotations

import contextvars
import sys
import time
from typing import TYPE_CHECKING, Any

from . import context as run_context

if TYPE_CHECKING:
    from .protocols import RunView
    from .task import Task

_NOSTREAM_TAGS = frozenset({"nostream", "langsmith:nostream"})
_classes: dict[str, type] = {}


def attach(loop: RunView, task: Task) -> tuple[contextvars.ContextVar[Any], Any] | None:
    """Give LangChain calls made by `task` a handler that streams into the run and meters
    them; returns what `detach` needs, or None when there is nothing to do."""
    if "langchain_core" not in sys.modules:
        return None
    sink = loop.sink
    streaming = sink is not None and (sink.wants("messages") or sink.wants("events"))
    metering = loop.guard is not None or hasattr(loop.saver, "put_usage")
    if not (streaming or metering):
        return None
    from langchain_core.runnables.config import var_child_runnable_config

    handler = _handler_class(streaming)(loop, task, streaming)
    config = {"callbacks": [handler], "metadata": dict(loop.task_metadata(task)),
              "tags": [f"graph:step:{loop.step + 1}"]}
    return var_child_runnable_config, var_child_runnable_config.set(config)


def detach(attached: tuple[contextvars.ContextVar[Any], Any] | None) -> None:
    if attached is not None:
        variable, token = attached
        try:
            variable.reset(token)
        except ValueError:  # set in another context (a retry on another thread)
            variable.set(None)


# -- what a call used ------------------------------------------------------------------------


class _Priced:
    """What the budget's reservation needs of a model: its name and a price function (the
    lookup of a waypoint model without a PriceBook: price overrides, then the genai-prices
    catalogue; None = unknown, never 0)."""

    __slots__ = ("model",)

    def __init__(self, model: str) -> None:
        self.model = model

    def price(self, usage: Any) -> float | None:
        if usage is None:
            return None
        from ..models.price_catalog import catalog_cost  # prices only: no engine import

        return catalog_cost(self.model, usage)


class _Prompt:
    """The request shape `reserve_model_call` reads: the prompt and the output cap."""

    __slots__ = ("max_tokens", "messages")

    def __init__(self, messages: Any, max_tokens: int | None) -> None:
        self.messages = messages
        self.max_tokens = max_tokens


def _model_name(serialized: Any, kwargs: dict[str, Any]) -> str:
    metadata = kwargs.get("metadata") or {}
    params = kwargs.get("invocation_params") or {}
    for value in (metadata.get("ls_model_name"), params.get("model"), params.get("model_name"),
                  kwargs.get("name"), (serialized or {}).get("name")):
        if isinstance(value, str) and value:
            return value
    return "langchain"


def _max_tokens(kwargs: dict[str, Any]) -> int | None:
    params = kwargs.get("invocation_params") or {}
    metadata = kwargs.get("metadata") or {}
    for value in (params.get("max_tokens"), params.get("max_completion_tokens"),
                  metadata.get("ls_max_tokens")):
        if isinstance(value, int) and value > 0:
            return value
    return None


def usage_of(response: Any) -> tuple[int, int] | None:
    """(input, output) tokens a LangChain LLMResult reports: its messages' `usage_metadata`,
    else `llm_output["token_usage"]` (OpenAI's or Anthropic's names); None if neither."""
    found = False
    inputs = outputs = 0
    for batch in getattr(response, "generations", None) or ():
        for generation in batch:
            usage = getattr(getattr(generation, "message", None), "usage_metadata", None)
            if usage:
                found = True
                inputs += int(usage.get("input_tokens") or 0)
                outputs += int(usage.get("output_tokens") or 0)
    if found:
        return inputs, outputs
    output = getattr(response, "llm_output", None) or {}
    usage = output.get("token_usage") or output.get("usage") or {}
    if not isinstance(usage, dict) or not usage:
        return None
    inputs = usage.get("prompt_tokens", usage.get("input_tokens"))
    outputs = usage.get("completion_tokens", usage.get("output_tokens"))
    if inputs is None and outputs is None:
        return None
    return int(inputs or 0), int(outputs or 0)


def _answer_text(response: Any) -> str:
    texts = []
    for batch in getattr(response, "generations", None) or ():
        for generation in batch:
            texts.append(str(getattr(generation, "text", "") or ""))
    return "".join(texts)


class _Metered:
    __slots__ = ("model", "prompt", "started", "ticket")

    def __init__(self, model: str, prompt: _Prompt, ticket: Any) -> None:
        self.model, self.prompt, self.ticket = model, prompt, ticket
        self.started = time.perf_counter()


# -- the handlers ---------------------------------------------------------------------------


def _handler_class(streaming: bool) -> type:
    """The handler classes, built on first use because they subclass LangChain's."""
    key = "stream" if streaming else "meter"
    if key in _classes:
        return _classes[key]
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.outputs import ChatGenerationChunk
    from langchain_core.tracers._streaming import _StreamingCallbackHandler

    from ..usage import Usage, UsageRecord

    class RunMeterHandler(BaseCallbackHandler):
        """Meters one task's LangChain model calls into its run's budget and ledger, and
        (when `streaming`) forwards their tokens and answers to the run's stream."""

        run_inline = True  # in order, on the caller's thread and context, also for async
        raise_error = True  # a budget that says stop must stop the call

        def __init__(self, loop: RunView, task: Task, streaming: bool) -> None:
            self.loop = loop
            self.task = task
            self.streaming = streaming
            self.streamed: dict[Any, bool] = {}  # run id -> whether tokens came
            self.metered: dict[Any, _Metered] = {}

        # metering

        def _meter_start(self, serialized: Any, prompt: Any, run_id: Any,
                         kwargs: dict[str, Any]) -> None:
            if self.loop.guard is None and not hasattr(self.loop.saver, "put_usage"):
                return
            name = _model_name(serialized, kwargs)
            request = _Prompt(prompt, _max_tokens(kwargs))
            priced = _Priced(name)
            guard = self.loop.guard
            if guard is not None and guard.budget.max_cost_usd is not None:
                from .context import _estimate_prompt_tokens

                worst = Usage(_estimate_prompt_tokens(prompt), request.max_tokens or 4096)
                if priced.price(worst) is None:
                    from ..errors import PermanentError

                    raise PermanentError(
                        f"LangChain model {name!r} has no known price (install "
                        f"waypoint[prices] for the genai-prices catalogue), so the budget "
                        f"max_cost_usd cannot be enforced: drop max_cost_usd or use a "
                        f"waypoint model with prices=")
            ticket = run_context.reserve_model_call(priced, request)
            self.metered[run_id] = _Metered(name, request, ticket)

        def _meter_end(self, response: Any, run_id: Any) -> None:
            metered = self.metered.pop(run_id, None)
            if metered is None:
                return
            output = getattr(response, "llm_output", None) or {}
            name = output.get("model_name") if isinstance(output.get("model_name"), str) \
                else metered.model
            reported = usage_of(response)
            usage = Usage(*reported) if reported is not None else None
            priced = _Priced(name)
            cost = priced.price(usage)
            spent = usage
            if spent is None:  # nothing reported: the budget counts an estimate
                from .context import _estimate_prompt_tokens

                spent = Usage(_estimate_prompt_tokens(metered.prompt.messages),
                              len(_answer_text(response)) // 3 + 1)
            run_context.settle_model_call(metered.ticket, spent, cost)
            run_context.record_usage(UsageRecord(
                name, usage or Usage(), cost, time.perf_counter() - metered.started,
                **run_context.call_scope()))

        def _meter_error(self, run_id: Any) -> None:
            metered = self.metered.pop(run_id, None)
            if metered is not None:  # its reservation is released when the task ends
                run_context.record_usage(UsageRecord(
                    metered.model, Usage(), None, time.perf_counter() - metered.started,
                    outcome="error", **run_context.call_scope()))

        # LangChain's events

        def on_chat_model_start(self, serialized: dict[str, Any], messages: Any, *,
                                run_id: Any, tags: list[str] | None = None,
                                **kwargs: Any) -> None:
            prompt = messages[0] if messages else []
            self._meter_start(serialized, prompt, run_id, kwargs)
            if not self.streaming or (tags and _NOSTREAM_TAGS.intersection(tags)):
                return
            sink = self.loop.sink
            if sink is None:
                return
            name = kwargs.get("name") or (serialized or {}).get("name") or "chat_model"
            self.streamed[run_id] = False
            sink.model_start(self.task, name, prompt, run_id=str(run_id))

        def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], *,
                         run_id: Any, **kwargs: Any) -> None:
            self._meter_start(serialized, list(prompts), run_id, kwargs)

        def on_llm_new_token(self, token: str, *, chunk: Any = None, run_id: Any,
                             **kwargs: Any) -> None:
            sink = self.loop.sink
            if run_id not in self.streamed or sink is None:
                return
            if not isinstance(chunk, ChatGenerationChunk):
                return
            self.streamed[run_id] = True
            sink.model_token(self.task, str(run_id), chunk.message,
                             self.loop.task_metadata(self.task))

        def on_llm_end(self, response: Any, *, run_id: Any, **kwargs: Any) -> None:
            self._meter_end(response, run_id)
            sink = self.loop.sink
            if run_id not in self.streamed or sink is None:
                return
            streamed = self.streamed.pop(run_id)
            try:
                message = response.generations[0][0].message
            except (AttributeError, IndexError):
                return
            if not streamed:  # a model that cannot stream: its whole answer, once
                sink.model_token(self.task, str(run_id), message,
                                 self.loop.task_metadata(self.task))
            sink.model_end(self.task, str(run_id), message)

        def on_llm_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
            self.streamed.pop(run_id, None)
            self._meter_error(run_id)

    class RunStreamHandler(RunMeterHandler, _StreamingCallbackHandler):
        """The same, declared a streaming handler: that makes `invoke()` stream."""

        def tap_output_aiter(self, run_id: Any, output: Any) -> Any:
            return output

        def tap_output_iter(self, run_id: Any, output: Any) -> Any:
            return output

    _classes["meter"] = RunMeterHandler
    _classes["stream"] = RunStreamHandler
    return _classes[key]
