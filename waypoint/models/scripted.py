"""`ScriptedChatModel`: deterministic replies, streamed token by token, for tests and demos."""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from ..engine.context import on_model_end, on_model_start, on_model_token, streaming_tokens
from ..messages import AIMessage, AIMessageChunk, new_message_id

_TOKEN = re.compile(r"\s*\S+|\s+")


class ScriptedChatModel:
    """Answers with the scripted `responses` in order (cycling), streaming each as tokens."""

    def __init__(self, responses: Sequence[str], *, name: str = "scripted") -> None:
        if not responses:
            raise ValueError("ScriptedChatModel needs at least one response")
        self.responses = list(responses)
        self.name = name
        self._next = itertools.cycle(self.responses)
        self._lock = threading.Lock()
        self.calls: list[Any] = []

    def _reply(self, messages: Any) -> str:
        with self._lock:
            self.calls.append(messages)
            return next(self._next)

    @staticmethod
    def _tokens(text: str) -> list[str]:
        return _TOKEN.findall(text) or [text]

    def invoke(self, messages: Any, **_: Any) -> AIMessage:
        """The next reply; its tokens go to `stream_mode="messages"` if anyone listens."""
        text = self._reply(messages)
        message_id = new_message_id()
        if streaming_tokens():
            run_id = on_model_start(self.name, messages)
            for token in self._tokens(text):
                on_model_token(run_id, AIMessageChunk(token, id=message_id))
            message = AIMessage(text, id=message_id)
            on_model_end(run_id, message)
            return message
        return AIMessage(text, id=message_id)

    async def ainvoke(self, messages: Any, **kwargs: Any) -> AIMessage:
        return self.invoke(messages, **kwargs)

    def stream(self, messages: Any, **_: Any) -> Iterator[AIMessageChunk]:
        text = self._reply(messages)
        message_id = new_message_id()
        run_id = on_model_start(self.name, messages)
        for token in self._tokens(text):
            chunk = AIMessageChunk(token, id=message_id)
            on_model_token(run_id, chunk)
            yield chunk
        on_model_end(run_id, AIMessage(text, id=message_id))

    async def astream(self, messages: Any, **kwargs: Any) -> AsyncIterator[AIMessageChunk]:
        for chunk in self.stream(messages, **kwargs):
            yield chunk
