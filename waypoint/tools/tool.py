"""`Tool` and `@tool`: a function the model may call, with validated arguments and declared
effects.

The function's type hints are the contract: they become the JSON schema the model sees and
the pydantic model that checks what the model sent, so a bad call is refused with the
argument named before any code runs. Metadata (category, cost, effect, idempotency, timeout,
retries) is data the runtime reads: `ToolNode` applies the timeout and retries, and only
retries on its own a tool that says it is idempotent.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import re
import threading
import typing
from collections.abc import Callable, Coroutine
from enum import Enum
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo

Effect = Literal["read", "write", "dangerous"]
EFFECTS: tuple[str, ...] = ("read", "write", "dangerous")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what OpenAI-style APIs accept as a function name
_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters)\s*:\s*$")
_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")

T = TypeVar("T")
_MODEL_NAMES = frozenset(dir(BaseModel))


# -- errors ---------------------------------------------------------------------------------


class ToolError(Exception):
    """Base of the errors a tool call can end with; `tool` names the tool."""

    kind = "error"

    def __init__(self, message: str, *, tool: str | None = None) -> None:
        super().__init__(message)
        self.tool = tool


class ToolDefinitionError(ToolError, TypeError):
    """A function that cannot be turned into a tool (no description, bad name, *args...)."""

    kind = "definition"


class ToolArgumentError(ToolError, ValueError):
    """The arguments of a call do not fit the tool's signature. Never retried: the same
    arguments fail the same way; the model has to send better ones."""

    kind = "invalid_arguments"

    def __init__(self, message: str, *, tool: str | None = None,
                 errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, tool=tool)
        self.errors = errors or []


class UnknownToolError(ToolError, LookupError):
    """The model asked for a tool that this node does not have (or does not allow here)."""

    kind = "unknown_tool"


class ToolTimeoutError(ToolError, TimeoutError):
    """A call ran longer than its timeout. A sync tool's thread cannot be stopped: it finishes
    in the background and its result is dropped."""

    kind = "timeout"


# -- injected arguments -----------------------------------------------------------------


class InjectedState:
    """Marks a parameter that `ToolNode` fills from the graph state instead of the model:
    `state: Annotated[dict, InjectedState]` (all of it) or `Annotated[str,
    InjectedState("user_id")]` (one key). Hidden from the schema the model sees."""

    def __init__(self, field: str | None = None) -> None:
        self.field = field

    def __repr__(self) -> str:
        return f"InjectedState({self.field!r})"


class InjectedToolCallId:
    """Marks a parameter that receives the id of the tool call being answered (needed to
    build the `ToolMessage` of a tool that returns a `Command`)."""


def _injection(annotation: Any) -> InjectedState | type[InjectedToolCallId] | None:
    if get_origin(annotation) is not Annotated:
        return None
    for meta in get_args(annotation)[1:]:
        if meta is InjectedState:
            return InjectedState()
        if isinstance(meta, InjectedState):
            return meta
        if meta is InjectedToolCallId or isinstance(meta, InjectedToolCallId):
            return InjectedToolCallId
    return None


# -- docstrings -------------------------------------------------------------------------


def _doc_parts(doc: str | None) -> tuple[str, dict[str, str]]:
    """(first paragraph as one line, {argument: description} from an `Args:` section)."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _ARGS_HEADER.match(line):
            break
        summary.append(line.strip())
    args: dict[str, str] = {}
    current: str | None = None
    in_args = False
    base_indent = arg_indent = 0
    for line in lines:
        if _ARGS_HEADER.match(line):
            in_args, current, base_indent = True, None, len(line) - len(line.lstrip())
            continue
        if not in_args:
            continue
        if not line.strip():
            current = None
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= base_indent:  # the next section
            in_args = False
            continue
        match = _ARG_LINE.match(line)
        if match and (current is None or indent <= arg_indent):
            current, arg_indent = match.group(1).lstrip("*"), indent
            args[current] = match.group(3).strip()
        elif current is not None:
            args[current] = f"{args[current]} {line.strip()}".strip()
    return " ".join(summary), args


# -- running coroutines from sync code ----------------------------------------------------


def run_coroutine_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion from sync code, even when this thread has a running loop
    (then on a helper thread, since a running loop cannot be re-entered)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}
    context = contextvars.copy_context()  # the caller's run, node and trace go along

    def target() -> None:
        try:
            box["value"] = context.run(asyncio.run, coro)
        except BaseException as exc:  # handed back to the caller
            box["error"] = exc

    worker = threading.Thread(target=target, name="waypoint-tool-loop", daemon=True)
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


# -- Tool -----------------------------------------------------------------------------------


def _describe_input(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _strip_titles(schema: Any, *, is_map: bool = False) -> Any:
    """Drop pydantic's generated `title`s (noise for a model); keep properties named title."""
    if isinstance(schema, dict):
        out = {}
        for key, value in schema.items():
            if not is_map and key == "title" and isinstance(value, str):
                continue
            out[key] = _strip_titles(value, is_map=(not is_map and key in ("properties",
                                                                             "$defs")))
        return out
    if isinstance(schema, list):
        return [_strip_titles(item) for item in schema]
    return schema


class Tool:
    """A callable the model may use: `name`, `description`, argument schema and metadata.

    Build one with `@tool` or `Tool(fn, ...)`. `invoke(args)` validates `args` against the
    function's signature and calls it once; `ToolNode` adds timeouts, retries and error
    messages the model can act on. Calling the `Tool` like the function (`t(1, 2)`) runs the
    function as written, unvalidated.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        category: str | Enum | None = None,
        cost_estimate: float | None = None,
        effect: Effect = "read",
        idempotent: bool | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        requires_approval: bool = False,
    ) -> None:
        if isinstance(func, Tool):
            func = func.func
        if not callable(func):
            raise ToolDefinitionError(f"Tool(...) needs a function, got {type(func).__name__}")
        name = name or getattr(func, "__name__", None) or ""
        if not isinstance(name, str) or not _NAME.match(name):
            raise ToolDefinitionError(
                f"tool name {name!r} is not valid: use 1-64 letters, digits, '_' or '-' "
                f"(pass name=... to name it)", tool=str(name))
        summary, arg_docs = _doc_parts(inspect.getdoc(func))
        description = description if description is not None else summary
        if not description or not isinstance(description, str):
            raise ToolDefinitionError(
                f"tool {name!r} needs a description: give the function a docstring or pass "
                f"description=... (the model picks tools by their descriptions)", tool=name)
        if effect not in EFFECTS:
            raise ToolDefinitionError(
                f"tool {name!r}: effect must be one of {', '.join(EFFECTS)}, got {effect!r}",
                tool=name)
        if cost_estimate is not None and (
            isinstance(cost_estimate, bool) or not isinstance(cost_estimate, (int, float))
            or cost_estimate < 0
        ):
            raise ToolDefinitionError(
                f"tool {name!r}: cost_estimate is USD per call (a number >= 0) or None, got "
                f"{cost_estimate!r}", tool=name)
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ToolDefinitionError(
                f"tool {name!r}: timeout must be a positive number of seconds, got {timeout!r}",
                tool=name)
        if retries is not None and (not isinstance(retries, int) or retries < 0):
            raise ToolDefinitionError(
                f"tool {name!r}: retries must be an integer >= 0, got {retries!r}", tool=name)
        self.func = func
        self.name = name
        self.description = description
        self.category = category.value if isinstance(category, Enum) else category
        self.cost_estimate = float(cost_estimate) if cost_estimate is not None else None
        self.effect: Effect = effect
        self.idempotent = (effect == "read") if idempotent is None else bool(idempotent)
        self.timeout = float(timeout) if timeout is not None else None
        self.retries = retries
        self.requires_approval = bool(requires_approval)
        self.is_async = inspect.iscoroutinefunction(func) or (
            not inspect.isroutine(func) and inspect.iscoroutinefunction(type(func).__call__))
        self._params: list[tuple[str, Any]] = []  # (name, kind) in signature order
        self._injected: dict[str, InjectedState | type[InjectedToolCallId]] = {}
        self._fields: dict[str, str] = {}  # parameter -> field of the arguments model
        self.args_model = self._build_model(arg_docs)
        self.__doc__ = getattr(func, "__doc__", None)
        self.__name__ = name

    # -- schema ---------------------------------------------------------------------------

    def _build_model(self, arg_docs: dict[str, str]) -> type[BaseModel]:
        try:
            signature = inspect.signature(self.func)
        except (TypeError, ValueError) as exc:
            raise ToolDefinitionError(
                f"tool {self.name!r}: cannot read the function's signature ({exc})",
                tool=self.name) from None
        try:
            hints = typing.get_type_hints(self.func, include_extras=True)
        except Exception as exc:
            raise ToolDefinitionError(
                f"tool {self.name!r}: cannot resolve its type hints ({exc}); define the types "
                f"at module level", tool=self.name) from None
        fields: dict[str, Any] = {}
        for param in signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ToolDefinitionError(
                    f"tool {self.name!r}: *{param.name} / **{param.name} cannot be described "
                    f"to a model; declare each argument", tool=self.name)
            annotation = hints.get(param.name, Any)
            injected = _injection(annotation)
            self._params.append((param.name, param.kind))
            if injected is not None:
                self._injected[param.name] = injected
                continue
            description = None
            if get_origin(annotation) is Annotated:
                texts = [m for m in get_args(annotation)[1:] if isinstance(m, str)]
                description = texts[0] if texts else None
            description = description or arg_docs.get(param.name)
            default = param.default
            field_name = param.name
            if param.name in _MODEL_NAMES or param.name.startswith(("_", "model_")):
                field_name = f"arg_{len(fields)}_"  # a name pydantic would refuse or shadow
                if isinstance(default, FieldInfo):
                    raise ToolDefinitionError(
                        f"tool {self.name!r}: argument {param.name!r} needs another name to "
                        f"take a Field(...) default", tool=self.name)
            if isinstance(default, FieldInfo):
                info = default
                if description and not info.description:
                    annotation = Annotated[annotation, Field(description=description)]
            else:
                info = Field(
                    ... if default is inspect.Parameter.empty else default,
                    description=description,
                    alias=param.name if field_name != param.name else None)
            self._fields[param.name] = field_name
            fields[field_name] = (annotation, info)
        try:
            return create_model(  # type: ignore[call-overload, no-any-return]
                self.name, __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
                **fields)
        except Exception as exc:
            raise ToolDefinitionError(
                f"tool {self.name!r}: its arguments cannot be validated ({exc})",
                tool=self.name) from None

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the arguments the model must send."""
        try:
            schema = self.args_model.model_json_schema(by_alias=True)
        except Exception as exc:
            raise ToolDefinitionError(
                f"tool {self.name!r}: an argument type has no JSON schema ({exc})",
                tool=self.name) from None
        schema = _strip_titles(schema)
        schema.setdefault("properties", {})
        return schema

    @property
    def schema(self) -> dict[str, Any]:
        """The OpenAI function spec: what `ModelRequest(tools=[...])` takes."""
        return {"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": self.parameters}}

    @property
    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "category": self.category, "cost_estimate":
                self.cost_estimate, "effect": self.effect, "idempotent": self.idempotent,
                "timeout": self.timeout, "retries": self.retries,
                "requires_approval": self.requires_approval}

    @property
    def injected(self) -> dict[str, Any]:
        """Parameters filled by `ToolNode` (state, tool call id), not by the model."""
        return dict(self._injected)

    # -- calling --------------------------------------------------------------------------

    def bind_arguments(self, args: Any = None, *, state: Any = None,
                       tool_call_id: str | None = None) -> tuple[list[Any], dict[str, Any]]:
        """Validate `args` and return the (positional, keyword) arguments for the function.
        Raises `ToolArgumentError` naming the tool and each bad argument."""
        if args is None:
            args = {}
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError as exc:
                raise ToolArgumentError(
                    f"tool {self.name!r}: arguments are not valid JSON ({exc})",
                    tool=self.name) from None
        if isinstance(args, BaseModel):
            args = args.model_dump()
        if not isinstance(args, dict):
            raise ToolArgumentError(
                f"tool {self.name!r}: arguments must be an object of named values, got "
                f"{type(args).__name__}", tool=self.name)
        args = dict(args)
        given_injected = {k: args.pop(k) for k in list(args) if k in self._injected}
        try:
            model = self.args_model.model_validate(args)
        except ValidationError as exc:
            raise self._argument_error(exc) from None
        positional: list[Any] = []
        keywords: dict[str, Any] = {}
        for pname, kind in self._params:
            if pname in self._injected:
                if pname in given_injected:
                    value = given_injected[pname]
                else:
                    value = self._inject(pname, state, tool_call_id)
            else:
                value = getattr(model, self._fields[pname])
            if kind == inspect.Parameter.POSITIONAL_ONLY:
                positional.append(value)
            else:
                keywords[pname] = value
        return positional, keywords

    def _inject(self, pname: str, state: Any, tool_call_id: str | None) -> Any:
        marker = self._injected[pname]
        if marker is InjectedToolCallId:
            if tool_call_id is None:
                raise ToolArgumentError(
                    f"tool {self.name!r}: argument {pname!r} is the tool call id, which only "
                    f"ToolNode (or an explicit {pname}=...) provides", tool=self.name)
            return tool_call_id
        assert isinstance(marker, InjectedState)
        if state is None:
            raise ToolArgumentError(
                f"tool {self.name!r}: argument {pname!r} comes from the graph state, which "
                f"only ToolNode (or an explicit {pname}=...) provides", tool=self.name)
        if marker.field is None:
            return state
        if isinstance(state, dict):
            if marker.field not in state:
                raise ToolArgumentError(
                    f"tool {self.name!r}: argument {pname!r} reads state key "
                    f"{marker.field!r}, which the state does not have", tool=self.name)
            return state[marker.field]
        try:
            return getattr(state, marker.field)
        except AttributeError:
            raise ToolArgumentError(
                f"tool {self.name!r}: argument {pname!r} reads state key {marker.field!r}, "
                f"which the state does not have", tool=self.name) from None

    def _argument_error(self, exc: ValidationError) -> ToolArgumentError:
        expected = [p for p, _ in self._params if p not in self._injected]
        problems: list[str] = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ())) or "(arguments)"
            kind = error.get("type")
            if kind == "missing":
                problems.append(f"{where!r} is required but missing")
            elif kind == "extra_forbidden":
                problems.append(
                    f"{where!r} is not an argument (expected: {', '.join(expected) or 'none'})")
            else:
                problems.append(
                    f"{where!r}: {error.get('msg')} (got {_describe_input(error.get('input'))})")
        return ToolArgumentError(
            f"tool {self.name!r} got invalid arguments: " + "; ".join(problems),
            tool=self.name, errors=[{k: e.get(k) for k in ("loc", "type", "msg")}
                                    for e in exc.errors()])

    def invoke(self, args: Any = None, *, state: Any = None,
               tool_call_id: str | None = None) -> Any:
        """Validate `args` and run the tool once (an async tool on a private event loop)."""
        positional, keywords = self.bind_arguments(args, state=state, tool_call_id=tool_call_id)
        if self.is_async:
            return run_coroutine_sync(self.func(*positional, **keywords))
        return self.func(*positional, **keywords)

    async def ainvoke(self, args: Any = None, *, state: Any = None,
                      tool_call_id: str | None = None) -> Any:
        """Validate `args` and run the tool once (a sync tool in a worker thread)."""
        positional, keywords = self.bind_arguments(args, state=state, tool_call_id=tool_call_id)
        if self.is_async:
            return await self.func(*positional, **keywords)
        return await asyncio.to_thread(self.func, *positional, **keywords)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool(name={self.name!r}, effect={self.effect!r}, category={self.category!r})"


@overload
def tool(func: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    func: None = None, /, *, name: str | None = None, description: str | None = None,
    category: str | Enum | None = None, cost_estimate: float | None = None,
    effect: Effect = "read", idempotent: bool | None = None, timeout: float | None = None,
    retries: int | None = None, requires_approval: bool = False,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    func: Callable[..., Any] | None = None, /, *, name: str | None = None,
    description: str | None = None, category: str | Enum | None = None,
    cost_estimate: float | None = None, effect: Effect = "read",
    idempotent: bool | None = None, timeout: float | None = None, retries: int | None = None,
    requires_approval: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a function (sync or async) into a `Tool`: `@tool` or `@tool(effect="write")`."""
    options = {"name": name, "description": description, "category": category,
               "cost_estimate": cost_estimate, "effect": effect, "idempotent": idempotent,
               "timeout": timeout, "retries": retries, "requires_approval": requires_approval}
    if func is not None:
        if isinstance(func, str):
            raise ToolDefinitionError(
                f"@tool({func!r}): pass the name as a keyword, @tool(name={func!r})")
        return Tool(func, **options)  # type: ignore[arg-type]

    def decorate(fn: Callable[..., Any]) -> Tool:
        return Tool(fn, **options)  # type: ignore[arg-type]

    return decorate


def as_tool(value: Tool | Callable[..., Any]) -> Tool:
    """A `Tool` for a waypoint tool, a function, or a LangChain tool."""
    if isinstance(value, Tool):
        return value
    if type(value).__module__.startswith("langchain") and hasattr(value, "args_schema"):
        from .langchain_tool import from_langchain_tool

        return from_langchain_tool(value)
    return Tool(value)
