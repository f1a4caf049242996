"""`ScriptedModel`: a deterministic chat model for tests and examples' tests.

It answers from a script: text, tool calls, errors to raise, latency to add; or a function
of the request. Replies stream word by word like a real model's tokens, and report usage
(counted in words unless the script says otherwise), so the whole model seam can be
exercised without a model.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..usage import Usage
from .base import ChatModel, ModelDelta, ModelRequest

_TOKEN = re.compile(r"\s*\S+|\s+")


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer. `error` is raised instead of answering (after `latency`)."""

    text: str = ""
    tool_calls: Sequence[dict[str, Any]] = ()
    finish_reason: str = "stop"
    usage: Usage | None = None
    latency: float = 0.0
    error: BaseException | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Given when the request asks for logprobs: one per scripted token of `text` (text
    # split at whitespace, each token keeping its leading spaces), or one for all.
    logprobs: Sequence[float] | float | None = None


Script = str | dict | Reply | BaseException | Callable[[ModelRequest], Any]


def _as_reply(item: Any) -> Reply:
    if isinstance(item, Reply):
        return item
    if isinstance(item, str):
        return Reply(item)
    if isinstance(item, BaseException):
        return Reply(error=item)
    if isinstance(item, dict) and ("tool_calls" in item or "text" in item):
        calls = [{"name": c["name"], "args": c.get("args", {}),
                  "id": c.get("id") or f"call_{i}", "type": "tool_call"}
                 for i, c in enumerate(item.get("tool_calls", ()))]
        return Reply(item.get("text", ""), calls, item.get("finish_reason", "stop"),
                     logprobs=item.get("logprobs"))
    if isinstance(item, dict):  # a structured answer: its JSON
        return Reply(json.dumps(item))
    raise TypeError(f"cannot script a reply from {type(item).__name__}: {item!r}")


class ScriptedModel(ChatModel):
    """Answers with `responses` in order; `cycle=True` starts over when they run out."""

    provider = "waypoint.scripted"

    def __init__(self, responses: Sequence[Script], *, model: str = "scripted",
                 cycle: bool = False, latency: float = 0.0, **options: Any) -> None:
        super().__init__(**options)
        if not responses:
            raise ValueError("ScriptedModel needs at least one response")
        self.model = model
        self.responses = list(responses)
        self.latency = latency
        self._next = itertools.cycle(self.responses) if cycle else iter(self.responses)
        self._lock = threading.Lock()
        self.requests: list[ModelRequest] = []

    @property
    def calls(self) -> list[list[Any]]:
        """The messages of every call so far, in order."""
        return [r.messages for r in self.requests]

    @staticmethod
    def _tokens(text: str) -> list[str]:
        return _TOKEN.findall(text) or [text]

    def _take(self, request: ModelRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            try:
                item = next(self._next)
            except StopIteration:
                raise RuntimeError(
                    f"ScriptedModel {self.model!r} has no reply left for call "
                    f"{len(self.requests)} (it was given {len(self.responses)})"
                ) from None
        if callable(item) and not isinstance(item, BaseException):
            item = item(request)
        return _as_reply(item)

    def _stream_raw(self, request: ModelRequest) -> Iterator[ModelDelta]:
        reply = self._take(request)
        delay = reply.latency or self.latency
        if delay:
            time.sleep(delay)
        if reply.error is not None:
            raise reply.error
        text = reply.text
        if request.max_tokens is not None:
            tokens = self._tokens(text)
            if len(tokens) > request.max_tokens:
                text = "".join(tokens[: request.max_tokens])
                reply = Reply(text, reply.tool_calls, "length", reply.usage,
                              logprobs=reply.logprobs)
        tokens = self._tokens(text) if text else []
        values = reply.logprobs
        if isinstance(values, (int, float)):
            values = [float(values)] * len(tokens)
        for position, token in enumerate(tokens):
            logprob = (values[position] if request.logprobs and values is not None
                       and position < len(values) else None)
            yield ModelDelta(token, logprobs=None if logprob is None else [
                {"token": token, "logprob": float(logprob), "top_logprobs": []}])
        usage = reply.usage or Usage(
            sum(len(str(getattr(m, "content", "")).split()) for m in request.messages),
            len(text.split()))
        yield ModelDelta(tool_calls=list(reply.tool_calls) or None,
                         finish_reason=reply.finish_reason, usage=usage)


class ScriptedChatModel(ScriptedModel):
    """A `ScriptedModel` that cycles through its replies (the engine tests' stand-in)."""

    def __init__(self, responses: Sequence[Script], *, name: str = "scripted",
                 **options: Any) -> None:
        super().__init__(responses, model=name, cycle=True, **options)

    @property
    def name(self) -> str:
        return self.model
