"""`OpenAICompatible`: any server that speaks OpenAI's chat-completions API, over httpx.

Remote endpoints (OpenAI, vLLM, Ollama, LiteLLM, ...) and the embedded local model's
loopback server all go through this one client. It always streams, so tokens reach a
graph's `stream_mode="messages"` as they are generated and a stalled server is noticed
between two chunks, and it turns every failure into the error class that tells the caller
what to do (retry, fall back, or fix the deployment). The API key is only ever written
into the Authorization header of a request: never into a message, a log line or a repr.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import httpx

from ..usage import Usage
from .base import ChatModel, ModelDelta, ModelRequest
from .errors import (
    ModelConfigError,
    ModelError,
    ModelTimeout,
    ModelUnavailable,
    PermanentModelError,
    TransientModelError,
    classify_status,
)
from .openai_format import to_openai_messages, tool_call_from_openai
from .schema_tools import astream_decision, stream_decision

TOOL_CALLING = ("native", "schema")

_ERROR_BODY_LIMIT = 64 * 1024
_MAX_RETRY_WAIT = 30.0


class _Secret:
    """Holds the API key so that printing the model, its `__dict__` or a traceback's
    locals never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


# Hosts whose OpenTelemetry GenAI provider name is not "openai" (the API they all speak).
_PROVIDERS = {"api.groq.com": "groq", "api.deepseek.com": "deepseek",
              "api.mistral.ai": "mistral_ai", "api.x.ai": "x_ai",
              "api.perplexity.ai": "perplexity", "openrouter.ai": "openrouter",
              "api.together.xyz": "together", "api.fireworks.ai": "fireworks",
              "generativelanguage.googleapis.com": "gcp.gemini"}


def provider_of(base_url: str) -> str:
    """The `gen_ai.provider.name` of an endpoint, from its host."""
    from urllib.parse import urlsplit

    host = (urlsplit(base_url).hostname or "").lower()
    if host.endswith(".openai.azure.com"):
        return "azure.ai.openai"
    return _PROVIDERS.get(host, "openai")


class OpenAICompatible(ChatModel):
    """A chat model served at `base_url` (e.g. `https://api.openai.com/v1`) under `model`.

    `api_key` is the key itself; `api_key_env` names an environment variable to read it
    from instead (read once, here). `timeout` bounds a whole call (connect, wait and
    every token) unless a call passes its own `timeout=`. `max_retries` retries transient
    failures that happen before the first token (0 by default: the engine's retry
    policies and fallbacks usually own that decision). `tool_calling`: "native" sends
    bound tools as OpenAI `tools=`; "schema" asks for a schema-constrained decision
    instead (for servers or small models without tool calling). Other keyword arguments are
    default call options (`max_tokens=`, `temperature=`, ...), `ledger=` and `prices=`.
    """

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 api_key_env: str | None = None, timeout: float = 60.0,
                 max_retries: int = 0, headers: Mapping[str, str] | None = None,
                 tool_calling: str = "native", **options: Any) -> None:
        super().__init__(**options)
        if tool_calling not in TOOL_CALLING:
            raise ValueError(f"tool_calling must be one of {', '.join(TOOL_CALLING)}, got "
                             f"{tool_calling!r}")
        self.tool_calling = tool_calling
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ModelConfigError(
                f"base_url must be an http:// or https:// URL, got {base_url!r}", model=model)
        if not model or not isinstance(model, str):
            raise ModelConfigError(f"model must be a non-empty string, got {model!r}")
        if timeout is None or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries cannot be negative, got {max_retries!r}")
        if api_key is None and api_key_env is not None:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise ModelConfigError(
                    f"environment variable {api_key_env} (the API key) is not set",
                    model=model)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_model = model
        self.provider = provider_of(self.base_url)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self._api_key = _Secret(api_key) if api_key else None
        self._headers = {"Accept": "text/event-stream", **dict(headers or {})}
        self._pool = _Pool(self._headers)

    # -- connections ---------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/chat/completions"

    def close(self) -> None:
        """Close the connection pool of sync calls (clients on event loops are dropped).
        Copies made by `with_options` share the pool; a later call opens a new one."""
        self._pool.close()

    async def aclose(self) -> None:
        """Close the current event loop's connection pool, and the sync one."""
        await self._pool.aclose()

    def __enter__(self) -> OpenAICompatible:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> OpenAICompatible:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r})"

    # -- one request ---------------------------------------------------------------------

    def _body(self, request: ModelRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.api_model,
            "messages": to_openai_messages(request.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.response_format is not None:
            body["response_format"] = request.response_format
        if request.tools:
            body["tools"] = request.tools
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        for name in ("max_tokens", "temperature", "stop", "seed", "logprobs", "top_logprobs"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        body.update(request.extra)
        return body

    def _request_headers(self) -> dict[str, str]:
        if self._api_key is None:
            return {}
        return {"Authorization": f"Bearer {self._api_key.reveal()}"}

    def _call_timeout(self, request: ModelRequest) -> float:
        timeout = request.timeout if request.timeout is not None else self.timeout
        if timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        return float(timeout)

    @staticmethod
    def _httpx_timeout(seconds: float) -> httpx.Timeout:
        return httpx.Timeout(seconds, connect=min(seconds, 10.0))

    def _redact(self, text: str) -> str:
        if self._api_key is not None and self._api_key.reveal() in text:
            text = text.replace(self._api_key.reveal(), "***")
        return text

    def _status_error(self, response: httpx.Response, body: bytes) -> ModelError:
        message = self._redact(_error_message(body, response.reason_phrase))
        return classify_status(
            response.status_code, f"HTTP {response.status_code} from {self.endpoint}: "
            f"{message}", model=self.model, retry_after=_retry_after(response.headers))

    def _transport_error(self, exc: httpx.HTTPError, timeout: float,
                         answered: bool = True) -> ModelError:
        detail = self._redact(str(exc) or type(exc).__name__)
        if not answered and isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError,
                                             httpx.WriteError)):
            return _DroppedBeforeAnswer(f"{self.endpoint} closed the connection without "
                                        f"answering: {detail}", model=self.model)
        if isinstance(exc, httpx.TimeoutException):
            return ModelTimeout(f"no answer from {self.endpoint} within {timeout:g}s "
                                f"({type(exc).__name__})", model=self.model)
        if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
            return ModelConfigError(f"cannot call {self.endpoint}: {detail}", model=self.model)
        if isinstance(exc, httpx.ConnectError):
            return ModelUnavailable(f"cannot connect to {self.endpoint}: {detail}",
                                    model=self.model)
        return ModelUnavailable(f"connection to {self.endpoint} failed: "
                                f"{type(exc).__name__}: {detail}", model=self.model)

    def _timed_out(self, timeout: float) -> ModelTimeout:
        return ModelTimeout(f"no complete answer from {self.endpoint} within {timeout:g}s",
                            model=self.model)

    def _retry_wait(self, error: TransientModelError, attempt: int,
                    deadline: float) -> float | None:
        """Seconds to wait before retry number `attempt`, None when out of retries/time."""
        if attempt > self.max_retries:
            return None
        wait = error.retry_after if error.retry_after is not None else 0.5 * 2 ** (attempt - 1)
        wait = min(wait, _MAX_RETRY_WAIT)
        if time.monotonic() + wait >= deadline:
            return None
        return wait

    # -- tool calls ----------------------------------------------------------------------

    def _decides_tools(self, request: ModelRequest) -> bool:
        """Whether tools go through a schema-constrained decision (`schema_tools`)."""
        return bool(request.tools) and self.tool_calling == "schema" and (
            request.tool_choice != "none")

    def _stream_raw(self, request: ModelRequest) -> Iterator[ModelDelta]:
        if self._decides_tools(request):
            return stream_decision(request, self._stream_plain)
        return self._stream_plain(request)

    def _astream_raw(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        if self._decides_tools(request):
            return astream_decision(request, self._astream_plain)
        return self._astream_plain(request)

    # -- sync ----------------------------------------------------------------------------

    def _stream_plain(self, request: ModelRequest) -> Iterator[ModelDelta]:
        timeout = self._call_timeout(request)
        deadline = time.monotonic() + timeout
        body = self._body(request)
        attempt = 0
        redialled = False
        while True:
            started = False
            try:
                for delta in self._stream_once(body, timeout, deadline):
                    started = True
                    yield delta
                return
            except TransientModelError as error:
                if isinstance(error, _DroppedBeforeAnswer) and not redialled:
                    # A kept-alive connection the server had already closed (llama.cpp
                    # does so after some streamed answers): the request was never
                    # answered, so it is sent again at once, on a fresh connection.
                    redialled = True
                    continue
                attempt += 1
                wait = None if started else self._retry_wait(error, attempt, deadline)
                if wait is None:
                    raise
                time.sleep(wait)

    def _stream_once(self, body: dict[str, Any], timeout: float,
                     deadline: float) -> Iterator[ModelDelta]:
        client = self._pool.sync()
        parser = _StreamParser(self)
        answered = False
        try:
            with client.stream("POST", self.endpoint, json=body,
                               headers=self._request_headers(),
                               timeout=self._httpx_timeout(
                                   max(deadline - time.monotonic(), 0.001))) as response:
                answered = True
                if response.status_code != 200:
                    raise self._status_error(response, _read_limited(response))
                if _is_json(response):
                    yield from parser.whole(response.read())
                    return
                # Read to the end even after [DONE]: a fully read response returns its
                # connection to the pool for the next call.
                for line in response.iter_lines():
                    yield from parser.line(line)
                    if not parser.done and time.monotonic() > deadline:
                        raise self._timed_out(timeout)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, timeout, answered) from None
        yield from parser.finish()

    # -- async ---------------------------------------------------------------------------

    async def _astream_plain(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        timeout = self._call_timeout(request)
        deadline = time.monotonic() + timeout
        body = self._body(request)
        attempt = 0
        redialled = False
        while True:
            started = False
            try:
                async for delta in self._astream_once(body, timeout, deadline):
                    started = True
                    yield delta
                return
            except TransientModelError as error:
                if isinstance(error, _DroppedBeforeAnswer) and not redialled:
                    # A kept-alive connection the server had already closed (llama.cpp
                    # does so after some streamed answers): the request was never
                    # answered, so it is sent again at once, on a fresh connection.
                    redialled = True
                    continue
                attempt += 1
                wait = None if started else self._retry_wait(error, attempt, deadline)
                if wait is None:
                    raise
                await asyncio.sleep(wait)

    async def _astream_once(self, body: dict[str, Any], timeout: float,
                            deadline: float) -> AsyncIterator[ModelDelta]:
        client = self._pool.async_()
        parser = _StreamParser(self)
        answered = False
        try:
            async with client.stream("POST", self.endpoint, json=body,
                                     headers=self._request_headers(),
                                     timeout=self._httpx_timeout(
                                         max(deadline - time.monotonic(), 0.001))
                                     ) as response:
                answered = True
                if response.status_code != 200:
                    raise self._status_error(response, await _aread_limited(response))
                if _is_json(response):
                    for delta in parser.whole(await response.aread()):
                        yield delta
                    return
                async for line in response.aiter_lines():
                    for delta in parser.line(line):
                        yield delta
                    if not parser.done and time.monotonic() > deadline:
                        raise self._timed_out(timeout)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, timeout, answered) from None
        for delta in parser.finish():
            yield delta


class _Pool:
    """The HTTP clients of a model (and of its `with_options` copies): one sync client, and
    one async client per event loop, since an AsyncClient's connections belong to the loop
    that opened them."""

    __slots__ = ("_aclients", "_client", "_headers", "_lock")

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers
        self._client: httpx.Client | None = None
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                                  httpx.AsyncClient] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()

    def sync(self) -> httpx.Client:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = httpx.Client(headers=self._headers)
                client = self._client
        return client

    def async_(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._aclients.get(loop)
            if client is None:
                client = httpx.AsyncClient(headers=self._headers)
                self._aclients[loop] = client
        return client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._aclients.pop(loop, None)
        if client is not None:
            await client.aclose()
        self.close()


def _token_logprobs(block: Any) -> list[dict[str, Any]] | None:
    """OpenAI's `logprobs.content` entries, reduced to token, logprob and alternatives."""
    entries = block.get("content") if isinstance(block, dict) else None
    if not isinstance(entries, list) or not entries:
        return None
    out = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("logprob"), (int, float)):
            continue
        alternatives = [{"token": str(alt.get("token", "")), "logprob": float(alt["logprob"])}
                        for alt in entry.get("top_logprobs") or ()
                        if isinstance(alt, dict) and isinstance(alt.get("logprob"), (int, float))]
        out.append({"token": str(entry.get("token", "")), "logprob": float(entry["logprob"]),
                    "top_logprobs": alternatives})
    return out or None


class _StreamParser:
    """Server-sent events of a chat-completions stream -> `ModelDelta`s.

    Text is handed on as it arrives; tool-call fragments are gathered by their index and
    handed on whole, with the finish reason and usage, once the stream ends."""

    __slots__ = ("data", "done", "finish_reason", "model", "tool_calls", "usage")

    def __init__(self, model: OpenAICompatible) -> None:
        self.model = model
        self.data: list[str] = []
        self.done = False
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.tool_calls: dict[int, dict[str, Any]] = {}

    def line(self, line: str) -> list[ModelDelta]:
        if self.done:
            return []
        line = line.rstrip("\r")
        if not line:  # an empty line ends an event
            return self._dispatch()
        if line.startswith(":"):  # a comment / keep-alive
            return []
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self.data.append(value)
            # Most servers send one `data:` line per event: handing it on as soon as it
            # is complete JSON spares waiting for the blank line (which may never come).
            return self._dispatch(partial_ok=True)
        return []

    def _dispatch(self, partial_ok: bool = False) -> list[ModelDelta]:
        if not self.data:
            return []
        payload = "\n".join(self.data)
        if payload.strip() == "[DONE]":
            self.data = []
            self.done = True
            return []
        try:
            event = json.loads(payload)
        except ValueError:
            if partial_ok:  # an event spread over several `data:` lines: wait for the rest
                return []
            self.data = []
            raise ModelUnavailable(
                f"malformed stream from {self.model.endpoint}: an event is not JSON: "
                f"{self.model._redact(payload[:200])!r}", model=self.model.model) from None
        self.data = []
        if not isinstance(event, dict):
            raise ModelUnavailable(
                f"malformed stream from {self.model.endpoint}: expected a JSON object per "
                f"event, got {type(event).__name__}", model=self.model.model)
        return self._event(event)

    def _event(self, event: dict[str, Any]) -> list[ModelDelta]:
        if "error" in event:
            error = event["error"]
            message = error.get("message") if isinstance(error, dict) else str(error)
            status = error.get("code") if isinstance(error, dict) else None
            text = (f"the server reported an error mid-stream: "
                    f"{self.model._redact(str(message))}")
            if isinstance(status, int) and 400 <= status < 600:
                raise classify_status(status, text, model=self.model.model)
            raise ModelUnavailable(text, model=self.model.model)
        out: list[ModelDelta] = []
        usage = event.get("usage")
        if isinstance(usage, dict):
            self.usage = _usage(usage)
        for choice in event.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                # Log-probabilities only of tokens that are part of the text: llama.cpp
                # also reports one for an opening chunk that carries no content.
                out.append(ModelDelta(text, logprobs=_token_logprobs(choice.get("logprobs"))))
            for fragment in delta.get("tool_calls") or ():
                self._tool_fragment(fragment)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def _tool_fragment(self, fragment: dict[str, Any]) -> None:
        index = fragment.get("index", len(self.tool_calls))
        call = self.tool_calls.setdefault(
            index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
        if fragment.get("id"):
            call["id"] = fragment["id"]
        function = fragment.get("function") or {}
        if function.get("name"):
            call["function"]["name"] += function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            call["function"]["arguments"] += arguments
        elif isinstance(arguments, dict):  # some servers send parsed arguments
            call["function"]["arguments"] += json.dumps(arguments)

    def whole(self, body: bytes) -> list[ModelDelta]:
        """A server that ignored `stream: true` and answered with one JSON document."""
        try:
            event = json.loads(body)
        except ValueError:
            raise ModelUnavailable(
                f"malformed answer from {self.model.endpoint}: not JSON: "
                f"{self.model._redact(body[:200].decode('utf-8', 'replace'))!r}",
                model=self.model.model) from None
        if not isinstance(event, dict) or not isinstance(event.get("choices"), list):
            raise PermanentModelError(
                f"unexpected answer from {self.model.endpoint}: no 'choices' in it",
                model=self.model.model)
        out = self._event(event)
        self.done = True
        return out + self.finish()

    def finish(self) -> list[ModelDelta]:
        if self.data:
            out = self._dispatch()
            if out:
                return out + self.finish()
        if not self.done and self.finish_reason is None:
            raise ModelUnavailable(
                f"the stream from {self.model.endpoint} ended before the answer was complete "
                "(no finish_reason and no [DONE])", model=self.model.model)
        calls = []
        for index in sorted(self.tool_calls):
            call = self.tool_calls[index]
            if not call["function"]["name"]:
                raise PermanentModelError(
                    f"malformed stream from {self.model.endpoint}: tool call {index} has no "
                    "function name", model=self.model.model)
            parsed = tool_call_from_openai(call)
            if not parsed.get("id"):
                parsed["id"] = f"call_{uuid.uuid4().hex[:16]}"
            calls.append(parsed)
        self.tool_calls = {}
        return [ModelDelta(tool_calls=calls or None, finish_reason=self.finish_reason,
                           usage=self.usage)]


class _DroppedBeforeAnswer(ModelUnavailable):
    """The connection closed before any response header: retried once on a new one."""


# -- helpers -------------------------------------------------------------------------------


def _usage(data: dict[str, Any]) -> Usage:
    def count(*names: str) -> int:
        for name in names:
            value = data.get(name)
            if isinstance(value, int):
                return value
        return 0

    return Usage(count("prompt_tokens", "input_tokens"),
                 count("completion_tokens", "output_tokens"))


def _is_json(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").split(";")[0].strip() == "application/json"


def _read_limited(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= _ERROR_BODY_LIMIT:
            break
    return b"".join(chunks)[:_ERROR_BODY_LIMIT]


async def _aread_limited(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= _ERROR_BODY_LIMIT:
            break
    return b"".join(chunks)[:_ERROR_BODY_LIMIT]


def _error_message(body: bytes, fallback: str) -> str:
    """The human part of an error body: OpenAI's `{"error": {"message"}}` and the usual
    variants, else the body's text (shortened)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            for key in ("message", "detail", "error"):
                if isinstance(error.get(key), str) and error[key]:
                    return error[key][:1000]
        elif isinstance(error, str) and error:
            return error[:1000]
        for key in ("message", "detail"):
            if isinstance(data.get(key), str) and data[key]:
                return data[key][:1000]
    return text[:500] or fallback or "no details"


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, or `Retry-After` as seconds
    or as an HTTP date."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(float(value) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - time.time(), 0.0)
