"""Tool calling through a schema-constrained decision, for models that cannot call tools.

Small local models pick tools reliably only when decoding is held to a schema: the model
fills `{"tool": <name>, "args": {...}}` or `{"tool": "none", "answer": "..."}` (and, with
`bind_tools(..., parallel_tool_calls=True)`, `{"calls": [...]}` for several at once). The
decision becomes an answer with LangChain-shaped `tool_calls`, exactly what native tool
calling returns. The conversation is shown in the same terms (earlier tool calls as the
model's own decisions, tool results as notes), so the model keeps to one format for the
whole loop. The answer's text streams while it is decoded; an invalid decision is
corrected once, then refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ..messages import AIMessage, HumanMessage, coerce_messages, new_message_id
from ..usage import Usage
from .base import ModelDelta, ModelRequest
from .errors import StructuredOutputError
from .openai_format import json_schema_format
from .structured import decision_options, parse_json_leniently
from .tool_specs import chosen_names

MAX_PARALLEL_CALLS = 4
_ANSWER_START = re.compile(r'^\s*\{\s*"tool"\s*:\s*"none"\s*,\s*"answer"\s*:\s*"')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
            "t": "\t"}


def decision_request(request: ModelRequest) -> tuple[ModelRequest, list[str], bool]:
    """The plain request that asks for a decision, the callable tool names, and whether a
    plain answer is allowed."""
    specs = [s["function"] for s in request.tools or ()]
    names, may_answer = chosen_names(request.tool_choice, [s["name"] for s in specs])
    offered = [s for s in specs if s["name"] in names]
    # Offered only when asked for: the option tempts small models into extra calls.
    parallel = request.extra.get("parallel_tool_calls") is True
    options = decision_options(offered)
    if parallel and len(options) > 0:
        options.append({"type": "object", "properties": {"calls": {
            "type": "array", "items": {"anyOf": list(options)}, "minItems": 2,
            "maxItems": MAX_PARALLEL_CALLS}}, "required": ["calls"],
            "additionalProperties": False})
    if may_answer:
        options.append({"type": "object",
                        "properties": {"tool": {"const": "none"},
                                       "answer": {"type": "string", "maxLength": 4000}},
                        "required": ["tool", "answer"], "additionalProperties": False})
    menu = "\n".join(f"- {s['name']}: {s.get('description', '')}" for s in offered)
    done = calls_this_turn(request.messages)
    if done:
        menu += ("\nAlready done for this request (do not repeat these calls; if the results "
                 "answer the user, answer now):\n" + "\n".join(
                     f"- {name}({json.dumps(args)}) -> {result}" for name, args, result in done))
    forms = ['{"tool": <name>, "args": {...}}']
    if parallel:
        forms.append('{"calls": [{"tool": ..., "args": ...}, ...]} to call several at once')
    if may_answer:
        forms.append('{"tool": "none", "answer": "<your reply to the user>"}')
    guide = HumanMessage("Decide the next action. Tools:\n" + menu
                         + ("\nCall a tool only when it is needed to answer." if may_answer
                            else "") + "\nReply as JSON: " + " or ".join(forms))
    extra = {k: v for k, v in request.extra.items() if k != "parallel_tool_calls"}
    plain = ModelRequest(
        messages=[*_as_decisions(request.messages), guide],
        response_format=json_schema_format({"anyOf": options}, "decision"),
        max_tokens=request.max_tokens,
        temperature=0.0 if request.temperature is None else request.temperature,
        stop=request.stop,
        timeout=request.timeout, seed=request.seed, extra=extra)
    return plain, names, may_answer


def calls_this_turn(messages: list[Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(tool, args, result) of the calls made since the user last spoke."""
    found: list[tuple[str, dict[str, Any], str]] = []
    results: dict[Any, str] = {}
    for message in reversed(coerce_messages(messages)):
        kind = getattr(message, "type", None)
        if kind == "human":
            break
        if kind == "tool":
            results[getattr(message, "tool_call_id", None)] = _text(message.content)[:300]
        elif kind in ("ai", "AIMessageChunk"):
            for call in reversed(getattr(message, "tool_calls", None) or ()):
                found.append((call.get("name"), call.get("args") or {},
                              results.get(call.get("id"), "(no result)")))
    return found[::-1]


def _as_decisions(messages: list[Any]) -> list[Any]:
    """Earlier tool calls and results in the decision format the model is asked for."""
    out: list[Any] = []
    for message in coerce_messages(messages):
        kind = getattr(message, "type", None)
        calls = getattr(message, "tool_calls", None) if kind in ("ai", "AIMessageChunk") else None
        if calls:
            decided = [{"tool": c.get("name"), "args": c.get("args") or {}} for c in calls]
            text = json.dumps(decided[0] if len(decided) == 1 else {"calls": decided})
            out.append(AIMessage(text))
        elif kind == "tool":
            name = getattr(message, "name", None) or "the tool"
            out.append(HumanMessage(f"Result of {name}: {_text(message.content)}"))
        else:
            out.append(message)
    return out


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return json.dumps(content, ensure_ascii=False, default=str)


class _AnswerStream:
    """Pulls the text of `{"tool": "none", "answer": "..."}` out of a decision as it is
    decoded, so a plain answer still streams token by token."""

    def __init__(self) -> None:
        self.raw = ""
        self.start = -1  # index in raw where the answer's characters begin
        self.read = 0  # characters of raw consumed after start
        self.closed = False

    def feed(self, text: str) -> str:
        self.raw += text
        if self.start < 0:
            match = _ANSWER_START.match(self.raw)
            if match is None:
                return ""
            self.start = self.read = match.end()
        out: list[str] = []
        raw, i = self.raw, self.read
        while i < len(raw) and not self.closed:
            char = raw[i]
            if char == '"':
                self.closed = True
                i += 1
                break
            if char == "\\":
                if i + 1 >= len(raw):
                    break
                code = raw[i + 1]
                if code == "u":
                    if i + 6 > len(raw):
                        break
                    try:
                        out.append(chr(int(raw[i + 2:i + 6], 16)))
                    except ValueError:
                        pass
                    i += 6
                    continue
                out.append(_ESCAPES.get(code, code))
                i += 2
                continue
            out.append(char)
            i += 1
        self.read = i
        return "".join(out)


def _calls(decision: Any, names: list[str], may_answer: bool,
           done: list[tuple[str, dict[str, Any], str]] = ()) -> tuple[str, list[dict[str, Any]]]:
    """(answer text, tool calls) of a parsed decision; ValueError names what is wrong,
    a repeat of a call already made for this request included."""
    if not isinstance(decision, dict):
        raise ValueError("the decision must be a JSON object")
    if "calls" in decision:
        items = decision["calls"]
        if not isinstance(items, list) or not items:
            raise ValueError("'calls' must be a non-empty list")
    elif decision.get("tool") == "none":
        if not may_answer:
            raise ValueError(f"a tool must be called (one of {', '.join(names)})")
        return str(decision.get("answer") or ""), []
    else:
        items = [decision]
    calls = []
    for item in items:
        name = item.get("tool") if isinstance(item, dict) else None
        if name not in names:
            raise ValueError(f"unknown tool {name!r}; tools: {', '.join(names)}")
        args = item.get("args") or {}
        if not isinstance(args, dict):
            raise ValueError(f"the args of {name!r} must be an object")
        for done_name, done_args, result in done:
            if done_name == name and done_args == args:
                raise ValueError(f"{name} was already called with these arguments and "
                                 f"returned {result}; answer the user with it or call "
                                 f"another tool")
        calls.append({"name": name, "args": args, "id": f"call_{new_message_id()[:12]}",
                      "type": "tool_call"})
    return "", calls


class _Decider:
    """One decision in progress: feeds streamed text, then settles the outcome."""

    def __init__(self, names: list[str], may_answer: bool,
                 done: list[tuple[str, dict[str, Any], str]]) -> None:
        self.names = names
        self.may_answer = may_answer
        self.done = done
        self.attempt = 0  # a repeated call is refused once, then let through
        self.usage = Usage()
        self.answer = _AnswerStream()
        self.text: list[str] = []
        self.finish_reason: str | None = None

    def add(self, delta: ModelDelta) -> str:
        if delta.usage is not None:
            self.usage = self.usage + delta.usage
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason
        self.text.append(delta.text)
        return self.answer.feed(delta.text) if delta.text else ""

    def settle(self) -> tuple[list[ModelDelta] | None, str]:
        """(the closing deltas, "") when valid, else (None, what to tell the model)."""
        text = "".join(self.text)
        if self.finish_reason == "length":
            return None, "your decision was cut off; answer again, shorter, as one JSON object"
        try:
            answer, calls = _calls(parse_json_leniently(text), self.names, self.may_answer,
                                   self.done if self.attempt == 0 else [])
        except ValueError as exc:
            return None, f"that was not a valid decision ({exc}); reply with JSON only"
        streamed = self.answer.feed("") if self.answer.start >= 0 else ""
        tail: list[ModelDelta] = []
        if answer and self.answer.start < 0:
            tail.append(ModelDelta(answer))
        elif streamed:
            tail.append(ModelDelta(streamed))
        tail.append(ModelDelta(tool_calls=calls or None,
                               finish_reason="tool_calls" if calls else "stop",
                               usage=self.usage))
        return tail, ""

    def retry_messages(self, request: ModelRequest, problem: str) -> ModelRequest:
        text = "".join(self.text)
        self.text, self.answer, self.finish_reason = [], _AnswerStream(), None
        self.attempt += 1
        return ModelRequest(**{**{f: getattr(request, f) for f in
                                  ModelRequest.__dataclass_fields__},
                               "messages": [*request.messages, AIMessage(text),
                                            HumanMessage(problem)]})


def stream_decision(request: ModelRequest,
                    raw: Callable[[ModelRequest], Iterator[ModelDelta]]) -> Iterator[ModelDelta]:
    """Answer `request` (which has tools) through a decision; `raw` streams plain calls."""
    plain, names, may_answer = decision_request(request)
    decider = _Decider(names, may_answer, calls_this_turn(request.messages))
    for attempt in range(2):
        for delta in raw(plain):
            piece = decider.add(delta)
            if piece:
                yield ModelDelta(piece)
        tail, problem = decider.settle()
        if tail is not None:
            yield from tail
            return
        if attempt == 0 and decider.answer.start < 0:  # nothing shown yet: correct once
            plain = decider.retry_messages(plain, problem)
            continue
        raise StructuredOutputError(f"no valid tool decision: {problem}", raw="".join(
            decider.text), errors=problem)


async def astream_decision(
    request: ModelRequest, raw: Callable[[ModelRequest], AsyncIterator[ModelDelta]],
) -> AsyncIterator[ModelDelta]:
    plain, names, may_answer = decision_request(request)
    decider = _Decider(names, may_answer, calls_this_turn(request.messages))
    for attempt in range(2):
        async for delta in raw(plain):
            piece = decider.add(delta)
            if piece:
                yield ModelDelta(piece)
        tail, problem = decider.settle()
        if tail is not None:
            for delta in tail:
                yield delta
            return
        if attempt == 0 and decider.answer.start < 0:
            plain = decider.retry_messages(plain, problem)
            continue
        raise StructuredOutputError(f"no valid tool decision: {problem}", raw="".join(
            decider.text), errors=problem)


def recover_template_calls(text: str, names: list[str]) -> list[dict[str, Any]] | None:
    """Tool calls a model wrote as its chat template's JSON (`{"name": ..., "arguments":
    ...}`, one or a list, maybe fenced) when the server did not parse them: None if the
    text is not that."""
    stripped = text.strip()
    if stripped.startswith("{{") and stripped.endswith("}}"):
        stripped = stripped[1:-1]
    try:
        value = parse_json_leniently(stripped)
    except ValueError:
        return None
    items = value if isinstance(value, list) else [value]
    calls = []
    for item in items:
        if not isinstance(item, dict) or item.get("name") not in names:
            return None
        args = item.get("arguments", item.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                return None
        if not isinstance(args, dict):
            return None
        calls.append({"name": item["name"], "args": args,
                      "id": f"call_{new_message_id()[:12]}", "type": "tool_call"})
    return calls or None
