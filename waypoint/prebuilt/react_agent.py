"""`create_react_agent`: LangGraph's prebuilt tool-calling agent, with waypoint's policies.

The graph is LangGraph's: an "agent" node calls the model with the tools bound, a
"tools" node (`ToolNode`) answers the tool calls, and the loop ends when the model
answers without calling a tool (then, with `response_format`, a last call fills
`structured_response`). `remaining_steps` stops the loop with an apology instead of a
`GraphRecursionError` when the recursion limit is near. With `version="v2"` each tool call
is its own `Send` to the tools node, as on LangGraph. On top: a retry policy for the
model node, a budget, and approvals: a tool that declares an effect (`effect="write"` or
`"dangerous"`) or `requires_approval` waits for `approve()` before it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Annotated, Any, TypedDict

from ..constants import END, START
from ..graph.builder import StateGraph
from ..graph.messages_state import add_messages
from ..graph.schema import RemainingSteps
from ..messages import SystemMessage, coerce_messages
from ..tools import Tool, ToolNode
from ..tools.node import _with_calls
from ..types import Command, Send
from .agent_model import bind_model, call_model, call_structured, state_for_runnable

TOOL_CALL_WITH_CONTEXT = "tool_call_with_context"  # LangGraph's name for a v2 Send's payload
NEED_MORE_STEPS = "Sorry, need more steps to process this request."
APPROVAL_CHOICES = ("effects", "dangerous")


class AgentState(TypedDict):
    """The agent's state: the conversation and the steps left before the limit."""

    messages: Annotated[list[Any], add_messages]
    remaining_steps: RemainingSteps


class AgentStateWithStructuredResponse(AgentState):
    structured_response: Any


def _read(state: Any, key: str, default: Any = None) -> Any:
    if isinstance(state, dict):
        return state.get(key, default)
    return getattr(state, key, default)


def _prompt_runner(prompt: Any) -> Callable[[Any], list[Any]]:
    """prompt -> a function of the state giving the messages the model sees."""
    if prompt is None:
        return lambda state: list(_read(state, "messages") or [])
    if isinstance(prompt, str):
        system = SystemMessage(prompt)
        return lambda state: [system, *(_read(state, "messages") or [])]
    if getattr(prompt, "type", None) == "system" and hasattr(prompt, "content"):
        return lambda state: [prompt, *(_read(state, "messages") or [])]
    if hasattr(prompt, "invoke"):  # a LangChain Runnable (prompt template, chain)
        return lambda state: _as_messages(prompt.invoke(state_for_runnable(prompt, state)))
    if callable(prompt):
        return lambda state: _as_messages(prompt(state))
    raise TypeError(f"prompt must be a string, a system message, a function of the state or "
                    f"a Runnable, got {type(prompt).__name__}")


def _as_messages(value: Any) -> list[Any]:
    messages = getattr(value, "to_messages", None)  # a LangChain PromptValue
    if callable(messages):
        return list(messages())
    return list(value) if isinstance(value, (list, tuple)) else coerce_messages(value)


def _approval_rule(approve_tools: Any) -> bool | Callable[[Tool], bool]:
    if approve_tools is True or approve_tools is False:
        return approve_tools
    if approve_tools == "effects":
        return lambda t: t.effect != "read" or t.requires_approval
    if approve_tools == "dangerous":
        return lambda t: t.effect == "dangerous" or t.requires_approval
    if isinstance(approve_tools, (list, tuple, set, frozenset)):
        names = set(approve_tools)
        return lambda t: t.name in names
    raise ValueError(f"approve_tools must be 'effects', 'dangerous', True, False or a list of "
                     f"tool names, got {approve_tools!r}")


def _has_tool_calls(message: Any) -> bool:
    return getattr(message, "type", None) in ("ai", "AIMessageChunk") and bool(
        getattr(message, "tool_calls", None))


def create_react_agent(
    model: Any,
    tools: Sequence[Any] | ToolNode,
    *,
    prompt: Any = None,
    response_format: Any = None,
    pre_model_hook: Callable[..., Any] | None = None,
    post_model_hook: Callable[..., Any] | None = None,
    state_schema: Any = None,
    context_schema: Any = None,
    checkpointer: Any = None,
    store: Any = None,
    interrupt_before: Sequence[str] | None = None,
    interrupt_after: Sequence[str] | None = None,
    debug: bool = False,
    version: str = "v1",
    name: str | None = None,
    retry: Any = None,
    budget: Any = None,
    approve_tools: Any = "effects",
    approval_options: dict[str, Any] | None = None,
) -> Any:
    """Build and compile a tool-calling agent (see the module docstring).

    `model`: a waypoint `ChatModel` (its `bind_tools` is used), a LangChain chat model, or
    "local" / "local:<name>" for the embedded model. `prompt`: a string or system message
    put first, or a function / Runnable from the state to the messages. `response_format`:
    a pydantic model or JSON schema (or `(prompt, schema)`) for `structured_response`.
    `retry`: the model node's `RetryPolicy`; `budget`: a `Budget` for every run;
    `approve_tools`: "effects" (default: tools with effect write/dangerous or
    `requires_approval`), "dangerous", a list of tool names, True or False;
    `approval_options`: `assignee`, `deadline`, `on_timeout`, `escalate_to` for each one.
    `version`: "v1" runs all calls of an answer in one tools task; "v2" (LangGraph's)
    sends each call to the tools node as its own task (`Send`), each asking its own
    approval.
    """
    if version not in ("v1", "v2"):
        raise ValueError(f"version must be 'v1' or 'v2', got {version!r}")
    tool_node = tools if isinstance(tools, ToolNode) else ToolNode(
        list(tools), approve=_approval_rule(approve_tools), approval_options=approval_options)
    bound, raw_model = bind_model(model, tool_node.tools)
    schema = state_schema or (AgentStateWithStructuredResponse if response_format is not None
                              else AgentState)
    if pre_model_hook is not None and isinstance(schema, type) and hasattr(
            schema, "__annotations__") and "llm_input_messages" not in getattr(
            schema, "__annotations__", {}):
        schema = TypedDict(  # type: ignore[misc]
            f"{schema.__name__}WithLLMInput",
            {**_annotations(schema), "llm_input_messages": list[Any]})
    to_prompt = _prompt_runner(prompt)

    def agent(state: Any) -> dict[str, Any]:
        view = state
        llm_input = _read(state, "llm_input_messages")
        if llm_input:
            view = {**dict(state), "messages": llm_input} if isinstance(state, dict) else state
        response = call_model(bound, to_prompt(view))
        if name is not None:
            response.name = name
        remaining = _read(state, "remaining_steps")
        if remaining is not None and remaining < 2 and _has_tool_calls(response):
            return {"messages": [_apology(response)]}
        return {"messages": [response]}

    def route(state: Any) -> Any:
        messages = _read(state, "messages") or []
        if messages and _has_tool_calls(messages[-1]):
            if version == "v2":  # LangGraph's v2: each call its own task of the tools node
                return [Send("tools", {"__type": TOOL_CALL_WITH_CONTEXT, "tool_call": call,
                                       "state": state}) for call in messages[-1].tool_calls]
            return "tools"
        return "generate_structured_response" if response_format is not None else END

    def generate_structured_response(state: Any) -> dict[str, Any]:
        messages = list(_read(state, "messages") or [])
        return {"structured_response": call_structured(raw_model, messages, response_format)}

    builder = StateGraph(schema, context_schema=context_schema)
    builder.add_node("agent", agent, retry_policy=retry)
    entry = "agent"
    if pre_model_hook is not None:
        builder.add_node("pre_model_hook", pre_model_hook)
        builder.add_edge("pre_model_hook", "agent")
        entry = "pre_model_hook"
    builder.add_edge(START, entry)
    decider = "agent"
    if post_model_hook is not None:
        builder.add_node("post_model_hook", post_model_hook)
        builder.add_edge("agent", "post_model_hook")
        decider = "post_model_hook"
    destinations = ["tools", END]
    if response_format is not None:
        builder.add_node("generate_structured_response", generate_structured_response)
        builder.add_edge("generate_structured_response", END)
        destinations.append("generate_structured_response")
    builder.add_conditional_edges(decider, route, destinations)
    builder.add_node("tools", tool_node if version == "v1" else _one_call_node(tool_node))
    builder.add_edge("tools", entry)
    options: dict[str, Any] = {}
    if budget is not None:
        options["budget"] = budget
    return builder.compile(checkpointer=checkpointer, store=store,
                           interrupt_before=interrupt_before, interrupt_after=interrupt_after,
                           debug=debug, name=name or "agent", **options)


def _annotations(schema: type) -> dict[str, Any]:
    from typing import get_type_hints

    return get_type_hints(schema, include_extras=True)


def _apology(response: Any) -> Any:
    from ..messages import AIMessage

    return AIMessage(NEED_MORE_STEPS, id=getattr(response, "id", None))


def _one_call_node(tool_node: ToolNode) -> Callable[[Any], Any]:
    """The tools node of `version="v2"`: it receives one tool call (a `Send` with the state)
    and answers it as the `ToolNode` answers a message holding only that call, approvals
    and injected state included."""

    def tools(input: Any) -> Any:
        if not (isinstance(input, dict) and input.get("__type") == TOOL_CALL_WITH_CONTEXT):
            return tool_node(input)  # the node run otherwise (e.g. update_state as_node)
        call, state = input["tool_call"], input["state"]
        messages = list(_read(state, "messages") or [])
        asked = messages[-1]
        view_messages = [*messages[:-1], _with_calls(asked, [call])]
        if isinstance(state, dict):
            view: Any = {**state, "messages": view_messages}
        elif hasattr(state, "model_copy"):  # a pydantic state
            view = state.model_copy(update={"messages": view_messages})
        else:  # a dataclass state
            view = replace(state, messages=view_messages)
        return _whole_message(tool_node(view), asked, call)

    tools.__name__ = tool_node.name
    return tools


def _whole_message(output: Any, asked: Any, call: dict[str, Any]) -> Any:
    """An approval edit gives back the AI message holding only this call: put the edited
    call back among all of them (the message replaces the original by its id)."""
    def fix(message: Any) -> Any:
        if getattr(message, "type", None) != "ai" or getattr(message, "id", None) != asked.id:
            return message
        edited = message.tool_calls[0]
        return _with_calls(asked, [edited if c.get("id") == call.get("id") else c
                                   for c in asked.tool_calls])

    if isinstance(output, dict) and isinstance(output.get("messages"), list):
        return {**output, "messages": [fix(m) for m in output["messages"]]}
    if isinstance(output, list):
        return [replace(c, update={**c.update, "messages": [fix(m) for m in c.update["messages"]]})
                if isinstance(c, Command) and isinstance(c.update, dict)
                and isinstance(c.update.get("messages"), list) else c for c in output]
    return output
