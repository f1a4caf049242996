"""Tokens of LangChain chat models into a run's streams, without LangChain as a dependency.

Ported code calls a LangChain chat model inside a node (`ChatOpenAI().invoke(messages)`).
LangChain finds its callbacks in a context variable when the call passes no config, so
while a task runs with someone listening for tokens (`stream_mode="messages"` or
`astream_events`), that variable holds a handler which hands each token, and each
finished answer, to the run's stream sink. Nothing here runs unless `langchain_core` is
already imported: code that does not use LangChain never pays for it.
"""

from __future__ import annotations

import contextvars
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .loop import RunLoop
    from .task import Task

_NOSTREAM_TAGS = frozenset({"nostream", "langsmith:nostream"})
_handler_class: type | None = None


def attach(loop: RunLoop, task: Task) -> tuple[contextvars.ContextVar[Any], Any] | None:
    """Give LangChain calls made by `task` a handler that streams into the run; returns
    what `detach` needs, or None when there is nothing to do."""
    sink = loop.sink
    if sink is None or "langchain_core" not in sys.modules:
        return None
    if not (sink.wants("messages") or sink.wants("events")):
        return None
    from langchain_core.runnables.config import var_child_runnable_config

    handler = _make_handler_class()(loop, task)
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


def _make_handler_class() -> type:
    """The handler class, built on first use because it subclasses LangChain's."""
    global _handler_class
    if _handler_class is not None:
        return _handler_class
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.outputs import ChatGenerationChunk
    from langchain_core.tracers._streaming import _StreamingCallbackHandler

    class RunStreamHandler(BaseCallbackHandler, _StreamingCallbackHandler):
        """Forwards one task's chat-model tokens and answers to its run's stream.
        Being a `_StreamingCallbackHandler` makes `invoke()` stream when it listens."""

        run_inline = True  # in order, on the caller's thread, also for async calls

        def __init__(self, loop: RunLoop, task: Task) -> None:
            self.loop = loop
            self.task = task
            self.streamed: dict[Any, bool] = {}  # run id -> whether tokens came

        def tap_output_aiter(self, run_id: Any, output: Any) -> Any:
            return output

        def tap_output_iter(self, run_id: Any, output: Any) -> Any:
            return output

        def on_chat_model_start(self, serialized: dict[str, Any], messages: Any, *,
                                run_id: Any, tags: list[str] | None = None,
                                **kwargs: Any) -> None:
            if tags and _NOSTREAM_TAGS.intersection(tags):
                return
            sink = self.loop.sink
            if sink is None:
                return
            name = kwargs.get("name") or (serialized or {}).get("name") or "chat_model"
            self.streamed[run_id] = False
            sink.model_start(self.task, name, messages[0] if messages else [],
                             run_id=str(run_id))

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

    _handler_class = RunStreamHandler
    return RunStreamHandler
