"""The model side of `create_react_agent`: binding tools to whichever kind of model it is
given, calling it, and asking it for the structured final answer."""

from __future__ import annotations

import json
import sys
from typing import Any

from ..interop.langchain_messages import to_langchain
from ..messages import SystemMessage, coerce_messages
from ..tools import Tool


def _is_langchain_model(model: Any) -> bool:
    """A LangChain chat model or binding (a Runnable), only ever true once the code has
    imported LangChain."""
    if "langchain_core" not in sys.modules:
        return False
    from langchain_core.runnables import Runnable

    return isinstance(model, Runnable)


def resolve_model(model: Any) -> Any:
    """A model object for `model`. "local" / "local:<name>" is the embedded model; another
    string is a LangChain model id ("openai:gpt-4o-mini", as LangGraph takes it), resolved
    by LangChain's `init_chat_model` when the `langchain` package is installed."""
    if isinstance(model, str):
        if model == "local" or model.startswith("local:"):
            from ..models import LocalModel

            name = model.partition(":")[2]
            return LocalModel(name) if name else LocalModel()
        if ":" in model:
            return _init_chat_model(model)
        raise ValueError(
            f"model {model!r}: name a provider as LangGraph does ('openai:gpt-4o-mini', "
            f"resolved by langchain's init_chat_model), or use 'local' / 'local:<name>' for "
            f"the embedded model, or pass a model object "
            f"(waypoint.models.OpenAICompatible(base_url, model) for any OpenAI endpoint)")
    if not (hasattr(model, "invoke") or hasattr(model, "generate")):
        raise TypeError(f"model must be a chat model, got {type(model).__name__}")
    return model


def _init_chat_model(model: str) -> Any:
    try:
        from langchain.chat_models import init_chat_model
    except ImportError:
        raise ValueError(
            f"model {model!r}: a 'provider:model' id is resolved by LangChain's "
            f"init_chat_model, which needs `pip install langchain langchain-<provider>` "
            f"(waypoint does not depend on LangChain); or pass a model object, e.g. "
            f"waypoint.models.OpenAICompatible(base_url, model), or use 'local'") from None
    return init_chat_model(model)


def _already_bound(model: Any) -> bool:
    defaults = getattr(model, "defaults", None)
    if isinstance(defaults, dict) and defaults.get("tools"):
        return True
    kwargs = getattr(model, "kwargs", None)  # a LangChain RunnableBinding
    return isinstance(kwargs, dict) and bool(kwargs.get("tools"))


def bind_model(model: Any, tools: list[Tool]) -> tuple[Any, Any]:
    """(the model with `tools` bound, the model without them)."""
    model = resolve_model(model)
    if not tools or _already_bound(model):
        return model, model
    if _is_langchain_model(model):
        return model.bind_tools([t.schema for t in tools]), model
    return model.bind_tools(tools), model


def _for_model(model: Any, messages: list[Any]) -> list[Any]:
    """A LangChain model accepts only LangChain's message classes."""
    if _is_langchain_model(model):
        return [to_langchain(m) for m in coerce_messages(messages)]
    return messages


def state_for_runnable(runnable: Any, state: Any) -> Any:
    """The state a LangChain Runnable (a prompt template) is given: its messages as
    LangChain's classes, whichever classes the state holds."""
    if not _is_langchain_model(runnable) or not isinstance(state, dict):
        return state
    messages = state.get("messages")
    if not isinstance(messages, list):
        return state
    return {**state, "messages": _for_model(runnable, messages)}


def call_model(model: Any, messages: list[Any]) -> Any:
    """One answer of the model to `messages` (the agent node's call)."""
    return model.invoke(_for_model(model, messages))


def _schema_parts(response_format: Any) -> tuple[str | None, Any]:
    if isinstance(response_format, tuple) and len(response_format) == 2:
        return response_format[0], response_format[1]
    return None, response_format


def call_structured(model: Any, messages: list[Any], response_format: Any) -> Any:
    """The final answer as an instance of the schema (a dict for a JSON schema)."""
    prompt, schema = _schema_parts(response_format)
    if prompt is not None:
        messages = [SystemMessage(prompt), *messages]
    if _is_langchain_model(model):
        return model.with_structured_output(schema).invoke(_for_model(model, messages))
    if isinstance(schema, type) and hasattr(schema, "model_validate"):
        return model.structured(messages, schema)
    if isinstance(schema, dict):
        from ..models.openai_format import json_schema_format
        from ..models.structured import parse_json_leniently

        name = str(schema.get("title") or "answer").replace(" ", "_")
        answer = model.invoke(messages, response_format=json_schema_format(schema, name))
        return parse_json_leniently(answer.text if hasattr(answer, "text") else
                                    json.dumps(answer.content))
    raise TypeError(f"response_format must be a pydantic model class or a JSON schema dict "
                    f"(or a (prompt, schema) pair), got {type(schema).__name__}")
