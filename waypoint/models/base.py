"""The chat-model protocol every provider implements, and what every call does around it.

A provider implements one method, `_stream_raw(request)`, yielding `ModelDelta`s (and may
override `_astream_raw` when it has a native async client). Everything a caller relies on
lives here once: message coercion, token streaming into the running graph's streams,
usage on the returned message, and a ledger record per call.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..engine import observers
from ..engine.context import (
    call_scope,
    on_model_end,
    on_model_start,
    on_model_token,
    record_usage,
    reserve_model_call,
    retry_feedback,
    settle_model_call,
    streaming_tokens,
)
from ..messages import AIMessage, AIMessageChunk, HumanMessage, coerce_messages, new_message_id
from ..usage import Usage, UsageLedger, UsageRecord

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .pricing import PriceBook

SchemaT = TypeVar("SchemaT", bound="BaseModel")


@dataclass(slots=True)
class ModelRequest:
    """One call's input, provider-neutral. `response_format` and `tools` use OpenAI's shapes
    (`{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`)."""

    messages: list[Any]
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    max_tokens: int | None = None
    temperature: float | None = None
    stop: list[str] | None = None
    timeout: float | None = None
    seed: int | None = None
    logprobs: bool | None = None  # token log-probabilities, where the provider gives them
    top_logprobs: int | None = None  # alternatives per token (with logprobs)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ModelDelta:
    """A piece of a streamed answer: text, complete tool calls, and at the end the reason
    the model stopped and the usage the provider reported."""

    text: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    # One entry per generated token of `text`: {"token", "logprob", "top_logprobs"}.
    logprobs: list[dict[str, Any]] | None = None


@dataclass(slots=True)
class ModelResponse:
    message: AIMessage
    usage: Usage | None
    finish_reason: str | None
    model: str
    latency_s: float
    cost_usd: float | None = None
    logprobs: list[dict[str, Any]] | None = None  # when asked for and given

    def final_chunk(self) -> AIMessageChunk:
        """The empty chunk that closes a stream, carrying finish reason and usage."""
        return AIMessageChunk("", id=self.message.id,
                              response_metadata=self.message.response_metadata,
                              usage_metadata=self.message.usage_metadata)


_OPTIONS = frozenset(f for f in ModelRequest.__dataclass_fields__ if f != "messages")


class ChatModel:
    """Base of every provider. `model` names it in ledgers and price books."""

    model: str = "model"
    provider: str | None = None  # OpenTelemetry's gen_ai.provider.name, where known

    def __init__(self, *, ledger: UsageLedger | None = None,
                 prices: PriceBook | None = None, **defaults: Any) -> None:
        unknown = set(defaults) - _OPTIONS
        if unknown:
            raise TypeError(f"unknown model option(s): {', '.join(sorted(unknown))}")
        self.ledger = ledger
        self.prices = prices
        self.defaults = defaults

    # -- what providers implement --------------------------------------------------------

    def _stream_raw(self, request: ModelRequest) -> Iterator[ModelDelta]:
        raise NotImplementedError(f"{type(self).__name__} does not implement _stream_raw")

    async def _astream_raw(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        """Default: the sync stream in a worker thread, handed over piece by piece."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def produce() -> None:
            try:
                for delta in self._stream_raw(request):
                    loop.call_soon_threadsafe(queue.put_nowait, ("delta", delta))
                    if stop.is_set():
                        break
                loop.call_soon_threadsafe(queue.put_nowait, ("end", None))
            except BaseException as exc:  # handed to the awaiting side
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

        worker = loop.run_in_executor(None, produce)
        try:
            while True:
                kind, item = await queue.get()
                if kind == "delta":
                    yield item
                elif kind == "error":
                    raise item
                else:
                    break
        finally:
            stop.set()
            await asyncio.shield(worker)

    # -- the public calls ----------------------------------------------------------------

    def request(self, messages: Any, **options: Any) -> ModelRequest:
        """Build the provider-neutral request; unknown options are refused by name."""
        unknown = set(options) - _OPTIONS
        if unknown:
            raise TypeError(f"unknown model option(s): {', '.join(sorted(unknown))}")
        merged = {**self.defaults, **{k: v for k, v in options.items() if v is not None}}
        if isinstance(merged.get("stop"), str):
            merged["stop"] = [merged["stop"]]
        messages = coerce_messages(messages)
        feedback = retry_feedback()
        if feedback:  # the node's previous output failed validate=: let the model fix it
            messages = [*messages, HumanMessage(
                f"Your previous answer was rejected: {feedback}. Answer again, fixing this.")]
        return ModelRequest(messages=messages, **merged)

    def generate(self, messages: Any, **options: Any) -> ModelResponse:
        """The full answer with its usage, finish reason and latency."""
        request = messages if isinstance(messages, ModelRequest) else self.request(
            messages, **options)
        call = _Call(self, request)
        with call.failing():
            for delta in self._stream_raw(request):
                call.add(delta)
        return call.finish()

    def invoke(self, messages: Any, **options: Any) -> AIMessage:
        return self.generate(messages, **options).message

    def stream(self, messages: Any, **options: Any) -> Iterator[AIMessageChunk]:
        request = self.request(messages, **options)
        call = _Call(self, request, always_stream=True)
        with call.failing():
            for delta in self._stream_raw(request):
                chunk = call.add(delta)
                if chunk is not None:
                    yield chunk
        yield call.finish().final_chunk()

    async def agenerate(self, messages: Any, **options: Any) -> ModelResponse:
        request = messages if isinstance(messages, ModelRequest) else self.request(
            messages, **options)
        call = _Call(self, request)
        with call.failing():
            async for delta in self._astream_raw(request):
                call.add(delta)
        return call.finish()

    async def ainvoke(self, messages: Any, **options: Any) -> AIMessage:
        return (await self.agenerate(messages, **options)).message

    async def astream(self, messages: Any, **options: Any) -> AsyncIterator[AIMessageChunk]:
        request = self.request(messages, **options)
        call = _Call(self, request, always_stream=True)
        with call.failing():
            async for delta in self._astream_raw(request):
                chunk = call.add(delta)
                if chunk is not None:
                    yield chunk
        yield call.finish().final_chunk()

    def structured(self, messages: Any, schema: type[SchemaT], **options: Any) -> SchemaT:
        """A validated `schema` instance; see `waypoint.models.structured`."""
        from .structured import structured_call

        return structured_call(self, messages, schema, **options)

    async def astructured(self, messages: Any, schema: type[SchemaT],
                          **options: Any) -> SchemaT:
        from .structured import astructured_call

        return await astructured_call(self, messages, schema, **options)

    def bind_tools(self, tools: Any, *, tool_choice: Any = None,
                   parallel_tool_calls: bool | None = None) -> ChatModel:
        """A copy that offers `tools` on every call (LangChain's name and meaning).

        `tools`: waypoint `Tool`s, functions, LangChain tools, pydantic models or OpenAI
        specs. `tool_choice`: "auto" (default), "none", "any"/"required" (must call one),
        or a tool's name. The answer's `tool_calls` have LangChain's shape, so `ToolNode`
        and `tools_condition` read them as they are."""
        from .tool_specs import tool_choice_value, tool_specs

        specs = tool_specs(tools)
        names = [s["function"]["name"] for s in specs]
        options: dict[str, Any] = {"tools": specs,
                                   "tool_choice": tool_choice_value(tool_choice, names)}
        if parallel_tool_calls is not None:
            options["extra"] = {**self.defaults.get("extra", {}),
                                "parallel_tool_calls": bool(parallel_tool_calls)}
        return self.with_options(**options)

    def with_options(self, **options: Any) -> ChatModel:
        """A copy with other default options (e.g. a lower `max_tokens`)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.defaults = {**self.defaults, **options}
        unknown = set(clone.defaults) - _OPTIONS
        if unknown:
            raise TypeError(f"unknown model option(s): {', '.join(sorted(unknown))}")
        return clone

    def price(self, usage: Usage | None) -> float | None:
        """Cost of a call in USD: from this model's price book, else from the price
        catalogue (price_catalog.py); None when neither knows the price."""
        if usage is None:
            return None
        if self.prices is not None and self.model in self.prices:
            return self.prices.cost(self.model, usage)
        from .price_catalog import catalog_cost

        return catalog_cost(self.model, usage, getattr(self, "base_url", None))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"


class _Call:
    """One call in progress: accumulates deltas, feeds the graph's token stream, and on
    finish builds the message and the ledger record. `model` needs only `.model` (a name),
    `.ledger` and `.price(usage)`: the gateway passes a stand-in naming the model that
    answered, with no ledger (it records the call itself, with `cached`)."""

    __slots__ = ("chunks", "finish_reason", "logprobs", "message_id", "model", "request",
                 "run_id", "scope", "started", "text", "ticket", "tool_calls", "usage")

    def __init__(self, model: ChatModel, request: ModelRequest,
                 always_stream: bool = False) -> None:
        self.model = model
        self.request = request
        self.message_id = new_message_id()
        self.started = time.perf_counter()
        self.text: list[str] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.logprobs: list[dict[str, Any]] = []
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.ticket = reserve_model_call(model, request)  # a budget's worst-case hold
        self.chunks = always_stream or streaming_tokens()
        self.run_id = on_model_start(model.model, request.messages) if self.chunks else None
        self.scope = observers.start("model", model.model, {
            "model": model.model, "provider": getattr(model, "provider", None),
            "server_address": getattr(model, "base_url", None), "request": request,
            "max_tokens": request.max_tokens, "temperature": request.temperature,
            "stream": self.chunks, **call_scope()}) if observers.OBSERVERS else None

    @contextmanager
    def failing(self) -> Iterator[None]:
        """Record a call that raised (or whose stream was dropped) as failed."""
        try:
            yield
        except BaseException as exc:
            self.fail(exc)
            raise

    def fail(self, error: BaseException) -> None:
        latency = time.perf_counter() - self.started
        model = self.model
        record = UsageRecord(model.model, self.usage or Usage(), model.price(self.usage or Usage()),
                             latency, outcome="error", **call_scope())
        record_usage(record)
        observers.end(self.scope, error if isinstance(error, Exception) else None,
                      outcome="error" if isinstance(error, Exception) else "cancelled",
                      latency_s=latency)

    def add(self, delta: ModelDelta) -> AIMessageChunk | None:
        if delta.usage is not None:
            self.usage = delta.usage
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason
        if delta.tool_calls:
            self.tool_calls.extend(delta.tool_calls)
        if delta.logprobs:
            self.logprobs.extend(delta.logprobs)
        if not delta.text and not delta.tool_calls:
            return None
        self.text.append(delta.text)
        if not self.chunks:
            return None
        chunk = AIMessageChunk(delta.text, id=self.message_id,
                               tool_calls=delta.tool_calls or None)
        on_model_token(self.run_id, chunk)
        return chunk

    def finish(self) -> ModelResponse:
        latency = time.perf_counter() - self.started
        model = self.model
        cost = model.price(self.usage)
        metadata: dict[str, Any] = {"finish_reason": self.finish_reason,
                                    "model_name": model.model}
        if self.logprobs:
            metadata["logprobs"] = {"content": self.logprobs}  # LangChain's place for them
        message = AIMessage(
            "".join(self.text), id=self.message_id, tool_calls=self.tool_calls or None,
            response_metadata=metadata,
            usage_metadata=self.usage.as_metadata() if self.usage is not None else None,
        )
        if self.chunks:
            on_model_end(self.run_id, message)
        settle_model_call(self.ticket, self.usage, cost)
        cached = bool(getattr(model, "cached", False))
        # A cached answer spent no tokens now: the ledger counts it at its cost (0), while
        # the message keeps the usage of the call that produced it.
        record = UsageRecord(model.model, Usage() if cached else self.usage or Usage(), cost,
                             latency, cached=cached, **call_scope())
        record_usage(record)
        if model.ledger is not None:
            model.ledger.record(record)
        if self.scope is not None:
            usage = self.usage
            observers.end(self.scope, outcome="ok", latency_s=latency, cost_usd=cost,
                          input_tokens=None if usage is None else usage.input_tokens,
                          output_tokens=None if usage is None else usage.output_tokens,
                          finish_reason=self.finish_reason, response_id=self.message_id,
                          response_model=model.model, cached=cached, message=message)
        return ModelResponse(message, self.usage, self.finish_reason, model.model, latency,
                             cost, self.logprobs or None)
