"""The model gateway: fallback chain, retries, prices, ledger, rate limits and cache.

Every model here is a `ScriptedModel`; sleeps go to a fake clock, so the tests assert the
delays the gateway asked for, never how long anything took.
"""

import asyncio
import operator
import threading
from typing import Annotated, TypedDict

import pytest

from waypoint import END, START, StateGraph
from waypoint.checkpoint import MemorySaver
from waypoint.messages import AIMessage, AIMessageChunk
from waypoint.models import (
    ChatModel,
    ModelConfigError,
    ModelTimeout,
    ModelUnavailable,
    PermanentModelError,
    Price,
    PriceBook,
    RateLimited,
    Reply,
    ScriptedModel,
    StructuredOutputError,
    TransientModelError,
    Usage,
    UsageLedger,
)
from waypoint.models.cache import CachedResponse, ResponseCache, SqliteResponseCache
from waypoint.models.gateway import AllModelsFailed, Gateway
from waypoint.models.ratelimit import (
    RateLimit,
    RateLimiter,
    RateLimitExceeded,
    estimate_tokens,
)


class FakeClock:
    """A clock that only moves when something sleeps on it; remembers every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def gateway(models, clock, **kwargs) -> Gateway:
    kwargs.setdefault("jitter", 0.0)
    return Gateway(models, sleep=clock.sleep, clock=clock, **kwargs)


def timeout(name="a"):
    return ModelTimeout("no answer within 30s", model=name)


def too_many(name="a", retry_after=None):
    return RateLimited("429 slow down", model=name, status=429, retry_after=retry_after)


def unavailable(name="a"):
    return ModelUnavailable("503 overloaded", model=name, status=503)


class BreaksMidStream(ScriptedModel):
    """Streams the first `after` tokens of its reply, then times out."""

    def __init__(self, responses, *, after: int = 2, **kwargs) -> None:
        super().__init__(responses, **kwargs)
        self.after = after

    def _stream_raw(self, request):
        for i, delta in enumerate(super()._stream_raw(request)):
            if i == self.after:
                raise ModelTimeout("connection dropped mid-answer", model=self.model)
            yield delta


# ------------------------------------------------------------------------ fallback chain


def test_a_gateway_is_a_chat_model_named_after_its_first_model(clock):
    gw = gateway([ScriptedModel(["hi"], model="a"), ScriptedModel(["x"], model="b")], clock)
    assert isinstance(gw, ChatModel)
    assert gw.model == "a"
    message = gw.invoke("hello")
    assert isinstance(message, AIMessage)
    assert message.content == "hi"
    assert message.response_metadata["model_name"] == "a"


@pytest.mark.parametrize("error", [timeout, too_many, unavailable],
                         ids=["timeout", "429", "5xx"])
def test_transient_failures_are_retried_then_fall_back_to_the_next_model(clock, error):
    a = ScriptedModel([error(), error(), error()], model="a")
    b = ScriptedModel(["from b"], model="b")
    gw = gateway([a, b], clock, retries=2)
    message = gw.invoke("hello")
    assert message.content == "from b"
    assert message.response_metadata["model_name"] == "b"
    assert len(a.requests) == 3  # one call and two retries
    assert len(b.requests) == 1
    assert [r.model for r in gw.ledger] == ["b"]


def test_a_retry_that_succeeds_stays_on_the_same_model(clock):
    a = ScriptedModel([timeout(), "second try"], model="a")
    b = ScriptedModel(["never"], model="b")
    gw = gateway([a, b], clock)
    assert gw.invoke("q").content == "second try"
    assert len(b.requests) == 0
    assert len(gw.ledger) == 1


def test_retry_delays_grow_exponentially_and_honour_retry_after(clock):
    a = ScriptedModel([timeout(), unavailable(), too_many(retry_after=7.0), timeout(), "ok"],
                      model="a")
    gw = gateway([a], clock, retries=4, backoff=0.5, max_backoff=30.0)
    assert gw.invoke("q").content == "ok"
    # 0.5, 1.0, then the server asked for 7s (more than the 2.0 back-off), then 4.0
    assert clock.sleeps == [0.5, 1.0, 7.0, 4.0]


def test_jittered_delays_still_grow_and_are_capped(clock):
    import random

    a = ScriptedModel([timeout()] * 6 + ["ok"], model="a")
    gw = Gateway(a, sleep=clock.sleep, clock=clock, retries=6, backoff=0.5, max_backoff=10.0,
                 jitter=0.5, rng=random.Random(7))
    gw.invoke("q")
    assert len(clock.sleeps) == 6
    uncapped = [d for d in clock.sleeps if d < 10.0]
    assert uncapped == sorted(uncapped) and len(set(uncapped)) == len(uncapped)
    assert all(0.5 * 2**i <= d <= 0.75 * 2**i for i, d in enumerate(uncapped))
    assert max(clock.sleeps) == 10.0


def test_a_retry_after_longer_than_the_cap_moves_to_the_next_model_at_once(clock):
    a = ScriptedModel([too_many(retry_after=120.0)], model="a")
    b = ScriptedModel(["b answers"], model="b")
    gw = gateway([a, b], clock, retries=3, max_backoff=30.0)
    assert gw.invoke("q").content == "b answers"
    assert len(a.requests) == 1
    assert clock.sleeps == []


def test_retries_zero_means_one_attempt_per_model(clock):
    a = ScriptedModel([timeout()], model="a")
    b = ScriptedModel([timeout("b")], model="b")
    gw = gateway([a, b], clock, retries=0)
    with pytest.raises(AllModelsFailed) as excinfo:
        gw.invoke("q")
    assert [name for name, _ in excinfo.value.attempts] == ["a", "b"]
    assert clock.sleeps == []


def test_a_config_error_is_never_masked_by_a_fallback(clock):
    a = ScriptedModel([ModelConfigError("401 invalid API key", model="a", status=401)],
                      model="a")
    b = ScriptedModel(["would hide the mistake"], model="b")
    gw = gateway([a, b], clock)
    with pytest.raises(ModelConfigError, match="invalid API key"):
        gw.invoke("q")
    assert len(a.requests) == 1
    assert len(b.requests) == 0
    assert len(gw.ledger) == 0


@pytest.mark.parametrize("error", [
    PermanentModelError("400 context too long", model="a", status=400),
    StructuredOutputError("answer does not fit the schema", model="a", raw="{"),
])
def test_permanent_errors_fail_the_call_without_fallback(clock, error):
    a = ScriptedModel([error], model="a")
    b = ScriptedModel(["no"], model="b")
    gw = gateway([a, b], clock)
    with pytest.raises(type(error)) as excinfo:
        gw.invoke("q")
    assert excinfo.value is error
    assert len(b.requests) == 0
    assert clock.sleeps == []


def test_errors_that_are_not_model_errors_propagate_unchanged(clock):
    a = ScriptedModel([ValueError("a bug in a provider")], model="a")
    b = ScriptedModel(["no"], model="b")
    with pytest.raises(ValueError, match="a bug in a provider"):
        gateway([a, b], clock).invoke("q")
    assert len(b.requests) == 0


def test_when_all_models_fail_every_attempt_is_listed(clock):
    a = ScriptedModel([timeout("a"), unavailable("a")], model="a")
    b = ScriptedModel([too_many("b", retry_after=1.0), too_many("b", retry_after=2.0)],
                      model="b")
    gw = gateway([a, b], clock, retries=1)
    with pytest.raises(AllModelsFailed) as excinfo:
        gw.invoke("q")
    failed = excinfo.value
    assert isinstance(failed, TransientModelError)
    assert [(name, type(err)) for name, err in failed.attempts] == [
        ("a", ModelTimeout), ("a", ModelUnavailable), ("b", RateLimited), ("b", RateLimited)]
    assert failed.last is failed.attempts[-1][1]
    assert failed.__cause__ is failed.last
    assert failed.retry_after == 2.0
    assert "4 attempt(s)" in str(failed) and "503 overloaded" in str(failed)
    assert len(gw.ledger) == 0


def test_the_models_behind_a_gateway_record_nothing_themselves(clock):
    own = UsageLedger()
    a = ScriptedModel([timeout(), "ok"], model="a", ledger=own)
    gw = gateway([a], clock)
    gw.invoke("q")
    assert len(own) == 0
    assert len(gw.ledger) == 1


def test_each_model_gets_its_own_default_options(clock):
    a = ScriptedModel([timeout()], model="a", max_tokens=3)
    b = ScriptedModel(["one two three four five"], model="b", max_tokens=2, temperature=0.0)
    gw = gateway([a, b], clock, retries=0)
    message = gw.invoke("q", temperature=0.5)
    assert a.requests[0].max_tokens == 3
    assert b.requests[0].max_tokens == 2
    assert b.requests[0].temperature == 0.5  # the call's own option wins
    assert message.content == "one two"
    assert message.response_metadata["finish_reason"] == "length"


def test_a_gateway_can_be_a_link_of_another_gateway(clock):
    inner = gateway([ScriptedModel([timeout()], model="a"),
                     ScriptedModel(["from b"], model="b")], clock, retries=0)
    outer = gateway([inner, ScriptedModel(["from c"], model="c")], clock, retries=0)
    assert outer.invoke("q").content == "from b"
    assert len(outer.ledger) == 1
    assert len(inner.ledger) == 0


def test_bad_configuration_is_refused_by_name():
    a = ScriptedModel(["x"], model="a")
    with pytest.raises(ValueError, match="at least one model"):
        Gateway([])
    with pytest.raises(TypeError, match="ChatModel instances"):
        Gateway([a, "gpt-4o"])
    with pytest.raises(ValueError, match="not in the chain: gpt-4o"):
        Gateway(a, limits={"gpt-4o": RateLimit(requests_per_minute=10)})
    with pytest.raises(ValueError, match="retries"):
        Gateway(a, retries=-1)
    with pytest.raises(ValueError, match="requests_per_minute"):
        RateLimit(requests_per_minute=0)


# ------------------------------------------------------------------------- prices, ledger


def test_a_known_price_gives_the_exact_cost(clock):
    prices = PriceBook({"a": Price(2.0, 10.0)})
    a = ScriptedModel([Reply("answer", usage=Usage(1000, 500))], model="a")
    gw = gateway([a], clock, prices=prices)
    response = gw.generate("q")
    assert response.cost_usd == (1000 * 2.0 + 500 * 10.0) / 1_000_000
    assert response.usage == Usage(1000, 500)
    total = gw.ledger.total()
    assert total.cost_usd == response.cost_usd
    assert (total.calls, total.input_tokens, total.output_tokens) == (1, 1000, 500)


def test_the_model_that_answered_is_the_one_priced(clock):
    prices = PriceBook({"a": Price(100.0, 100.0), "b": Price(1.0, 2.0)})
    a = ScriptedModel([unavailable()], model="a")
    b = ScriptedModel([Reply("b", usage=Usage(10, 20))], model="b")
    gw = gateway([a, b], clock, prices=prices, retries=0)
    assert gw.generate("q").cost_usd == (10 * 1.0 + 20 * 2.0) / 1_000_000
    assert gw.ledger.total(model="a").calls == 0
    assert gw.ledger.total(model="b").calls == 1


def test_an_unknown_price_is_none_and_makes_the_total_unpriced(clock):
    prices = PriceBook({"a": Price(1.0, 1.0)})
    a = ScriptedModel([Reply("a", usage=Usage(5, 5)), unavailable()], model="a")
    b = ScriptedModel([Reply("b", usage=Usage(7, 3))], model="b")
    gw = gateway([a, b], clock, prices=prices, retries=0)
    assert gw.generate("one").cost_usd == 10 / 1_000_000
    assert gw.generate("two").cost_usd is None
    total = gw.ledger.total()
    assert total.calls == 2
    assert total.cost_usd is None
    assert total.unpriced_calls == 1
    assert total.total_tokens == 20
    assert gw.ledger.total(model="a").cost_usd == 10 / 1_000_000


def test_no_price_book_means_no_cost_never_zero(clock):
    gw = gateway([ScriptedModel(["x"], model="a")], clock)
    assert gw.generate("q").cost_usd is None
    assert gw.ledger.records()[0].cost_usd is None


def test_a_free_model_is_priced_at_zero_explicitly(clock):
    gw = gateway([ScriptedModel(["x"], model="local")], clock,
                 prices=PriceBook({"local": (0.0, 0.0)}))
    assert gw.generate("q").cost_usd == 0.0
    assert gw.ledger.total().cost_usd == 0.0


class Notes(TypedDict, total=False):
    topic: str
    notes: Annotated[list, operator.add]


def _two_node_graph(gw: Gateway):
    def draft(state: Notes) -> Notes:
        return {"notes": [gw.invoke(f"draft {state['topic']}").content]}

    def review(state: Notes) -> Notes:
        return {"notes": [gw.invoke(f"review {state['notes'][-1]}").content]}

    builder = StateGraph(Notes)
    builder.add_node("draft", draft)
    builder.add_node("review", review)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "review")
    builder.add_edge("review", END)
    return builder.compile(checkpointer=MemorySaver())


async def test_the_ledger_tags_calls_with_thread_run_and_node(run, clock):
    a = ScriptedModel([Reply("short draft", usage=Usage(10, 2)),
                       Reply("looks good to me", usage=Usage(20, 4))], model="a", cycle=True)
    gw = gateway([a], clock, prices=PriceBook({"a": Price(1.0, 1.0)}))
    graph = _two_node_graph(gw)
    await run(graph, {"topic": "tides"}, {"configurable": {"thread_id": "t1"}})
    await run(graph, {"topic": "moons"}, {"configurable": {"thread_id": "t2"}})
    await run(graph, {"topic": "winds"}, {"configurable": {"thread_id": "t1"}})

    assert gw.ledger.total(thread_id="t1").calls == 4
    assert gw.ledger.total(thread_id="t2").calls == 2
    draft_t1 = gw.ledger.total(thread_id="t1", node="draft")
    assert (draft_t1.calls, draft_t1.input_tokens, draft_t1.output_tokens) == (2, 20, 4)
    review_t2 = gw.ledger.total(thread_id="t2", node="review")
    assert (review_t2.calls, review_t2.input_tokens, review_t2.output_tokens) == (1, 20, 4)
    assert review_t2.cost_usd == 24 / 1_000_000
    assert set(gw.ledger.by_node(thread_id="t1")) == {"draft", "review"}
    runs = {r.run_id for r in gw.ledger.records(thread_id="t1")}
    assert len(runs) == 2 and None not in runs
    for run_id in runs:
        assert [r.node for r in gw.ledger.records(run_id=run_id)] == ["draft", "review"]


def test_calls_outside_a_graph_have_no_scope(clock):
    gw = gateway([ScriptedModel(["x"], model="a")], clock)
    gw.invoke("q")
    record = gw.ledger.records()[0]
    assert (record.thread_id, record.run_id, record.node) == (None, None, None)


# ---------------------------------------------------------------------------- rate limits


def test_requests_per_minute_make_the_third_call_wait(clock):
    a = ScriptedModel(["one", "two", "three"], model="a")
    gw = gateway([a], clock, limits={"a": RateLimit(requests_per_minute=2, max_wait=60.0)})
    assert [gw.invoke("q").content for _ in range(3)] == ["one", "two", "three"]
    assert clock.sleeps == [30.0]  # one request comes back every 60/2 s


def test_a_wait_longer_than_max_wait_falls_back_to_the_next_model(clock):
    a = ScriptedModel(["one", "two", "four"], model="a")
    b = ScriptedModel(["three from b"], model="b")
    gw = gateway([a, b], clock, limits={"a": RateLimit(requests_per_minute=2, max_wait=5.0)})
    assert [gw.invoke("q").content for _ in range(3)] == ["one", "two", "three from b"]
    assert clock.sleeps == []
    assert len(a.requests) == 2
    clock.now += 30.0  # a request's worth of quota came back
    assert gw.invoke("q").content == "four"


def test_a_local_limit_with_no_fallback_fails_as_rate_limited(clock):
    a = ScriptedModel(["one"], model="a")
    gw = gateway([a], clock, limits={"a": RateLimit(requests_per_minute=1, max_wait=1.0)})
    gw.invoke("q")
    with pytest.raises(AllModelsFailed) as excinfo:
        gw.invoke("q")
    [(name, error)] = excinfo.value.attempts
    assert name == "a"
    assert isinstance(error, RateLimitExceeded) and isinstance(error, RateLimited)
    assert error.retry_after == pytest.approx(60.0)
    assert "max_wait=1.0s" in str(error)


def test_tokens_per_minute_settle_with_the_real_usage(clock):
    a = ScriptedModel([Reply("x", usage=Usage(90, 10)), Reply("y", usage=Usage(1, 1))],
                      model="a")
    gw = gateway([a], clock, limits={"a": RateLimit(tokens_per_minute=100, max_wait=60.0)})
    prompt = "w" * 200  # about 50 tokens, plus max_tokens=10: 60 reserved
    assert estimate_tokens(gw.request(prompt, max_tokens=10)) == 60
    gw.invoke(prompt, max_tokens=10)  # reserved 60, really used 100: bucket now empty
    assert clock.sleeps == []
    gw.invoke(prompt, max_tokens=10)  # needs 60 tokens at 100/60 per second
    assert clock.sleeps == [pytest.approx(36.0)]


def test_a_failed_call_gives_its_token_estimate_back(clock):
    limiter = RateLimiter(RateLimit(tokens_per_minute=100, max_wait=0.0), clock=clock,
                          sleep=clock.sleep)
    ticket = limiter.acquire(80)
    limiter.settle(ticket, None)
    assert limiter.acquire(100).wait == 0.0


def test_concurrent_reservations_queue_up_in_order(clock):
    limiter = RateLimiter(RateLimit(requests_per_minute=10, max_wait=1000.0), clock=clock)
    waits: list[float] = []
    lock = threading.Lock()

    def reserve() -> None:
        for _ in range(5):
            wait = limiter.reserve(1).wait
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=reserve) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits) == pytest.approx([0.0] * 10 + [6.0 * i for i in range(1, 11)])


async def test_the_async_path_waits_without_blocking(clock):
    a = ScriptedModel(["one", "two", "three"], model="a")
    gw = gateway([a], clock, limits={"a": RateLimit(requests_per_minute=2, max_wait=60.0)})
    answers = [(await gw.ainvoke("q")).content for _ in range(3)]
    assert answers == ["one", "two", "three"]
    assert clock.sleeps == [30.0]


# --------------------------------------------------------------------------- async paths


async def test_ainvoke_falls_back_and_records(clock):
    a = ScriptedModel([timeout(), timeout()], model="a")
    b = ScriptedModel([Reply("async b", usage=Usage(3, 2))], model="b")
    gw = gateway([a, b], clock, retries=1, prices=PriceBook({"b": (1.0, 1.0)}))
    message = await gw.ainvoke("q")
    assert message.content == "async b"
    assert message.response_metadata["model_name"] == "b"
    assert clock.sleeps == [0.5]
    assert gw.ledger.total().cost_usd == 5 / 1_000_000


async def test_ainvoke_does_not_mask_a_config_error(clock):
    a = ScriptedModel([ModelConfigError("model not found", model="a", status=404)], model="a")
    b = ScriptedModel(["no"], model="b")
    with pytest.raises(ModelConfigError):
        await gateway([a, b], clock).ainvoke("q")
    assert len(b.requests) == 0


async def test_ainvoke_all_failing_lists_attempts(clock):
    a = ScriptedModel([unavailable()], model="a")
    b = ScriptedModel([unavailable("b")], model="b")
    with pytest.raises(AllModelsFailed) as excinfo:
        await gateway([a, b], clock, retries=0).ainvoke("q")
    assert [name for name, _ in excinfo.value.attempts] == ["a", "b"]


async def test_astream_falls_back_while_nothing_was_streamed(clock):
    a = ScriptedModel([unavailable()], model="a")
    b = ScriptedModel(["streamed by b"], model="b")
    gw = gateway([a, b], clock, retries=0)
    chunks = [chunk async for chunk in gw.astream("q")]
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert "".join(c.content for c in chunks) == "streamed by b"
    assert chunks[-1].response_metadata["model_name"] == "b"
    assert len(gw.ledger) == 1


async def test_astream_failure_after_tokens_propagates(clock):
    a = BreaksMidStream(["one two three four"], model="a", after=2)
    b = ScriptedModel(["never"], model="b")
    gw = gateway([a, b], clock)
    received = []
    with pytest.raises(ModelTimeout, match="mid-answer"):
        async for chunk in gw.astream("q"):
            received.append(chunk.content)
    assert received == ["one", " two"]
    assert len(a.requests) == 1
    assert len(b.requests) == 0
    assert len(gw.ledger) == 0


# ------------------------------------------------------------------------------ streaming


def test_stream_falls_back_while_nothing_was_streamed(clock):
    a = ScriptedModel([timeout()], model="a")
    b = ScriptedModel(["b streams"], model="b")
    chunks = list(gateway([a, b], clock, retries=0).stream("q"))
    assert "".join(c.content for c in chunks) == "b streams"
    assert chunks[-1].response_metadata["model_name"] == "b"


def test_stream_failure_after_tokens_propagates_without_fallback(clock):
    a = BreaksMidStream(["one two three"], model="a", after=1)
    b = ScriptedModel(["never"], model="b")
    gw = gateway([a, b], clock)
    received = []
    with pytest.raises(ModelTimeout):
        for chunk in gw.stream("q"):
            received.append(chunk.content)
    assert received == ["one"]
    assert len(a.requests) == 1 and len(b.requests) == 0


def test_invoke_retries_a_failure_midway_since_nothing_went_out(clock):
    a = BreaksMidStream(["one two three", "one two three"], model="a", after=2)
    b = ScriptedModel(["whole answer from b"], model="b")
    gw = gateway([a, b], clock, retries=1)
    message = gw.invoke("q")
    assert message.content == "whole answer from b"  # no half answer from a leaks in
    assert len(a.requests) == 2


def test_a_graph_streaming_tokens_sees_no_fallback_after_tokens(clock):
    a = BreaksMidStream(["one two three"], model="a", after=1)
    b = ScriptedModel(["never"], model="b")
    gw = gateway([a, b], clock)

    def ask(state: Notes) -> Notes:
        return {"notes": [gw.invoke("q").content]}

    builder = StateGraph(Notes)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    graph = builder.compile()
    tokens = []
    with pytest.raises(ModelTimeout):
        for chunk, _meta in graph.stream({"topic": "x"}, stream_mode="messages"):
            tokens.append(chunk.content)
    assert tokens == ["one"]
    assert len(b.requests) == 0


# ---------------------------------------------------------------------------------- cache


def test_a_cache_hit_does_not_call_the_model_and_costs_nothing(clock):
    a = ScriptedModel([Reply("cached answer", usage=Usage(100, 50))], model="a")
    cache = ResponseCache()
    gw = gateway([a], clock, cache=cache, prices=PriceBook({"a": (1.0, 1.0)}))
    first = gw.generate("q", temperature=0)
    second = gw.generate("q", temperature=0)
    assert len(a.requests) == 1
    assert second.message.content == "cached answer"
    assert second.message.id != first.message.id
    assert second.cost_usd == 0.0
    assert second.usage == Usage(100, 50)  # the answer's own usage, as first reported
    assert second.message.response_metadata["model_name"] == "a"
    fresh, hit = gw.ledger.records()
    assert (fresh.cached, fresh.cost_usd) == (False, 150 / 1_000_000)
    assert (hit.cached, hit.cost_usd, hit.usage) == (True, 0.0, Usage())
    assert gw.ledger.total().cost_usd == 150 / 1_000_000
    assert (cache.hits, cache.misses) == (1, 1)


def test_the_cache_key_covers_messages_and_options(clock):
    a = ScriptedModel(["1", "2", "3", "4"], model="a")
    gw = gateway([a], clock, cache=ResponseCache())
    assert gw.invoke("q").content == "1"
    assert gw.invoke("other question").content == "2"
    assert gw.invoke("q", max_tokens=5).content == "3"
    assert gw.invoke("q", seed=1).content == "4"
    assert gw.invoke("q").content == "1"
    assert len(a.requests) == 4


def test_sampled_calls_are_not_cached_unless_asked(clock):
    a = ScriptedModel(["1", "2", "3", "4"], model="a")
    gw = gateway([a], clock, cache=ResponseCache())
    assert [gw.invoke("q", temperature=0.7).content for _ in range(2)] == ["1", "2"]
    gw2 = gateway([a], clock, cache=ResponseCache(cache_nondeterministic=True))
    assert [gw2.invoke("q", temperature=0.7).content for _ in range(2)] == ["3", "3"]


def test_a_cache_hit_streams_the_text_as_one_chunk(clock):
    a = ScriptedModel(["several words of answer"], model="a")
    gw = gateway([a], clock, cache=ResponseCache())
    streamed = list(gw.stream("q"))
    assert len(streamed) == 5  # four tokens and the closing chunk
    replayed = list(gw.stream("q"))
    assert [c.content for c in replayed] == ["several words of answer", ""]
    assert replayed[-1].response_metadata["finish_reason"] == "stop"
    assert len(a.requests) == 1


async def test_the_async_paths_use_the_cache_too(clock):
    a = ScriptedModel([{"text": "", "tool_calls": [{"name": "lookup", "args": {"q": 1}}]}],
                      model="a")
    gw = gateway([a], clock, cache=ResponseCache())
    first = await gw.ainvoke("q")
    second = await gw.ainvoke("q")
    assert second.tool_calls == first.tool_calls
    second.tool_calls[0]["args"]["q"] = 2  # a caller's change does not leak into the cache
    chunks = [c async for c in gw.astream("q")]
    assert chunks[0].tool_calls[0]["args"] == {"q": 1}
    assert len(a.requests) == 1
    assert [r.cached for r in gw.ledger] == [False, True, True]


def test_failed_calls_are_not_cached(clock):
    a = ScriptedModel([unavailable(), "ok"], model="a")
    gw = gateway([a], clock, cache=ResponseCache(), retries=0)
    with pytest.raises(AllModelsFailed):
        gw.invoke("q")
    assert gw.invoke("q").content == "ok"


def test_cache_entries_expire_and_are_evicted_least_recently_used(clock):
    cache = ResponseCache(max_entries=2, ttl=60.0, clock=clock)
    for key in ("k1", "k2"):
        cache.put(key, CachedResponse("a", key))
    assert cache.get("k1") is not None  # k1 is now the most recently used
    cache.put("k3", CachedResponse("a", "k3"))
    assert cache.get("k2") is None
    assert cache.get("k1").text == "k1"
    clock.now += 60.0
    assert cache.get("k1") is None
    assert len(cache) == 1  # k3 is expired too, but only removed when read


def test_a_sqlite_cache_survives_a_restart(tmp_path, clock):
    path = tmp_path / "answers.db"
    a = ScriptedModel([Reply("kept", usage=Usage(4, 1))], model="a")
    first = SqliteResponseCache(path)
    gateway([a], clock, cache=first).invoke("q")
    first.close()
    second = SqliteResponseCache(path)
    gw = gateway([a], clock, cache=second)
    response = gw.generate("q")
    assert response.message.content == "kept"
    assert response.usage == Usage(4, 1)
    assert len(a.requests) == 1
    assert gw.ledger.records()[0].cached
    second.close()


def test_a_sqlite_cache_keeps_at_most_max_entries(tmp_path):
    ticks = iter(range(100))
    cache = SqliteResponseCache(tmp_path / "c.db", max_entries=2, clock=lambda: next(ticks))
    for key in ("k1", "k2", "k3"):
        cache.put(key, CachedResponse("a", key))
    assert len(cache) == 2
    assert cache.get("k1") is None
    assert cache.get("k3").text == "k3"
    cache.close()


def test_concurrent_calls_share_limits_cache_and_ledger(clock):
    a = ScriptedModel(["same"], model="a", cycle=True)
    gw = Gateway(a, cache=ResponseCache(), sleep=clock.sleep, clock=clock)
    barrier = threading.Barrier(4)
    answers: list[str] = []

    def call() -> None:
        barrier.wait()
        for _ in range(5):
            answers.append(gw.invoke("q").content)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == ["same"] * 20
    assert len(gw.ledger) == 20
    assert sum(not r.cached for r in gw.ledger) == len(a.requests)


async def test_async_calls_in_parallel_each_get_one_record(clock):
    a = ScriptedModel([timeout(), "x"], model="a", cycle=True)
    b = ScriptedModel(["y"], model="b", cycle=True)
    gw = gateway([a, b], clock, retries=0)
    results = await asyncio.gather(*(gw.ainvoke(f"q{i}") for i in range(6)))
    answer_of = {"a": "x", "b": "y"}
    assert all(m.content == answer_of[m.response_metadata["model_name"]] for m in results)
    assert len(gw.ledger) == 6


def test_structured_output_goes_through_the_gateway(clock):
    from pydantic import BaseModel

    class Label(BaseModel):
        label: str

    a = ScriptedModel([unavailable()], model="a", cycle=True)  # every call starts at a
    b = ScriptedModel(["not json", {"label": "billing"}], model="b")
    gw = gateway([a, b], clock, retries=0)
    assert gw.structured("my invoice is wrong", Label) == Label(label="billing")
    assert b.requests[0].response_format["type"] == "json_schema"
    assert [r.model for r in gw.ledger] == ["b", "b"]  # the answer and its correction
