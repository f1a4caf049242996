"""`Gateway`: the one place every model call passes through.

A gateway is itself a `ChatModel` wrapping a chain of models. For each call it:

- answers from its `ResponseCache` when one is given and holds the request (cost 0);
- waits for room under the model's `RateLimit`, or skips the model when the wait would
  be too long;
- retries a transient failure (timeout, 429, 5xx) on the same model with exponential
  back-off and jitter, honouring the server's `retry_after`, then falls back to the next
  model; when every model failed it raises `AllModelsFailed` listing each attempt;
- re-raises a permanent failure at once: a `ModelConfigError` (bad key, unknown model,
  missing weights) is a deployment mistake that a fallback would only hide, and any other
  `PermanentModelError` (a refused request, `StructuredOutputError`) would fail the same
  way on every model;
- records one `UsageRecord` per successful call in its ledger, under the name of the
  model that answered, priced by its `PriceBook` (None when the price is unknown), tagged
  with the thread, run and node of the graph task that made the call. Failed attempts
  are not recorded (they surface in `AllModelsFailed.attempts` and in the log); the
  wrapped models record nothing themselves, since the gateway calls their raw streams.

Streaming falls back only while nothing has been streamed: once a model's tokens went out
(`stream`, `astream`, or a graph streaming tokens), its failure propagates. A plain
`generate`/`invoke` buffers each attempt, so a failure midway through an answer is still
retried.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..engine.context import call_scope
from ..messages import AIMessageChunk
from ..usage import Usage, UsageLedger, UsageRecord
from .base import ChatModel, ModelDelta, ModelRequest, ModelResponse, _Call
from .cache import CachedResponse, ResponseCache
from .errors import TransientModelError
from .ratelimit import (
    RateLimit,
    RateLimiter,
    RateLimitExceeded,
    Reservation,
    async_sleep_for,
    estimate_tokens,
)

if TYPE_CHECKING:
    from .pricing import PriceBook

log = logging.getLogger("waypoint.models.gateway")


class AllModelsFailed(TransientModelError):
    """Every model of a gateway's chain failed transiently. `attempts` lists each failed
    attempt in order as `(model name, error)`; the last error is also the `__cause__`."""

    def __init__(self, attempts: Sequence[tuple[str, TransientModelError]]) -> None:
        self.attempts = list(attempts)
        last = self.attempts[-1][1] if self.attempts else None
        listed = "; ".join(f"{name}: {_short(error)}" for name, error in self.attempts)
        super().__init__(f"all models failed after {len(self.attempts)} attempt(s): {listed}",
                         retry_after=None if last is None else last.retry_after)

    @property
    def last(self) -> TransientModelError | None:
        return self.attempts[-1][1] if self.attempts else None


def _short(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}({text})"


class _Served:
    """Stands in for the model in base's `_Call`: the name of the model that answered
    this call (known only once one did), its price, and no ledger (the gateway records)."""

    __slots__ = ("cached", "gateway", "ledger", "model", "source")

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.model = gateway.model
        self.source: ChatModel | None = None
        self.cached = False
        self.ledger = None

    def serve(self, model: ChatModel) -> None:
        self.source = model
        self.model = model.model

    def price(self, usage: Usage | None) -> float | None:
        if self.cached:
            return 0.0
        return self.gateway.cost_of(self.model, usage, self.source)

    def worst_cost(self, usage: Usage) -> float | None:
        """Before the call: the dearest model of the chain may be the one that answers."""
        costs = [self.gateway.cost_of(m.model, usage, m) for m in self.gateway.models]
        return None if any(c is None for c in costs) else max(costs, default=0.0)


class Gateway(ChatModel):
    """A fallback chain of models with retries, rate limits, prices, a ledger and a cache.

    `retries` is the number of extra attempts on the same model after a transient error;
    back-off starts at `backoff` seconds, doubles per retry, gets up to `jitter` (a
    fraction) added, and is capped at `max_backoff`. A server's `retry_after` is waited
    when it fits under the cap; a longer one sends the call to the next model at once.
    `sleep`, `asleep`, `clock` and `rng` are injectable so tests never wait."""

    def __init__(self, models: Sequence[ChatModel] | ChatModel, *,
                 prices: PriceBook | None = None, ledger: UsageLedger | None = None,
                 limits: Mapping[str, RateLimit] | None = None, retries: int = 2,
                 backoff: float = 0.5, max_backoff: float = 30.0, jitter: float = 0.1,
                 cache: ResponseCache | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 asleep: Callable[[float], Awaitable[None]] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, **defaults: Any) -> None:
        super().__init__(ledger=ledger if ledger is not None else UsageLedger(),
                         prices=prices, **defaults)
        chain = (models,) if isinstance(models, ChatModel) else tuple(models)
        if not chain:
            raise ValueError("Gateway needs at least one model")
        for item in chain:
            if not isinstance(item, ChatModel):
                raise TypeError(f"Gateway models must be ChatModel instances, got "
                                f"{type(item).__name__}: {item!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a whole number >= 0, got {retries!r}")
        if backoff < 0 or max_backoff < 0:
            raise ValueError(f"backoff and max_backoff must be >= 0, got {backoff!r}, "
                             f"{max_backoff!r}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be a fraction in [0, 1), got {jitter!r}")
        self.models: tuple[ChatModel, ...] = chain
        self.model = chain[0].model
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.jitter = jitter
        self.cache = cache
        self._sleep = sleep
        self._asleep = asleep if asleep is not None else async_sleep_for(sleep)
        self._rng = rng if rng is not None else random.Random()
        names = [m.model for m in chain]
        unknown = set(limits or {}) - set(names)
        if unknown:
            raise ValueError(f"rate limits given for model(s) not in the chain: "
                             f"{', '.join(sorted(unknown))} (the chain has {', '.join(names)})")
        self.limiters: dict[str, RateLimiter] = {
            name: RateLimiter(limit, name=name, clock=clock, sleep=sleep, asleep=self._asleep)
            for name, limit in (limits or {}).items()
        }

    # -- prices ----------------------------------------------------------------------------

    def cost_of(self, model: str, usage: Usage | None,
                source: ChatModel | None = None) -> float | None:
        """Cost of a call answered by `model`: from the gateway's price book, else from the
        answering model's own; None when neither knows the price (or no usage came back)."""
        if usage is None:
            return None
        if self.prices is not None and model in self.prices:
            return self.prices.cost(model, usage)
        return source.price(usage) if source is not None else None

    # -- the public calls ------------------------------------------------------------------

    def generate(self, messages: Any, **options: Any) -> ModelResponse:
        request = messages if isinstance(messages, ModelRequest) else self.request(
            messages, **options)
        served = _Served(self)
        call = _Call(served, request)
        key, hit = self._lookup(request)
        with call.failing():
            if hit is not None:
                call.add(self._replay(hit, served))
            else:
                for delta in self._chain(request, served, buffered=not call.chunks):
                    call.add(delta)
        return self._finish(call, served, key)

    def stream(self, messages: Any, **options: Any) -> Iterator[AIMessageChunk]:
        request = self.request(messages, **options)
        served = _Served(self)
        call = _Call(served, request, always_stream=True)
        key, hit = self._lookup(request)
        deltas = iter([self._replay(hit, served)]) if hit is not None else self._chain(
            request, served, buffered=False)
        with call.failing():
            for delta in deltas:
                chunk = call.add(delta)
                if chunk is not None:
                    yield chunk
        yield _last_chunk(self._finish(call, served, key))

    async def agenerate(self, messages: Any, **options: Any) -> ModelResponse:
        request = messages if isinstance(messages, ModelRequest) else self.request(
            messages, **options)
        served = _Served(self)
        call = _Call(served, request)
        key, hit = self._lookup(request)
        with call.failing():
            if hit is not None:
                call.add(self._replay(hit, served))
            else:
                async for delta in self._achain(request, served, buffered=not call.chunks):
                    call.add(delta)
        return self._finish(call, served, key)

    async def astream(self, messages: Any, **options: Any) -> AsyncIterator[AIMessageChunk]:
        request = self.request(messages, **options)
        served = _Served(self)
        call = _Call(served, request, always_stream=True)
        key, hit = self._lookup(request)
        with call.failing():
            if hit is not None:
                chunk = call.add(self._replay(hit, served))
                if chunk is not None:
                    yield chunk
            else:
                async for delta in self._achain(request, served, buffered=False):
                    chunk = call.add(delta)
                    if chunk is not None:
                        yield chunk
        yield _last_chunk(self._finish(call, served, key))

    # A gateway inside another gateway is a plain fallback chain: the outer one records,
    # prices and caches.

    def _stream_raw(self, request: ModelRequest) -> Iterator[ModelDelta]:
        return self._chain(request, _Served(self), buffered=False)

    def _astream_raw(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        return self._achain(request, _Served(self), buffered=False)

    # -- the chain -------------------------------------------------------------------------

    def _chain(self, request: ModelRequest, served: _Served, *,
               buffered: bool) -> Iterator[ModelDelta]:
        attempts: list[tuple[str, TransientModelError]] = []
        for index, model in enumerate(self.models):
            req = _with_model_defaults(model, request)
            limiter = self.limiters.get(model.model)
            delay: float | None = 0.0
            for attempt in range(self.retries + 1):
                if attempt and delay:
                    self._sleep(delay)
                streamed = False
                try:
                    ticket = limiter.acquire(estimate_tokens(req)) if limiter else None
                    served.serve(model)
                    pending: list[ModelDelta] = []
                    usage: Usage | None = None
                    try:
                        for delta in model._stream_raw(req):
                            if delta.usage is not None:
                                usage = delta.usage
                            if buffered:
                                pending.append(delta)
                            else:
                                streamed = streamed or bool(delta.text or delta.tool_calls)
                                yield delta
                    finally:
                        if ticket is not None:
                            limiter.settle(ticket, _tokens(usage))
                    yield from pending
                    return
                except TransientModelError as exc:
                    if streamed:
                        raise
                    attempts.append((model.model, exc))
                    delay = self._next_delay(attempt, exc)
                    if delay is None:
                        break
                    log.warning("model %s failed (attempt %d): %s; retrying in %.2fs",
                                model.model, attempt + 1, _short(exc), delay)
            if index + 1 < len(self.models):
                log.warning("model %s gave up; falling back to %s", model.model,
                            self.models[index + 1].model)
        raise AllModelsFailed(attempts) from attempts[-1][1]

    async def _achain(self, request: ModelRequest, served: _Served, *,
                      buffered: bool) -> AsyncIterator[ModelDelta]:
        attempts: list[tuple[str, TransientModelError]] = []
        for index, model in enumerate(self.models):
            req = _with_model_defaults(model, request)
            limiter = self.limiters.get(model.model)
            delay: float | None = 0.0
            for attempt in range(self.retries + 1):
                if attempt and delay:
                    await self._asleep(delay)
                streamed = False
                try:
                    ticket: Reservation | None = None
                    if limiter is not None:
                        ticket = await limiter.aacquire(estimate_tokens(req))
                    served.serve(model)
                    pending: list[ModelDelta] = []
                    usage: Usage | None = None
                    try:
                        async for delta in model._astream_raw(req):
                            if delta.usage is not None:
                                usage = delta.usage
                            if buffered:
                                pending.append(delta)
                            else:
                                streamed = streamed or bool(delta.text or delta.tool_calls)
                                yield delta
                    finally:
                        if ticket is not None and limiter is not None:
                            limiter.settle(ticket, _tokens(usage))
                    for delta in pending:
                        yield delta
                    return
                except TransientModelError as exc:
                    if streamed:
                        raise
                    attempts.append((model.model, exc))
                    delay = self._next_delay(attempt, exc)
                    if delay is None:
                        break
                    log.warning("model %s failed (attempt %d): %s; retrying in %.2fs",
                                model.model, attempt + 1, _short(exc), delay)
            if index + 1 < len(self.models):
                log.warning("model %s gave up; falling back to %s", model.model,
                            self.models[index + 1].model)
        raise AllModelsFailed(attempts) from attempts[-1][1]

    def _next_delay(self, attempt: int, error: TransientModelError) -> float | None:
        """Seconds before retrying the same model, or None to move on to the next model
        (no retries left, a local limit refused the call, or the server asked for a wait
        longer than `max_backoff`)."""
        if attempt >= self.retries or isinstance(error, RateLimitExceeded):
            return None
        delay = self.backoff * 2 ** attempt * (1 + self.jitter * self._rng.random())
        delay = min(delay, self.max_backoff)
        if error.retry_after is not None:
            if error.retry_after > self.max_backoff:
                return None
            delay = max(delay, error.retry_after)
        return delay

    # -- cache and ledger ------------------------------------------------------------------

    def _lookup(self, request: ModelRequest) -> tuple[str | None, CachedResponse | None]:
        if self.cache is None or not self.cache.cacheable(request):
            return None, None
        key = self.cache.key([m.model for m in self.models], request)
        return key, self.cache.get(key)

    @staticmethod
    def _replay(hit: CachedResponse, served: _Served) -> ModelDelta:
        served.model = hit.model
        served.cached = True
        return ModelDelta(hit.text, copy.deepcopy(list(hit.tool_calls)) or None,
                          hit.finish_reason, hit.usage)

    def _finish(self, call: _Call, served: _Served, key: str | None) -> ModelResponse:
        response = call.finish()
        assert self.ledger is not None
        # A cached answer spent no tokens now: its record counts the call at cost 0, while
        # the returned message keeps the usage of the call that produced it.
        usage = Usage() if served.cached else (response.usage or Usage())
        self.ledger.record(UsageRecord(response.model, usage, response.cost_usd,
                                       response.latency_s, cached=served.cached,
                                       **call_scope()))  # (_Call.finish wrote the run's)
        if key is not None and not served.cached and self.cache is not None:
            message = response.message
            self.cache.put(key, CachedResponse(response.model, message.content,
                                               tuple(copy.deepcopy(message.tool_calls or [])),
                                               response.finish_reason, response.usage))
        return response

    def __repr__(self) -> str:
        return f"Gateway({', '.join(m.model for m in self.models)})"


def _with_model_defaults(model: ChatModel, request: ModelRequest) -> ModelRequest:
    """The request as `model` should get it: options the call left unset take the model's
    own defaults (e.g. a `max_tokens` given to that model's constructor)."""
    if not model.defaults:
        return request
    changes: dict[str, Any] = {}
    for name, value in model.defaults.items():
        if name == "extra":
            changes["extra"] = {**value, **request.extra}
        elif getattr(request, name) is None:
            changes[name] = [value] if name == "stop" and isinstance(value, str) else value
    return replace(request, **changes) if changes else request


def _tokens(usage: Usage | None) -> int | None:
    return None if usage is None else usage.total_tokens


def _last_chunk(response: ModelResponse) -> AIMessageChunk:
    message = response.message
    return AIMessageChunk("", id=message.id, response_metadata=message.response_metadata,
                          usage_metadata=message.usage_metadata)
