"""A LangGraph ReAct-agent script runs on waypoint with only its imports changed.

The script below is LangGraph's quickstart as people write it: langchain-openai's
`ChatOpenAI(base_url=..., api_key=...)`, two `@tool` functions from langchain_core, a
checkpointer and `stream_mode="messages"`, then a second turn on the same thread. The test
switches its `from langgraph...` imports to waypoint (and nothing else), and runs it
against an OpenAI-compatible endpoint served here by a scripted HTTP server on 127.0.0.1:
ChatOpenAI makes real HTTP calls and reads real SSE chunks, tool calls included.
langchain-openai is a test dependency only.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import sys
import threading
import types
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest.importorskip("langchain_openai")
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI

from waypoint import Budget, BudgetExceeded
from waypoint.checkpoint import MemorySaver
from waypoint.prebuilt import create_react_agent

LANGGRAPH_SCRIPT = '''\
"""A ReAct agent, as LangGraph's quickstart writes it."""
import os

from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import MemorySaver
from langgraph.prebuilt import create_react_agent

TOOL_LOG = []


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    TOOL_LOG.append(("get_weather", city))
    return {"paris": "sunny, 21 C", "oslo": "snow, -3 C"}.get(city.lower(), "unknown")


@tool
def get_local_time(city: str) -> str:
    """Get the current local time in a city."""
    TOOL_LOG.append(("get_local_time", city))
    return {"paris": "14:05", "oslo": "14:05"}.get(city.lower(), "unknown")


model = ChatOpenAI(model="gpt-4o-mini", base_url=os.environ["AGENT_BASE_URL"],
                   api_key=os.environ["AGENT_API_KEY"], temperature=0)
checkpointer = MemorySaver()
agent = create_react_agent(model, [get_weather, get_local_time],
                           prompt="You answer questions about cities briefly.",
                           checkpointer=checkpointer)
config = {"configurable": {"thread_id": "1"}}


def ask(question):
    streamed = []
    for chunk, metadata in agent.stream({"messages": [{"role": "user", "content": question}]},
                                        config, stream_mode="messages"):
        streamed.append((chunk, metadata))
        print(chunk.content, end="", flush=True)
    print()
    return streamed


def main():
    return ask("What is the weather and the time in Paris?"), ask("And the weather in Oslo?")


if __name__ == "__main__":
    main()
'''

IMPORTS = {"from langgraph.checkpoint.memory import": "from waypoint.checkpoint import",
           "from langgraph.prebuilt import": "from waypoint.prebuilt import"}


def ported(script: str) -> str:
    """The script with its LangGraph imports pointed at waypoint: the only change."""
    for old, new in IMPORTS.items():
        script = script.replace(old, new)
    return script


# -- a scripted OpenAI-compatible endpoint -----------------------------------------------------

Reply = dict[str, Any]  # {"text": str} or {"calls": [(name, args), ...]}


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def sse_chunks(reply: Reply, number: int) -> Iterator[dict[str, Any]]:
    """The chunks OpenAI streams for `reply`: text word by word; each tool call's name
    first, then its arguments in pieces."""
    yield _chunk({"role": "assistant", "content": ""})
    if "text" in reply:
        words = reply["text"].split(" ")
        for i, word in enumerate(words):
            yield _chunk({"content": word if i == 0 else " " + word})
        yield _chunk({}, "stop")
        return
    for index, (name, args) in enumerate(reply["calls"]):
        yield _chunk({"tool_calls": [{"index": index, "id": f"call_{number}_{index}",
                                      "type": "function",
                                      "function": {"name": name, "arguments": ""}}]})
        text = json.dumps(args)
        for start in range(0, len(text), 5):
            yield _chunk({"tool_calls": [{"index": index, "function": {
                "arguments": text[start:start + 5]}}]})
    yield _chunk({}, "tool_calls")


def completion(reply: Reply, number: int, usage: dict[str, int]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.get("text")}
    if "calls" in reply:
        message["tool_calls"] = [
            {"id": f"call_{number}_{i}", "type": "function",
             "function": {"name": name, "arguments": json.dumps(args)}}
            for i, (name, args) in enumerate(reply["calls"])]
    return {"id": "chatcmpl-scripted", "object": "chat.completion", "created": 0,
            "model": "gpt-4o-mini", "usage": usage,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if "calls" in reply else "stop"}]}


class ScriptedOpenAI:
    """`POST /v1/chat/completions` on 127.0.0.1 (a free port), answering from a script,
    streamed as SSE when asked; records every request and its Authorization header."""

    USAGE = {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}

    def __init__(self, replies: list[Reply | Callable[[dict[str, Any]], Reply]]) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                server.requests.append(body)
                server.auth.append(self.headers.get("Authorization"))
                number = len(server.requests)
                if not server.replies:
                    self.send_error(500, "the script has no more replies")
                    return
                reply = server.replies.pop(0)
                if callable(reply):
                    reply = reply(body)
                if not body.get("stream"):
                    data = json.dumps(completion(reply, number, server.USAGE)).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                chunks = list(sse_chunks(reply, number))
                if (body.get("stream_options") or {}).get("include_usage"):
                    chunks.append({**_chunk({}), "choices": [], "usage": server.USAGE})
                for chunk in chunks:
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


PARIS = [{"calls": [("get_weather", {"city": "Paris"}), ("get_local_time", {"city": "Paris"})]},
         {"text": "Sunny, 21 C in Paris, and it is 14:05 there."}]
OSLO = [{"calls": [("get_weather", {"city": "Oslo"})]}, {"text": "Snow in Oslo, -3 C."}]


def load_script(source: str, path: Any, name: str) -> types.ModuleType:
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def roles(request: dict[str, Any]) -> list[str]:
    return [m["role"] for m in request["messages"]]


# -- the tests -------------------------------------------------------------------------------


def test_only_the_imports_change():
    diff = [line for line in difflib.unified_diff(
        LANGGRAPH_SCRIPT.splitlines(), ported(LANGGRAPH_SCRIPT).splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert len(diff) == 4
    assert all(line[1:].startswith("from ") for line in diff)


def test_the_langgraph_script_runs_on_waypoint(tmp_path, monkeypatch):
    with ScriptedOpenAI([*PARIS, *OSLO]) as server:
        monkeypatch.setenv("AGENT_BASE_URL", server.base_url)
        monkeypatch.setenv("AGENT_API_KEY", "sk-scripted")
        script = load_script(ported(LANGGRAPH_SCRIPT), tmp_path / "agent.py", "agent_script")
        first, second = script.main()

    # the tools ran, the two of the first answer side by side, with the model's arguments
    assert sorted(script.TOOL_LOG[:2]) == [("get_local_time", "Paris"), ("get_weather", "Paris")]
    assert script.TOOL_LOG[2:] == [("get_weather", "Oslo")]

    # tokens streamed in messages mode, as LangChain chunks tagged with their node
    text = [c for c, meta in first if meta["langgraph_node"] == "agent" and c.content]
    assert all(isinstance(c, AIMessageChunk) for c in text)
    assert len(text) > 3 and "".join(c.content for c in text) == PARIS[1]["text"]
    call_chunks = [c for c, meta in first if meta["langgraph_node"] == "agent"
                   and getattr(c, "tool_call_chunks", None)]
    assert len(call_chunks) > 2  # the calls' arguments arrived in pieces too
    assert [c.content for c, meta in first if meta["langgraph_node"] == "tools"] == [
        "sunny, 21 C", "14:05"]
    assert "".join(c.content for c, m in second if m["langgraph_node"] == "agent") == \
        OSLO[1]["text"]

    # ChatOpenAI made real calls: streamed, tools offered, the key sent
    assert all(r["stream"] for r in server.requests) and len(server.requests) == 4
    assert [t["function"]["name"] for t in server.requests[0]["tools"]] == [
        "get_weather", "get_local_time"]
    assert set(server.auth) == {"Bearer sk-scripted"}
    assert roles(server.requests[1]) == ["system", "user", "assistant", "tool", "tool"]
    answered = {m["tool_call_id"] for m in server.requests[1]["messages"] if m["role"] == "tool"}
    assert answered == {"call_1_0", "call_1_1"}

    # the second turn saw the first, through the checkpointer
    assert roles(server.requests[2]) == ["system", "user", "assistant", "tool", "tool",
                                         "assistant", "user"]
    assert server.requests[2]["messages"][5]["content"] == PARIS[1]["text"]
    messages = script.agent.get_state(script.config).values["messages"]
    assert [m.type for m in messages] == ["human", "ai", "tool", "tool", "ai",
                                          "human", "ai", "tool", "ai"]

    # and every call is in the checkpointer's usage ledger, by node and model
    records = script.checkpointer.usage_records(thread_id="1")
    models = [(r.model, r.node) for r in records if r.kind == "model"]
    assert models == [("gpt-4o-mini", "agent")] * 4
    assert sorted(r.model for r in records if r.kind == "tool") == [
        "get_local_time", "get_weather", "get_weather"]


def test_reported_usage_is_metered_and_a_token_budget_stops_the_agent():
    """ChatOpenAI's usage (`stream_usage=True` here, or a non-streamed answer) is spent
    from the run's budget: 60 tokens a call, so 100 tokens allow one call only."""
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return "sunny"

    with ScriptedOpenAI([*PARIS, *PARIS]) as server:
        model = ChatOpenAI(model="gpt-4o-mini", base_url=server.base_url, api_key="sk-x",
                           stream_usage=True, max_tokens=20)
        saver = MemorySaver()
        agent = create_react_agent(model, [get_weather], checkpointer=saver)
        config = {"configurable": {"thread_id": "metered"}}
        list(agent.stream({"messages": [("user", "Paris?")]}, config, stream_mode="messages"))
        assert server.requests[0]["stream_options"] == {"include_usage": True}
        records = saver.usage_records(thread_id="metered")
        assert [(r.usage.input_tokens, r.usage.output_tokens) for r in records
                if r.kind == "model"] == [(50, 10), (50, 10)]
        spent = agent.get_state(config).metadata.get("budget")
        assert spent is None
        limited = create_react_agent(model, [get_weather], budget=Budget(
            max_tokens=100, on_exceed="fail"))
        with pytest.raises(BudgetExceeded, match="max_tokens=100"):
            limited.invoke({"messages": [("user", "Paris?")]})  # not streamed: usage in body
        assert len(server.requests) == 3


def test_a_string_model_id_goes_through_init_chat_model(monkeypatch):
    """LangGraph's `create_react_agent("openai:gpt-4o-mini", ...)`: resolved by LangChain's
    `init_chat_model` when the `langchain` package is importable."""
    made: list[str] = []

    with ScriptedOpenAI([{"text": "Hello."}]) as server:
        def init_chat_model(model: str, **kwargs: Any) -> Any:
            made.append(model)
            provider, _, name = model.partition(":")
            assert provider == "openai"
            return ChatOpenAI(model=name, base_url=server.base_url, api_key="sk-x")

        fake = types.ModuleType("langchain.chat_models")
        fake.init_chat_model = init_chat_model
        monkeypatch.setitem(sys.modules, "langchain", types.ModuleType("langchain"))
        monkeypatch.setitem(sys.modules, "langchain.chat_models", fake)
        agent = create_react_agent("openai:gpt-4o-mini", [])
        out = agent.invoke({"messages": [("user", "hi")]})
    assert made == ["openai:gpt-4o-mini"]
    assert out["messages"][-1].content == "Hello."
    assert server.requests[0]["model"] == "gpt-4o-mini"


def test_a_string_model_id_without_langchain_is_refused_clearly(monkeypatch):
    monkeypatch.setitem(sys.modules, "langchain.chat_models", None)
    with pytest.raises(ValueError, match=r"pip install langchain.*OpenAICompatible"):
        create_react_agent("openai:gpt-4o-mini", [])
    with pytest.raises(ValueError, match="'local'"):
        create_react_agent("gpt-4o-mini", [])
