"""Structured output that works on small models.

Small local models answer reliably only inside a schema: the request carries the JSON
schema (providers that support it constrain decoding to it), the answer is parsed
leniently (code fences, prose around the object, raw newlines inside strings), a cut-off
answer (`finish_reason == "length"`) is treated as invalid, and one corrective retry
shows the model its own answer and what was wrong with it before giving up with
`StructuredOutputError`.

Tool choice on models without native tool calling is the same machinery: the model fills
a decision object whose schema lists the tools (`choose_tool`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..messages import AIMessage, HumanMessage, SystemMessage, coerce_messages, new_message_id
from .errors import StructuredOutputError
from .openai_format import json_schema_format
from .schema_hint import schema_hint

if TYPE_CHECKING:
    from .base import ChatModel, ModelResponse

SchemaT = TypeVar("SchemaT", bound=BaseModel)

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def parse_json_leniently(text: str) -> Any:
    """The JSON value in a model's answer, tolerating fences, prose and raw control
    characters inside strings. Raises ValueError when there is none."""
    candidates = [text.strip()]
    candidates += [m.strip() for m in _FENCE.findall(text)]
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start >= 0:
        candidates.append(text[start:])
    decoder = json.JSONDecoder(strict=False)  # strict=False: raw newlines in strings
    for candidate in candidates:
        if not candidate:
            continue
        try:
            value, _ = decoder.raw_decode(candidate)
            return value
        except ValueError:
            continue
    raise ValueError(f"no JSON value found in the answer: {text[:200]!r}")


def schema_format(schema: type[BaseModel]) -> dict[str, Any]:
    return json_schema_format(schema.model_json_schema(), name=schema.__name__)


def _check(schema: type[SchemaT], response: ModelResponse) -> tuple[SchemaT | None, str]:
    """(value, problem): the validated value, or what was wrong, in words for the model."""
    text = response.message.text
    if response.finish_reason == "length":
        return None, ("your answer was cut off before the JSON was complete; answer again, "
                      "shorter, as one complete JSON object")
    try:
        data = parse_json_leniently(text)
    except ValueError:
        return None, "your answer was not JSON; answer with one JSON object only"
    try:
        return schema.model_validate(data), ""
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()[:8]
        )
        return None, f"your JSON did not match the schema: {problems}. Answer again with JSON only"


def _with_hint(messages: list[Any], hint: str) -> list[Any]:
    """`hint` appended to the system prompt (one system message: some chat templates read
    only the first), or as the system prompt when there is none.

    Measured on the 1.5B model (examples/measure_structured.py, support_router --eval):
    there it scored 10/12 and 9/12 with a one-line prompt and 11/12 with the router's
    described schema; at the end of the last user message 11/12, 9/12 and 10/12, with
    worse priorities; the system prompt also leaves the conversation as the caller wrote
    it."""
    first = messages[0] if messages else None
    if getattr(first, "role", None) == "system" and isinstance(first.content, str):
        return [SystemMessage(f"{first.content.rstrip()}\n\n{hint}", id=first.id),
                *messages[1:]]
    return [SystemMessage(hint), *messages]


def _prepare(model: ChatModel, messages: Any, schema: type[BaseModel], hint: bool,
             options: dict[str, Any]) -> list[Any]:
    """The messages and options of a structured call: the schema shown to the model and
    enforced by the provider, and greedy decoding unless the caller chose a temperature
    (a label should not depend on the dice)."""
    messages = coerce_messages(messages)
    options.setdefault("response_format", schema_format(schema))
    if "temperature" not in options and model.defaults.get("temperature") is None:
        options["temperature"] = 0.0
    if hint:
        fmt = options["response_format"] or {}
        shown = (fmt.get("json_schema") or {}).get("schema") or schema.model_json_schema()
        messages = _with_hint(messages, schema_hint(shown))
    return messages


def _retry_messages(messages: list[Any], answer: str, problem: str) -> list[Any]:
    return [*messages, AIMessage(answer), HumanMessage(problem)]


def structured_response(model: ChatModel, messages: Any, schema: type[SchemaT], *,
                        retries: int = 1, hint: bool = True,
                        **options: Any) -> tuple[SchemaT, ModelResponse]:
    """The validated value and the response it came from (its usage, its logprobs)."""
    messages = _prepare(model, messages, schema, hint, options)
    answers: list[str] = []
    problem = ""
    for _ in range(retries + 1):
        response = model.generate(messages, **options)
        value, problem = _check(schema, response)
        if value is not None:
            return value, response
        answers.append(response.message.text)
        messages = _retry_messages(messages, response.message.text, problem)
    raise _gave_up(model, schema, retries, problem, answers)


def structured_call(model: ChatModel, messages: Any, schema: type[SchemaT], *,
                    retries: int = 1, hint: bool = True, **options: Any) -> SchemaT:
    """Ask `model` for an instance of `schema`; see the module docstring. `hint=False`
    leaves the prompt as given (the caller already describes the answer)."""
    return structured_response(model, messages, schema, retries=retries, hint=hint,
                               **options)[0]


def _gave_up(model: ChatModel, schema: type[BaseModel], retries: int, problem: str,
             answers: list[str]) -> StructuredOutputError:
    return StructuredOutputError(
        f"no valid {schema.__name__} after {retries + 1} attempt(s): {problem}",
        model=model.model, raw=answers[-1] if answers else "", errors=problem)


async def astructured_response(model: ChatModel, messages: Any, schema: type[SchemaT], *,
                               retries: int = 1, hint: bool = True,
                               **options: Any) -> tuple[SchemaT, ModelResponse]:
    messages = _prepare(model, messages, schema, hint, options)
    answers: list[str] = []
    problem = ""
    for _ in range(retries + 1):
        response = await model.agenerate(messages, **options)
        value, problem = _check(schema, response)
        if value is not None:
            return value, response
        answers.append(response.message.text)
        messages = _retry_messages(messages, response.message.text, problem)
    raise _gave_up(model, schema, retries, problem, answers)


async def astructured_call(model: ChatModel, messages: Any, schema: type[SchemaT], *,
                           retries: int = 1, hint: bool = True, **options: Any) -> SchemaT:
    return (await astructured_response(model, messages, schema, retries=retries, hint=hint,
                                       **options))[0]


# -- tool choice as a decision object ----------------------------------------------------


def _function_spec(tool: Any) -> dict[str, Any]:
    """OpenAI function spec of a tool object (`.schema`) or of a spec dict."""
    spec = getattr(tool, "schema", tool)
    if callable(spec) and not isinstance(spec, dict):
        spec = spec()
    if not isinstance(spec, dict):
        raise TypeError(f"not a tool or tool spec: {tool!r}")
    return spec.get("function", spec)


class _Decision(BaseModel):
    tool: str
    args: dict[str, Any] = {}
    answer: str | None = None


def decision_options(tools: Sequence[Any]) -> list[dict[str, Any]]:
    """One JSON-schema option {"tool": <name>, "args": {...}} per tool."""
    options = []
    for tool in tools:
        spec = _function_spec(tool)
        params = spec.get("parameters") or {"type": "object", "properties": {}}
        options.append({"type": "object",
                        "properties": {"tool": {"const": spec["name"]}, "args": params},
                        "required": ["tool", "args"], "additionalProperties": False})
    return options


def decision_schema(tools: Sequence[Any], *, allow_answer: bool = True) -> dict[str, Any]:
    """JSON schema of {"tool": <name>, "args": {...}} for each tool, plus {"tool": "none",
    "answer": ...} when the model may answer without a tool."""
    options = decision_options(tools)
    if allow_answer:
        options.append({"type": "object",
                        "properties": {"tool": {"const": "none"},
                                       "answer": {"type": "string", "maxLength": 2000}},
                        "required": ["tool", "answer"], "additionalProperties": False})
    return {"anyOf": options}


def choose_tool(model: ChatModel, messages: Any, tools: Sequence[Any], *,
                allow_answer: bool = True, retries: int = 1, **options: Any) -> AIMessage:
    """An AIMessage with one tool call (or a plain answer), decided through a schema.

    The result has the shape native tool calling gives, so `ToolNode` and
    `tools_condition` work the same on models that cannot call tools natively."""
    names = [_function_spec(t)["name"] for t in tools]
    menu = "\n".join(f"- {_function_spec(t)['name']}: {_function_spec(t).get('description', '')}"
                     for t in tools)
    guide = HumanMessage(
        "Decide the next action. Tools:\n" + menu + "\nReply as JSON: "
        + ('{"tool": <name>, "args": {...}}' + (' or {"tool": "none", "answer": "..."}'
                                                  if allow_answer else ""))
    )
    fmt = json_schema_format(decision_schema(tools, allow_answer=allow_answer), "decision")
    decision = structured_call(model, [*coerce_messages(messages), guide], _Decision,
                               retries=retries, hint=False, response_format=fmt, **options)
    if decision.tool == "none" and allow_answer:
        return AIMessage(decision.answer or "", id=new_message_id())
    if decision.tool not in names:
        raise StructuredOutputError(f"the model chose an unknown tool {decision.tool!r}; "
                                    f"tools: {', '.join(names)}", model=model.model,
                                    raw=decision.model_dump_json())
    call = {"name": decision.tool, "args": decision.args, "id": f"call_{new_message_id()[:8]}",
            "type": "tool_call"}
    return AIMessage("", id=new_message_id(), tool_calls=[call])
