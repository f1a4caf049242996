#!/usr/bin/env python
"""A LangGraph ReAct-agent script, run on waypoint with only its imports changed.

The LangGraph imports are listed in the comment above waypoint's; the rest is the
script as LangGraph's quickstart writes it: a model, two tools, a checkpointer, and the
answer streamed token by token with `stream_mode="messages"`, then a follow-up question on
the same thread.

    python examples/react_agent.py                       # the embedded local model
    python examples/react_agent.py --model openai --base-url http://127.0.0.1:8080/v1 \\
        --model-name qwen2.5 --api-key-env OPENAI_API_KEY
    python examples/react_agent.py --tool-calling native # llama.cpp's own tool calling
    python examples/react_agent.py --model scripted      # no model at all

With langchain-openai installed, the script's own `ChatOpenAI(base_url=..., api_key=...)`
and `langchain_core.tools.tool` work unchanged too: tests/test_langgraph_script.py runs
LangGraph's version of this script, with only its `from langgraph...` imports switched.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

# LangGraph's script imported, in order: MemorySaver from langgraph.checkpoint.memory,
# ChatOpenAI from langchain_openai, create_react_agent from langgraph.prebuilt, and tool
# from langchain_core.tools (which works here unchanged too).
from waypoint.checkpoint import MemorySaver
from waypoint.models import LocalModel, OpenAICompatible, ScriptedModel
from waypoint.prebuilt import create_react_agent
from waypoint.tools import tool

FORECASTS = {"paris": "sunny, 21 °C", "oslo": "snow, -3 °C", "lima": "cloudy, 18 °C"}
CLOCKS = {"paris": "14:05", "oslo": "14:05", "lima": "08:05"}


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return FORECASTS.get(city.strip().lower(), f"no forecast for {city}")


@tool
def get_local_time(city: str) -> str:
    """Get the current local time in a city."""
    return CLOCKS.get(city.strip().lower(), f"no clock for {city}")


def scripted_answer(request: Any) -> Any:
    """`--model scripted`: a stand-in that asks the tool the question names for the city
    it names (the last one the conversation mentioned), then answers from the result."""
    messages = list(request.messages)
    last = messages[-1]
    if last.type == "tool":
        return f"{last.name.replace('get_', '').replace('_', ' ')}: {last.content}."
    cities = [c for m in messages if m.type == "human" for c in FORECASTS
              if c in m.content.lower()]
    city = (cities[-1] if cities else "paris").title()
    name = "get_local_time" if "time" in last.content.lower() else "get_weather"
    return {"tool_calls": [{"name": name, "args": {"city": city}}]}


def make_model(args: argparse.Namespace) -> Any:
    if args.model == "scripted":
        return ScriptedModel([scripted_answer], cycle=True)
    if args.model == "openai":
        if not args.base_url:
            raise SystemExit("--model openai needs --base-url")
        options = {"max_tokens": args.max_tokens} if args.max_tokens else {}
        return OpenAICompatible(args.base_url, args.model_name, api_key_env=args.api_key_env,
                                tool_calling=args.tool_calling or "native", **options)
    name = "qwen2.5-coder-0.5b" if args.model == "local-small" else "qwen2.5-coder-1.5b"
    return LocalModel(name, tool_calling=args.tool_calling or "schema",
                      max_tokens=args.max_tokens or 512)


def ask(agent: Any, question: str, config: dict[str, Any]) -> list[Any]:
    """Stream one turn as LangGraph's docs do; return what was streamed."""
    print(f"\nuser: {question}")
    streamed = []
    for chunk, metadata in agent.stream({"messages": [{"role": "user", "content": question}]},
                                        config, stream_mode="messages"):
        streamed.append((chunk, metadata))
        if metadata["langgraph_node"] == "tools":
            print(f"\n  [{chunk.name} -> {chunk.content}]")
        elif chunk.content:
            print(chunk.content, end="", flush=True)
        elif getattr(chunk, "tool_calls", None):
            for call in chunk.tool_calls:
                print(f"\n  [calls {call['name']}({call['args']})]", end="")
    print()
    return streamed


def run(argv: list[str] | None = None) -> tuple[Any, dict[str, Any]]:
    """Parse the options, ask the question and the follow-up on one thread; return the
    agent and the thread's config (tests read the thread from them)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["local", "local-small", "openai", "scripted"],
                        default="local")
    parser.add_argument("--base-url", help="an OpenAI-compatible endpoint (--model openai)")
    parser.add_argument("--model-name", default="default")
    parser.add_argument("--api-key-env", default=None,
                        help="environment variable holding the endpoint's API key")
    parser.add_argument("--tool-calling", choices=["schema", "native"], default=None)
    parser.add_argument("--question", default="What is the weather in Paris right now?")
    parser.add_argument("--follow-up", default="And what time is it there?")
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="cap on each answer's tokens (the local model's default: 512)")
    parser.add_argument("--max-steps", type=int, default=25,
                        help="the recursion limit of each turn (LangGraph's default: 25)")
    args = parser.parse_args(argv)

    model = make_model(args)
    agent = create_react_agent(model, [get_weather, get_local_time],
                               prompt="You answer questions about cities briefly, using the "
                                      "tools for facts.",
                               checkpointer=MemorySaver())
    config = {"configurable": {"thread_id": "quickstart"}, "recursion_limit": args.max_steps}
    ask(agent, args.question, config)
    if args.follow_up:
        ask(agent, args.follow_up, config)
    return agent, config


def main(argv: list[str] | None = None) -> int:
    agent, config = run(argv)
    messages = agent.get_state(config).values["messages"]
    used = [m.name for m in messages if m.type == "tool"]
    print(f"\n{len(messages)} messages on the thread; tools used: {', '.join(used) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
